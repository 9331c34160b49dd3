"""Every record that crosses the wire or sits in Redis, named and typed, with parse and dump.

What travels: task messages (:class:`Message` with :class:`StepArgs` or :class:`ToolArgs`),
call addresses (:class:`CallAddress`: where an answer goes), waiter records, run-log entries
(:class:`LogKind`, :func:`log_fields`, :func:`parse_entry`), run hashes (:class:`RunRecord`),
in-flight records and dead letters. Journal entries are :class:`JournalEntry` (shared with the
in-process runtime). ``docs/distributed.md`` lists them with the Redis keys and the Lua
scripts' contracts; ``tests/unit/test_wire_format.py`` pins each shape.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel

from workflows._engine.records import Journal, JournalEntry
from workflows.errors import ErrorInfo, PayloadError
from workflows.events import Event

__all__ = [
    "CallAddress",
    "DeadLetter",
    "InflightRecord",
    "JournalEntry",
    "LogEntry",
    "LogKind",
    "Message",
    "RetryNote",
    "RunRecord",
    "RunStatus",
    "StepArgs",
    "ToolArgs",
    "WaiterRecord",
    "log_fields",
    "parse_entry",
]

TOOL_TASK_PREFIX = "tool."


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _load(text: str | bytes, what: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"{what} is not JSON: {exc}", payload=str(text)[:200]) from exc


# --- run status and the run log ------------------------------------------------------------


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self is not RunStatus.RUNNING


FINAL_STATUSES = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


class LogKind(StrEnum):
    """What a run-log (event stream) entry is. The ``FINISH`` script writes the three ends."""

    EVENT = "event"  # an event of the run: start, emitted, sent, or sent from outside
    STREAM = "stream"  # written to the stream by a step (not routed)
    INPUT = "input"  # an input request (InputRequiredEvent, a wait_for_event waiter)
    STOP = "stop"  # the run completed: its StopEvent
    FAILED = "failed"  # the run failed: its ErrorInfo
    CANCELLED = "cancelled"  # the run was cancelled: its ErrorInfo
    RETRY = "retry"  # a step or tool attempt failed and will be retried: a RetryNote


USER_KINDS = (LogKind.STREAM, LogKind.INPUT, LogKind.STOP)
END_KINDS = (LogKind.STOP, LogKind.FAILED, LogKind.CANCELLED)
EVENT_KINDS = (LogKind.EVENT, LogKind.STREAM, LogKind.INPUT, LogKind.STOP)
END_KIND_OF: dict[RunStatus, LogKind] = {
    RunStatus.COMPLETED: LogKind.STOP,
    RunStatus.FAILED: LogKind.FAILED,
    RunStatus.CANCELLED: LogKind.CANCELLED,
}


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One entry of a run's event stream. ``run`` is set on an entry copied to the root run's
    stream from a child (what a user should see of the child: its stream and input requests)."""

    kind: LogKind
    data: Any
    run: str | None = None
    id: str = ""

    @property
    def ms(self) -> int:
        """Milliseconds since the epoch when Redis logged it."""
        return int(self.id.split("-")[0]) if self.id else 0


def log_fields(kind: LogKind, payload: str, run: str | None = None) -> dict[str, str]:
    """The stream fields of an entry: ``k`` kind, ``e`` the JSON payload, ``r`` origin run."""
    fields = {"k": kind.value, "e": payload}
    if run is not None:
        fields["r"] = run
    return fields


def parse_entry(entry_id: str, fields: dict[str, str]) -> LogEntry:
    """An entry read back from the stream; an unknown kind or bad JSON is a PayloadError."""
    try:
        kind = LogKind(fields["k"])
    except (KeyError, ValueError) as exc:
        raise PayloadError(f"not a run-log entry: {fields!r}"[:200]) from exc
    return LogEntry(kind, _load(fields.get("e", "null"), "log entry"), fields.get("r"), entry_id)


class RetryNote(BaseModel):
    """The payload of a ``retry`` entry: which step or tool, the attempt coming, and why."""

    what: Literal["step", "tool"]
    name: str
    attempt: int
    error: ErrorInfo


# --- call addresses and waiters ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallAddress:
    """Where a suspended call's answer goes: the run, the invocation, the call id.

    Also a child run's link to its parent (the call that started it)."""

    run: str
    inv: str
    call_id: str

    def dump(self) -> dict[str, str]:
        return {"run": self.run, "inv": self.inv, "call_id": self.call_id}

    def to_json(self) -> str:
        return compact(self.dump())

    @classmethod
    def parse(cls, data: Any) -> CallAddress:
        try:
            return cls(str(data["run"]), str(data["inv"]), str(data["call_id"]))
        except (KeyError, TypeError) as exc:
            raise PayloadError(f"not a call address: {str(data)[:200]}") from exc

    @classmethod
    def from_field(cls, text: str | None) -> CallAddress | None:
        """A run hash's ``parent`` field: the address as JSON, or empty for a top-level run."""
        return cls.parse(_load(text, "parent link")) if text else None


def field_of(address: CallAddress | None) -> str:
    """The ``parent`` field for a run hash (empty for a top-level run)."""
    return address.to_json() if address is not None else ""


@dataclass(frozen=True, slots=True)
class WaiterRecord:
    """A step (of a root run or its children) waiting for an external event; kept in the root
    run's waiters hash under :meth:`field`."""

    address: CallAddress
    tag: str
    requirements: dict[str, Any]

    @property
    def field(self) -> str:
        return f"{self.address.run}|{self.address.call_id}"

    def matches(self, event: Event) -> bool:
        return type(event).type_tag == self.tag and all(
            getattr(event, k, None) == v for k, v in self.requirements.items()
        )

    def to_json(self) -> str:
        return compact({**self.address.dump(), "tag": self.tag, "requirements": self.requirements})

    @classmethod
    def from_json(cls, text: str) -> WaiterRecord:
        data = _load(text, "waiter")
        try:
            return cls(CallAddress.parse(data), str(data["tag"]), dict(data["requirements"]))
        except (KeyError, TypeError) as exc:
            raise PayloadError(f"not a waiter record: {text[:200]}") from exc


# --- task arguments and messages -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepArgs:
    """A step task's arguments. ``payload``: the event's envelope, or a list of them (a batch
    for a step taking ``list[E]``). Wire: ``[run_id, inv_id, payload, attempt]``."""

    run_id: str
    inv_id: str
    payload: dict[str, Any] | list[dict[str, Any]]
    attempt: int = 1

    def wire(self) -> list[Any]:
        return [self.run_id, self.inv_id, self.payload, self.attempt]

    @classmethod
    def from_wire(cls, args: list[Any]) -> StepArgs:
        run_id, inv_id, payload, attempt = args
        return cls(str(run_id), str(inv_id), payload, int(attempt))


@dataclass(frozen=True, slots=True)
class ToolArgs:
    """A tool task's arguments. Wire: ``[run_id, inv_id, call_id, args, attempt]``."""

    run_id: str
    inv_id: str
    call_id: str
    args: dict[str, Any]
    attempt: int = 1

    @property
    def address(self) -> CallAddress:
        return CallAddress(self.run_id, self.inv_id, self.call_id)

    def wire(self) -> list[Any]:
        return [self.run_id, self.inv_id, self.call_id, self.args, self.attempt]

    @classmethod
    def from_wire(cls, args: list[Any]) -> ToolArgs:
        run_id, inv_id, call_id, kwargs, attempt = args
        return cls(str(run_id), str(inv_id), str(call_id), dict(kwargs), int(attempt))


TaskArgs = StepArgs | ToolArgs


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Message:
    """A task message to send: which task, its arguments, its queue, id, delay and limits.

    Stored (done markers, in-flight records, a parked step's resume) as
    ``[name, args, queue, task_id, countdown, soft_time_limit, time_limit]``."""

    name: str
    args: TaskArgs
    queue: str
    task_id: str = field(default_factory=_new_id)
    countdown: float | None = None
    soft_time_limit: float | None = None
    time_limit: float | None = None

    @property
    def run_id(self) -> str:
        return self.args.run_id

    def delayed(self, countdown: float | None) -> Message:
        """The same message, sent ``countdown`` seconds later."""
        return replace(self, countdown=countdown)

    def dump(self) -> list[Any]:
        return [
            self.name,
            self.args.wire(),
            self.queue,
            self.task_id,
            self.countdown,
            self.soft_time_limit,
            self.time_limit,
        ]

    def to_json(self) -> str:
        return compact(self.dump())

    @classmethod
    def parse(cls, data: Any) -> Message:
        try:
            name, args, queue, task_id, countdown, soft, hard = data
            kind = ToolArgs if str(name).startswith(TOOL_TASK_PREFIX) else StepArgs
            return cls(
                str(name), kind.from_wire(args), str(queue), str(task_id), countdown, soft, hard
            )
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"not a task message: {str(data)[:200]}") from exc

    @classmethod
    def from_json(cls, text: str) -> Message:
        return cls.parse(_load(text, "task message"))


def dump_messages(messages: list[Message]) -> str:
    """A done marker's value: the messages a finished invocation sent (resent on redelivery)."""
    return compact([m.dump() for m in messages])


def parse_messages(text: str) -> list[Message]:
    return [Message.parse(m) for m in _load(text, "done marker")]


@dataclass(frozen=True, slots=True)
class InflightRecord:
    """A sent message not yet finished, and when it was due; in the run's in-flight hash."""

    due: float
    message: Message

    def to_json(self) -> str:
        return compact([self.due, self.message.dump()])

    @classmethod
    def from_json(cls, text: str) -> InflightRecord:
        data = _load(text, "in-flight record")
        try:
            due, message = data
            return cls(float(due), Message.parse(message))
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"not an in-flight record: {text[:200]}") from exc


# --- run hash and dead letters -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run's hash: what the run is, where it stands, and how it ended."""

    run_id: str
    workflow: str
    status: RunStatus
    created: float
    updated: float
    root: str
    parent: CallAddress | None = None
    deadline: float | None = None
    input: str | None = None  # the start event's envelope, as JSON
    result: str | None = None  # JSON, once completed
    error: ErrorInfo | None = None  # once failed or cancelled

    def fields(self) -> dict[str, Any]:
        """The hash fields of a new run (``result``/``error`` are written by ``FINISH``)."""
        return {
            "workflow": self.workflow,
            "status": self.status.value,
            "input": self.input or "",
            "created": self.created,
            "updated": self.updated,
            "root": self.root,
            "parent": field_of(self.parent),
            "deadline": self.deadline or "",
        }

    @classmethod
    def parse(cls, run_id: str, raw: dict[str, str]) -> RunRecord:
        try:
            return cls(
                run_id=run_id,
                workflow=raw["workflow"],
                status=RunStatus(raw["status"]),
                created=float(raw["created"]),
                updated=float(raw["updated"]),
                root=raw.get("root") or run_id,
                parent=CallAddress.from_field(raw.get("parent")),
                deadline=float(raw["deadline"]) if raw.get("deadline") else None,
                input=raw.get("input") or None,
                result=raw.get("result"),
                error=ErrorInfo.model_validate_json(raw["error"]) if raw.get("error") else None,
            )
        except (KeyError, ValueError) as exc:
            raise PayloadError(f"run {run_id}: malformed run record: {exc}") from exc

    @property
    def parent_run(self) -> str | None:
        return self.parent.run if self.parent is not None else None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message a worker could not run, kept with the reason (the ``dead`` list)."""

    reason: str
    headers: dict[str, Any]
    body: str

    def to_json(self) -> str:
        return json.dumps(
            {"reason": self.reason, "headers": self.headers, "body": self.body}, default=str
        )

    @classmethod
    def from_json(cls, text: str) -> DeadLetter:
        data = _load(text, "dead letter")
        if not isinstance(data, dict):
            raise PayloadError(f"not a dead letter: {text[:200]}")
        return cls(
            str(data.get("reason", "")), dict(data.get("headers") or {}), str(data.get("body", ""))
        )


# --- a step invocation's journal hash --------------------------------------------------------

EFFECTS_FIELD = "__fx"  # in the journal hash: per branch, how many effects were applied


def parse_journal_hash(raw: dict[str, str]) -> tuple[Journal, dict[str, int]]:
    """The journal hash of an invocation: its entries, and the effects already applied."""
    effects = raw.pop(EFFECTS_FIELD, None)
    journal = {call_id: JournalEntry.from_json(text) for call_id, text in raw.items()}
    return journal, (
        {str(k): int(v) for k, v in _load(effects, "effects").items()} if effects else {}
    )


def journal_fields(journal: Journal, effects: dict[str, int], skip: set[str]) -> dict[str, str]:
    """The hash fields to write: entries not in ``skip`` (already stored), and the effects."""
    fields = {c: e.to_json() for c, e in journal.items() if c not in skip}
    fields[EFFECTS_FIELD] = compact(effects)
    return fields

"""Task messages: step and tool arguments, the stored form of a message, in-flight records."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from tasks.protocol._json import compact, load
from tasks.protocol.state import CallAddress
from workflows.errors import PayloadError

TOOL_TASK_PREFIX = "tool."


@dataclass(frozen=True, slots=True)
class StepArgs:
    """A step task's arguments. ``payload``: the event's envelope, or a list of them (a batch
    for a step taking ``list[E]``). ``first_started``: when the invocation's first attempt
    began (wall-clock seconds), sent with retries and the resumes of a retried step so a retry
    policy is told the real elapsed time. Wire: ``[run_id, inv_id, payload, attempt]``, plus
    ``first_started`` only when it is set: a first attempt's messages (resumes included) keep
    the four elements a worker older than the field takes. Both forms are read (four: None)."""

    run_id: str
    inv_id: str
    payload: dict[str, Any] | list[dict[str, Any]]
    attempt: int = 1
    first_started: float | None = None

    def wire(self) -> list[Any]:
        args = [self.run_id, self.inv_id, self.payload, self.attempt]
        return args if self.first_started is None else [*args, self.first_started]

    @classmethod
    def from_wire(cls, args: list[Any]) -> StepArgs:
        run_id, inv_id, payload, attempt, *rest = args
        if len(rest) > 1:
            raise ValueError(f"a step task takes 4 or 5 arguments, not {len(args)}")
        started = rest[0] if rest else None
        return cls(
            str(run_id),
            str(inv_id),
            payload,
            int(attempt),
            None if started is None else float(started),
        )


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
        return cls.parse(load(text, "task message"))


def dump_messages(messages: list[Message]) -> str:
    """A done marker's value: the messages a finished invocation sent (resent on redelivery)."""
    return compact([m.dump() for m in messages])


def parse_messages(text: str) -> list[Message]:
    return [Message.parse(m) for m in load(text, "done marker")]


@dataclass(frozen=True, slots=True)
class InflightRecord:
    """A sent message not yet finished, and when it was due; in the run's in-flight hash."""

    due: float
    message: Message

    def to_json(self) -> str:
        return compact([self.due, self.message.dump()])

    @classmethod
    def from_json(cls, text: str) -> InflightRecord:
        data = load(text, "in-flight record")
        try:
            due, message = data
            return cls(float(due), Message.parse(message))
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"not an in-flight record: {text[:200]}") from exc

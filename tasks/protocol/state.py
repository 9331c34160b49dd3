"""What Redis holds of a run besides its log: call addresses, waiters, the run hash, journal
hashes, dead letters."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tasks.protocol._json import compact, load
from tasks.protocol.runlog import RunStatus
from workflows._engine.records import Journal, JournalEntry
from workflows.errors import ErrorInfo, PayloadError
from workflows.events import Event


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
        return cls.parse(load(text, "parent link")) if text else None


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
        data = load(text, "waiter")
        try:
            return cls(CallAddress.parse(data), str(data["tag"]), dict(data["requirements"]))
        except (KeyError, TypeError) as exc:
            raise PayloadError(f"not a waiter record: {text[:200]}") from exc


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
    module: str = ""  # where the workflow class is defined (what a worker must import)

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
            "module": self.module,
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
                module=raw.get("module", ""),
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
        data = load(text, "dead letter")
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
        {str(k): int(v) for k, v in load(effects, "effects").items()} if effects else {}
    )


def journal_fields(journal: Journal, effects: dict[str, int], skip: set[str]) -> dict[str, str]:
    """The hash fields to write: entries not in ``skip`` (already stored), and the effects."""
    fields = {c: e.to_json() for c, e in journal.items() if c not in skip}
    fields[EFFECTS_FIELD] = compact(effects)
    return fields

"""The records a step's Context and both runtimes share: journal entries, parked calls, effects.

A journal entry is what a call answered; it is kept in memory in-process and in a Redis hash
distributed (as the JSON of :meth:`JournalEntry.dump`, also written by the ``COLLECT`` and
``COMPLETE`` Lua scripts). Parked calls are what a suspended step waits for; an effect is an
event the step sent or streamed. Golden-format tests pin every shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from workflows.errors import ErrorInfo, PayloadError
from workflows.events import Event


class EntryKind(StrEnum):
    """How a journaled call ended: a value, an error as data, an event, or nothing stored."""

    OK = "ok"
    ERROR = "error"
    EVENT = "event"
    MISSING = "missing"


_KINDS = {k.value: k for k in EntryKind}


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One recorded answer. Wire form: ``{"ok": v}``, ``{"error": info}``,
    ``{"event": envelope}`` or ``{"missing": true}`` (a store read that found nothing).

    A fan-in answer is ``ok``: ``None`` while the set is incomplete, else the event envelopes.
    """

    kind: EntryKind
    value: Any = None

    @classmethod
    def ok(cls, value: Any) -> JournalEntry:
        return cls(EntryKind.OK, value)

    @classmethod
    def error(cls, info: ErrorInfo) -> JournalEntry:
        return cls(EntryKind.ERROR, info.model_dump())

    @classmethod
    def event(cls, envelope: dict[str, Any]) -> JournalEntry:
        return cls(EntryKind.EVENT, envelope)

    @classmethod
    def missing(cls) -> JournalEntry:
        return cls(EntryKind.MISSING, True)

    @property
    def failed(self) -> bool:
        return self.kind is EntryKind.ERROR

    def error_info(self) -> ErrorInfo:
        """The error of a failed entry."""
        return ErrorInfo.model_validate(self.value)

    def dump(self) -> dict[str, Any]:
        return {self.kind.value: self.value}

    def to_json(self) -> str:
        return json.dumps(self.dump(), separators=(",", ":"))

    @classmethod
    def parse(cls, data: Any) -> JournalEntry:
        """Rebuild an entry from its wire form; anything else is a PayloadError."""
        if isinstance(data, dict) and len(data) == 1:
            ((key, value),) = data.items()
            kind = _KINDS.get(key)
            if kind is not None:
                return cls(kind, value)
        raise PayloadError(f"not a journal entry: {str(data)[:200]}", payload=str(data)[:200])

    @classmethod
    def from_json(cls, text: str | bytes) -> JournalEntry:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise PayloadError(f"journal entry is not JSON: {exc}") from exc
        return cls.parse(data)


Journal = dict[str, JournalEntry]


def dump_journal(journal: Journal) -> dict[str, dict[str, Any]]:
    return {call_id: entry.dump() for call_id, entry in journal.items()}


def parse_journal(data: dict[str, Any]) -> Journal:
    return {call_id: JournalEntry.parse(raw) for call_id, raw in data.items()}


# --- parked calls: what a suspended step waits for ----------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call to a distributed tool, sent as a tool task."""

    call_id: str
    tool: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ChildCall:
    """A distributed child workflow run; ``start`` is its start event's envelope."""

    call_id: str
    workflow: str
    start: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WaitCall:
    """``wait_for_event``: an event of type ``tag`` meeting ``requirements``; ``waiter`` is the
    envelope of the event published to ask for it (or None)."""

    call_id: str
    tag: str
    requirements: dict[str, Any]
    waiter: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class SleepCall:
    """``ctx.sleep(seconds)`` distributed: a durable timer that answers the call once due."""

    call_id: str
    seconds: float


ParkedCall = ToolCall | ChildCall | WaitCall | SleepCall


# --- effects: events a step sent or streamed ----------------------------------------------


class EffectKind(StrEnum):
    SEND = "send"  # ctx.send_event: routed to the steps that accept it
    STREAM = "stream"  # ctx.write_event_to_stream: published, not routed


@dataclass(frozen=True, slots=True)
class Effect:
    """The effect numbered ``pos`` (``<branch>:<n>``) of a step; ``step`` narrows a send."""

    pos: str
    kind: EffectKind
    event: Event
    step: str | None = None

"""The run log (a run's event stream) and the run's status: entry kinds, fields, retry notes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel

from tasks.protocol._json import load
from workflows.errors import ErrorInfo, PayloadError


class RunStatus(StrEnum):
    """Where a run stands; only ``running`` changes (once, by the ``FINISH`` script)."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


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
    return LogEntry(kind, load(fields.get("e", "null"), "log entry"), fields.get("r"), entry_id)


class RetryNote(BaseModel):
    """The payload of a ``retry`` entry: which step or tool, the attempt coming, and why."""

    what: Literal["step", "tool"]
    name: str
    attempt: int
    error: ErrorInfo

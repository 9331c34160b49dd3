"""Span records: what one delivery of a step or one attempt of a tool call did, where and when.

A span is written by the hop that ends the delivery, in that hop's own pipeline (one RPUSH, no
extra round trip), onto the run's spans list. A step invocation that suspends and resumes has
one span per delivery (``suspended`` then ``completed``), grouped by its ``inv``; a tool call
has one span per attempt, grouped by its ``call``. Times are wall-clock seconds (the next
delivery may run on another machine).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tasks.protocol._json import compact, load
from workflows.errors import PayloadError

ERROR_MAX = 300  # a span is a line in a chart: the whole error lives in the run's log


class SpanKind(StrEnum):
    STEP = "step"
    TOOL = "tool"


class SpanOutcome(StrEnum):
    """How a delivery ended: the step returned, parked on calls, or the attempt raised and is
    retried or is not (a step's error handler or its run's end take it from there; a tool's
    error goes back to its step as data)."""

    COMPLETED = "completed"
    SUSPENDED = "suspended"
    RETRY = "retry"
    FAILED = "failed"
    LIMITED = "limited"  # a call over its rate or concurrency limit: re-sent, not run


@dataclass(frozen=True, slots=True)
class Where:
    """The queue a message came from and the worker (Celery hostname) that ran it."""

    queue: str = ""
    worker: str = ""


@dataclass(frozen=True, slots=True)
class Span:
    kind: SpanKind
    name: str  # ``Workflow.step`` or the tool's name
    run: str
    inv: str
    call: str  # a tool call's id; empty for a step
    attempt: int
    queue: str
    worker: str
    start: float
    end: float
    outcome: SpanOutcome
    error: str = ""  # ``Type: message`` of a failed attempt, or what a wait is for; shortened
    until: float | None = None  # a sleeping or limited delivery waits until then (wall clock)

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "kind": self.kind.value,
            "name": self.name,
            "run": self.run,
            "inv": self.inv,
            "call": self.call,
            "attempt": self.attempt,
            "queue": self.queue,
            "worker": self.worker,
            "start": round(self.start, 6),
            "end": round(self.end, 6),
            "outcome": self.outcome.value,
        }
        if self.error:
            data["error"] = self.error[:ERROR_MAX]
        if self.until is not None:
            data["until"] = round(self.until, 6)
        return compact(data)

    def dump(self) -> dict[str, Any]:
        """The span as a JSON object (what a web view or ``--json`` output gets)."""
        data: dict[str, Any] = load(self.to_json(), "span")
        data["duration"] = round(self.duration, 6)
        return data

    @classmethod
    def from_json(cls, text: str) -> Span:
        data = load(text, "span")
        try:
            return cls(
                SpanKind(data["kind"]),
                str(data["name"]),
                str(data["run"]),
                str(data["inv"]),
                str(data["call"]),
                int(data["attempt"]),
                str(data["queue"]),
                str(data["worker"]),
                float(data["start"]),
                float(data["end"]),
                SpanOutcome(data["outcome"]),
                str(data.get("error", "")),
                None if data.get("until") is None else float(data["until"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PayloadError(f"not a span: {str(text)[:200]}") from exc


def error_line(type_: str, message: str) -> str:
    """A failed attempt's error as a span keeps it: one line, shortened."""
    line = f"{type_}: {message}".replace("\n", " ")
    return line if len(line) <= ERROR_MAX else line[: ERROR_MAX - 1] + "…"

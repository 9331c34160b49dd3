"""A schedule's definition as stored in Redis (``Keys.schedules``: name -> this, as JSON).

Exactly one of ``cron`` (a 5-field cron expression, or 6 fields with seconds first) and
``every`` (whole seconds) is set. ``input`` is the start event's fields, validated when the
schedule was added. ``created`` bounds the ticks: none at or before it ever fires. ``grace``
is how late a tick may still fire (``docs/schedules.md``: the missed-tick policy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tasks.protocol._json import compact, load
from workflows.errors import PayloadError


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    name: str
    workflow: str
    cron: str | None
    every: int | None  # seconds
    created: float
    grace: float
    input: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return compact(self.dump())

    def dump(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "workflow": self.workflow,
            "cron": self.cron,
            "every": self.every,
            "created": self.created,
            "grace": self.grace,
            "input": self.input,
        }

    @classmethod
    def from_json(cls, text: str | bytes) -> ScheduleRecord:
        data = load(text, "schedule record")
        try:
            cron, every, inputs = data["cron"], data["every"], data["input"]
            if (cron is None) == (every is None) or not isinstance(inputs, dict):
                raise ValueError("needs exactly one of cron and every, and an input object")
            return cls(
                str(data["name"]),
                str(data["workflow"]),
                None if cron is None else str(cron),
                None if every is None else int(every),
                float(data["created"]),
                float(data["grace"]),
                inputs,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PayloadError(f"bad schedule record: {exc}", payload=str(text)[:200]) from exc

"""Outbox entries: a task message waiting in the state Redis for a relay to publish it to a
separate broker (``tasks.relay``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasks.protocol._json import compact, load
from workflows.errors import PayloadError


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """Celery's protocol-2 message for one task, as a broker-neutral record: the queue it goes
    to, its task id, and the body, headers and properties Celery's own ``as_task_v2`` made.

    Wire: compact JSON (never a raw newline, so it fits in a timer member or a concurrency
    limit's waiting entry like a kombu envelope does)."""

    queue: str
    task_id: str
    body: Any
    headers: dict[str, Any]
    properties: dict[str, Any]

    def to_json(self) -> str:
        return compact(
            {
                "queue": self.queue,
                "id": self.task_id,
                "body": self.body,
                "headers": self.headers,
                "properties": self.properties,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> OutboxEntry:
        data = load(text, "outbox entry")
        try:
            return cls(
                str(data["queue"]),
                str(data["id"]),
                data["body"],
                dict(data["headers"]),
                dict(data["properties"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PayloadError(f"not an outbox entry: {str(text)[:200]}") from exc

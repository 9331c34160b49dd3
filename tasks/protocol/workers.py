"""A live worker's record in Redis: which queues it consumes and which tasks it can run.

Written by the worker's heartbeat (``tasks.heartbeat``) with an expiry a few beats long, so a
worker killed with -9 drops out on its own; read by the client and the CLI to tell "queued, and
no worker consumes that queue" from "queued behind others", and to show what workers run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tasks.protocol._json import compact, load
from workflows.errors import PayloadError


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    name: str  # Celery's node name, as Flower shows it
    queues: tuple[str, ...]
    pool: str
    concurrency: int
    pid: int
    started: float
    seen: float  # the last heartbeat
    tasks: tuple[str, ...] = field(default=())  # registered Baton tasks (steps and tools)
    imports: tuple[str, ...] = field(default=())  # its BATON_IMPORTS

    def to_json(self) -> str:
        return compact(self.dump())

    def dump(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "queues": list(self.queues),
            "pool": self.pool,
            "concurrency": self.concurrency,
            "pid": self.pid,
            "started": self.started,
            "seen": self.seen,
            "tasks": list(self.tasks),
            "imports": list(self.imports),
        }

    @classmethod
    def from_json(cls, text: str) -> WorkerRecord:
        data = load(text, "worker record")
        try:
            return cls(
                str(data["name"]),
                tuple(str(q) for q in data["queues"]),
                str(data["pool"]),
                int(data["concurrency"]),
                int(data["pid"]),
                float(data["started"]),
                float(data["seen"]),
                tuple(str(t) for t in data.get("tasks", ())),
                tuple(str(m) for m in data.get("imports", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PayloadError(f"not a worker record: {str(text)[:200]}") from exc

"""Baton's dead-letter list: messages Celery would otherwise ack and drop silently.

Celery acks a message it cannot decode (non-JSON, pickle refused), rejects unknown or invalid
tasks, and Redis has no dead-letter exchange; Baton keeps each such message, with the reason,
in ``{prefix}:dead`` so nothing vanishes unseen.
"""

from __future__ import annotations

import json
from typing import Any

from celery import signals
from celery.worker.consumer import Consumer

from tasks.runtime import Runtime

_runtime: Runtime | None = None


def keep(reason: str, message: Any, rt: Runtime | None = None) -> None:
    """Push a rejected message (or payload) onto the dead-letter list."""
    rt = rt or _runtime
    if rt is None:
        return
    body = getattr(message, "body", message)
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    entry = {
        "reason": reason,
        "headers": dict(getattr(message, "headers", None) or {}),
        "body": text[:10_000],
    }
    rt.redis.lpush(rt.keys.dead_letters(), json.dumps(entry, default=str))


class DeadLetterConsumer(Consumer):
    """Celery's consumer, but an undecodable message is kept before it is acked."""

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        keep(f"undecodable: {exc!r}", message)
        super().on_decode_error(message, exc)


def install(rt: Runtime) -> None:
    """Route rejected, unknown and undecodable messages of this process to the list."""
    global _runtime
    _runtime = rt
    rt.app.conf.worker_consumer = "tasks.deadletters:DeadLetterConsumer"

    def on_rejected(message: Any = None, exc: Any = None, **_: Any) -> None:
        keep(f"rejected: {exc!r}", message)

    def on_unknown(name: str = "", message: Any = None, exc: Any = None, **_: Any) -> None:
        keep(f"unknown task {name!r}", message)

    signals.task_rejected.connect(on_rejected, weak=False)
    signals.task_unknown.connect(on_unknown, weak=False)

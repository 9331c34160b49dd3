"""Baton's dead-letter list: messages Celery would otherwise ack and drop silently.

Celery acks a message it cannot decode (non-JSON, pickle refused), rejects unknown or invalid
tasks, and Redis has no dead-letter exchange; Baton keeps each such message, with the reason,
in ``{prefix}:dead`` (a :class:`DeadLetter` each) so nothing vanishes unseen; the list keeps
the newest ``BATON_DEAD_LETTERS_MAX`` and expires a retention period after the last one.
"""

from __future__ import annotations

from typing import Any

from celery import signals
from celery.worker.consumer import Consumer

from tasks.protocol import DeadLetter
from tasks.runtime import Runtime

MAX_BODY = 10_000


def keep(rt: Runtime, reason: str, message: Any) -> None:
    """Push a rejected message (or payload) onto the dead-letter list."""
    body = getattr(message, "body", message)
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    headers = dict(getattr(message, "headers", None) or {})
    entry = DeadLetter(reason, headers, text[:MAX_BODY])
    key = rt.keys.dead_letters()
    # bounded like everything Baton keeps: the newest ``dead_letters_max``, for the retention
    # period after the last one came (a stray producer can't fill Redis through this list)
    pipe = rt.redis.pipeline(transaction=False)
    pipe.lpush(key, entry.to_json())
    pipe.ltrim(key, 0, rt.settings.dead_letters_max - 1)
    pipe.expire(key, rt.settings.retention_seconds)
    pipe.execute()


def install(rt: Runtime) -> None:
    """Route this worker's rejected, unknown and undecodable messages to the list."""

    class DeadLetterConsumer(Consumer):
        """Celery's consumer, but an undecodable message is kept before it is acked."""

        def on_decode_error(self, message: Any, exc: Exception) -> None:
            keep(rt, f"undecodable: {exc!r}", message)
            super().on_decode_error(message, exc)

    rt.app.conf.worker_consumer = DeadLetterConsumer

    def on_rejected(message: Any = None, exc: Any = None, **_: Any) -> None:
        keep(rt, f"rejected: {exc!r}", message)

    def on_unknown(name: str = "", message: Any = None, exc: Any = None, **_: Any) -> None:
        keep(rt, f"unknown task {name!r}", message)

    signals.task_rejected.connect(on_rejected, weak=False)
    signals.task_unknown.connect(on_unknown, weak=False)

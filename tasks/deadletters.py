"""Baton's dead-letter list: messages Celery would otherwise ack and drop silently.

Celery acks a message it cannot decode (non-JSON, pickle refused), rejects unknown or invalid
tasks, and Redis has no dead-letter exchange; Baton keeps each such message, with the reason,
in ``{prefix}:dead`` (a :class:`DeadLetter` each) so nothing vanishes unseen; the list keeps
the newest ``BATON_DEAD_LETTERS_MAX`` and expires a retention period after the last one.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from celery import signals
from celery.worker.consumer import Consumer

from tasks import runs
from tasks.protocol import TOOL_TASK_PREFIX, DeadLetter, RunStatus
from tasks.runtime import Runtime
from workflows.errors import ConfigurationError

log = logging.getLogger("baton.worker")

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

    def on_unknown(
        sender: Any = None, name: str = "", message: Any = None, id: str = "", **_: Any
    ) -> None:
        keep(rt, f"unknown task {name!r}", message)
        worker = str(getattr(sender, "hostname", "") or "a worker")
        try:
            fail_unknown(rt, name, id, message, worker)
        except Exception:  # Redis away: the message is kept; the run is settled later
            log.exception("could not fail the run of unknown task %r", name)

    signals.task_rejected.connect(on_rejected, weak=False)
    signals.task_unknown.connect(on_unknown, weak=False)


def fail_unknown(rt: Runtime, name: str, task_id: str, message: Any, worker: str) -> None:
    """A message for a task this worker does not have: the workers lack the user's module.

    Left alone, its run would say "running" forever (Celery drops the message); instead the
    run fails, naming the task, the module to import and ``BATON_IMPORTS``."""
    run_id = _run_of(message)
    if run_id is None:
        return
    raw = rt.redis.hmget(rt.keys.run(run_id), ["status", "workflow", "module"])
    status, workflow, module = raw
    if status != RunStatus.RUNNING:
        return
    queue = (getattr(message, "delivery_info", None) or {}).get("routing_key") or "?"
    imports = ", ".join(rt.settings.imports) or "nothing"
    if name.startswith(TOOL_TASK_PREFIX):
        what = f"the module that defines tool {name.removeprefix(TOOL_TASK_PREFIX)!r}"
    else:
        what = f"module {module or '?'} (it defines workflow {workflow})"
    error = ConfigurationError(
        f"worker {worker} on queue {queue} has no task {name!r}: add {what} to BATON_IMPORTS "
        f"of the workers for queue {queue} (it imports: {imports})"
    )
    runs.fail_run(rt, run_id, error.to_info())
    if task_id:  # the run ended first: a crash in between leaves a live run, never a lost one
        rt.redis.hdel(rt.keys.inflight(run_id), str(task_id))


def _run_of(message: Any) -> str | None:
    """The run id of a Baton task message (its first argument), if it is one."""
    try:
        args = json.loads(getattr(message, "body", b""))[0]
        return str(args[0]) if args and isinstance(args[0], str) else None
    except (TypeError, ValueError, IndexError, KeyError):
        return None

"""What only a worker process installs: dead-letter hooks, the reaper and the kombu guard.

A client (``Client()``, the CLI) builds the same Celery app but never calls this, so it
patches nothing and connects no signal.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis

from tasks import deadletters, reaper
from tasks.runtime import Runtime

log = logging.getLogger("baton.worker")


def install_worker(rt: Runtime) -> None:
    """Make this process a Baton worker: keep rejected messages, sweep lost ones, survive
    Redis dying under the consumer."""
    guard_unacked_restore()
    deadletters.install(rt)
    reaper.install(rt)


def guard_unacked_restore() -> None:
    """Keep a worker alive when Redis dies under it (a kombu 5.7 bug, seen in our restart test).

    On a lost connection the consumer closes its channel; kombu first drops the channel's
    connection pools, then tries to push the channel's unacked messages back through a pool it
    can no longer build (``AttributeError: 'NoneType' object has no attribute 'hostname'``),
    and Celery treats that as unrecoverable: the worker process exits. Skipping that restore is
    safe: those messages are still in kombu's unacked hash in Redis, and the visibility sweep
    (every 2 s, see ``app.celery_app.celery_config``) brings them back once their visibility
    timeout passes.
    """
    original = kombu_redis.QoS.restore_unacked
    if getattr(original, "baton_guarded", False):
        return

    def restore_unacked(self: Any, client: Any = None) -> Any:
        try:
            return original(self, client)
        except Exception:
            log.warning("could not restore unacked messages now; the visibility sweep will")
            self._delivered.clear()
            return None

    restore_unacked.baton_guarded = True  # type: ignore[attr-defined]
    kombu_redis.QoS.restore_unacked = restore_unacked  # type: ignore[method-assign]

"""What only a worker process installs: dead-letter hooks, the reaper and the kombu guards.

A client (``Client()``, the CLI) builds the same Celery app but never calls this, so it
patches nothing and connects no signal.
"""

from __future__ import annotations

from typing import Any

from celery import signals

from tasks import acks, deadletters, guards, heartbeat, reaper, registry, relay, time_limits, timers
from tasks.runtime import Runtime


def install_worker(rt: Runtime) -> None:
    """Make this process a Baton worker: keep rejected messages, sweep lost ones, release due
    timers, survive Redis dying under the consumer and stray items on the queue lists, refuse
    time limits the visibility timeout cannot cover and report hard kills as timeouts, and keep
    its record (queues, tasks) fresh in the worker registry; with a separate broker, relay the
    outbox to it."""
    guards.lean_unacked_bookkeeping()
    guards.batched_task_events()
    acks.batch_acks()
    guards.guard_unacked_restore()
    guards.guard_closed_channel_acks()
    guards.guard_queue_items(rt)
    deadletters.install(rt)
    time_limits.install(rt)
    reaper.install(rt)
    timers.install(rt)
    heartbeat.install(rt)
    relay.install(rt)
    _declare_dead_letters(rt)


def _declare_dead_letters(rt: Runtime) -> None:
    """With quorum queues, declare their dead-letter queue once the worker is ready."""
    queue = registry.dead_letter_queue(rt)
    if queue is None:
        return

    def declare(**_: Any) -> None:
        with rt.app.connection_for_write() as conn:
            queue(conn.default_channel).declare()

    signals.worker_ready.connect(declare, weak=False)

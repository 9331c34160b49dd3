"""What only a worker process installs: dead-letter hooks, the reaper and the kombu guards.

A client (``Client()``, the CLI) builds the same Celery app but never calls this, so it
patches nothing and connects no signal.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import signals

from tasks import acks, deadletters, guards, heartbeat, reaper, registry, relay, time_limits, timers
from tasks.runtime import Runtime
from workflows.errors import ConfigurationError

log = logging.getLogger("baton.worker")


def install_worker(rt: Runtime) -> None:
    """Make this process a Baton worker: keep rejected messages, sweep lost ones, release due
    timers, survive Redis dying under the consumer and stray items on the queue lists, refuse
    time limits the visibility timeout cannot cover and report hard kills as timeouts, and keep
    its record (queues, tasks) fresh in the worker registry; with a separate broker, relay the
    outbox to it."""
    _check_buckets(rt)
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


def _check_buckets(rt: Runtime) -> None:
    """On a cluster, the first worker records ``BATON_STATE_BUCKETS``; a worker configured
    with another count would look for every run in the wrong bucket: it refuses to start."""
    k = rt.keys
    if not k.buckets:
        return
    try:
        rt.redis.set(k.bucket_count(), k.buckets, nx=True)
        recorded = int(rt.redis.get(k.bucket_count()))
    except redis.RedisError:  # the cluster away at start: the worker waits for it anyway
        log.warning("could not check BATON_STATE_BUCKETS: the Redis Cluster does not answer")
        return
    if recorded != k.buckets:
        raise ConfigurationError(
            f"BATON_STATE_BUCKETS is {k.buckets}, but this cluster's runs were written with "
            f"{recorded} buckets: set it back to {recorded}"
        )


def _declare_dead_letters(rt: Runtime) -> None:
    """With quorum queues, declare their dead-letter queue once the worker is ready."""
    queue = registry.dead_letter_queue(rt)
    if queue is None:
        return

    def declare(**_: Any) -> None:
        with rt.app.connection_for_write() as conn:
            queue(conn.default_channel).declare()

    signals.worker_ready.connect(declare, weak=False)

"""A worker's heartbeat: its record (queues, pool, tasks) kept fresh in Redis while it lives.

One thread in the worker's main process writes the record every :data:`BEAT` seconds with an
expiry of :data:`TTL`, and its name in a sorted set scored by the time of that beat; a clean
shutdown removes both, a killed worker's record expires. Readers (:func:`live_workers`) take
only names seen within the TTL, so "no worker consumes queue X" is known within seconds, with
no broadcast to the workers (``celery inspect`` waits for replies that may never come).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery import signals

from tasks.pool import AsyncioPool
from tasks.protocol.workers import WorkerRecord
from tasks.runtime import Runtime
from tasks.worker_threads import run_while_worker_lives

log = logging.getLogger("baton.worker")

BEAT = 5.0
TTL = 3 * BEAT


class Heartbeat(threading.Thread):
    def __init__(self, rt: Runtime, record: WorkerRecord) -> None:
        super().__init__(name="baton-heartbeat", daemon=True)
        self.rt, self.record = rt, record
        self.stopped = threading.Event()

    def run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception:  # Redis away: the record expires, and comes back with it
                log.warning("worker heartbeat failed", exc_info=True)
            if self.stopped.wait(BEAT):
                return

    def beat(self) -> None:
        k, at = self.rt.keys, time.time()
        record = WorkerRecord(**{**_fields(self.record), "seen": at})
        pipe = self.rt.redis.pipeline(transaction=False)
        pipe.set(k.worker(record.name), record.to_json(), ex=int(TTL))
        pipe.zadd(k.workers(), {record.name: at})
        pipe.zremrangebyscore(k.workers(), "-inf", at - TTL)  # the killed ones
        pipe.expire(k.workers(), int(TTL))
        pipe.execute()

    def stop(self) -> None:
        """A clean shutdown: out of the registry at once, not a TTL later."""
        self.stopped.set()
        try:
            pipe = self.rt.redis.pipeline(transaction=False)
            pipe.delete(self.rt.keys.worker(self.record.name))
            pipe.zrem(self.rt.keys.workers(), self.record.name)
            pipe.execute()
        except Exception:
            log.warning("could not leave the worker registry", exc_info=True)


def pool_name(pool: Any) -> str:
    """``prefork``, ``threads``, ``solo``, ``asyncio``...: as the topology and ``-P`` say it."""
    if isinstance(pool, str):
        return pool
    if pool is AsyncioPool:
        return "asyncio"
    module = str(getattr(pool, "__module__", ""))
    if module.startswith("celery.concurrency."):
        return module.rsplit(".", 1)[-1].replace("thread", "threads")
    return str(getattr(pool, "__name__", pool))


def _fields(record: WorkerRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__slots__}


def live_workers(rt: Runtime) -> list[WorkerRecord]:
    """The workers whose heartbeat is fresh, by name."""
    k, at = rt.keys, time.time()
    names = rt.redis.zrangebyscore(k.workers(), at - TTL, "+inf")
    if not names:
        return []
    pipe = rt.redis.pipeline(transaction=False)  # not MGET: on a cluster the keys spread
    for n in names:
        pipe.get(k.worker(n))
    raws = pipe.execute()
    return sorted(
        (WorkerRecord.from_json(raw) for raw in raws if raw is not None), key=lambda w: w.name
    )


def install(rt: Runtime) -> None:
    """Beat from each worker's main process once it is ready; stop on shutdown."""
    facts: dict[str, Any] = {}

    def setup(sender: Any = None, instance: Any = None, **_: Any) -> None:
        if instance is None:
            return
        facts.update(
            name=str(sender or instance.hostname),
            queues=tuple(sorted(instance.app.amqp.queues.consume_from)),
            pool=pool_name(getattr(instance, "pool_cls", "")),
            concurrency=int(getattr(instance, "concurrency", 0) or 0),
            tasks=tuple(sorted(t for t in instance.app.tasks if not t.startswith("celery."))),
        )

    def make(_: Any) -> Heartbeat | None:
        if not facts:
            return None
        record = WorkerRecord(
            pid=os.getpid(),
            started=time.time(),
            seen=0.0,
            imports=tuple(rt.settings.imports),
            **facts,
        )
        return Heartbeat(rt, record)

    signals.celeryd_after_setup.connect(setup, weak=False)
    run_while_worker_lives(make)

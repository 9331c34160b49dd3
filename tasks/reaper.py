"""The reaper: resends task messages that a crash lost.

Every message Baton sends is recorded in its run's in-flight hash until the task that took it
is done. kombu's Redis transport can lose a message outright when Redis dies between a worker
popping it and recording it as unacked; Celery then never redelivers it and the run would
hang. The reaper, a thread in every worker (one sweeps at a time, under a Redis lock), resends
any message still in flight a visibility timeout after it was due. Resending is safe: a task
that already ran finds its journal entry or done marker and does nothing twice.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import signals

from tasks import runs
from tasks.protocol import InflightRecord, Message, RunStatus
from tasks.runtime import Runtime, now

log = logging.getLogger("baton.reaper")


def sweep(rt: Runtime, lost_after: float) -> int:
    """Resend in-flight messages of running runs that are overdue by ``lost_after`` seconds."""
    r, k = rt.redis, rt.keys
    cutoff = now() - lost_after
    resent = 0
    for run_id in r.smembers(k.live()):
        status, deadline = r.hmget(k.run(run_id), ["status", "deadline"])
        if status != RunStatus.RUNNING:
            r.srem(k.live(), run_id)
            continue
        if deadline and now() > float(deadline):
            runs.fail_past_deadline(rt, run_id)
            continue
        overdue: list[tuple[float, Message]] = []
        for raw in r.hvals(k.inflight(run_id)):
            record = InflightRecord.from_json(raw)
            if record.due < cutoff:
                overdue.append((record.due, record.message))
        ids = [m.task_id for _, m in overdue]
        started = r.hmget(k.deliveries(run_id), ids) if ids else []
        stale = [
            m for (due, m), s in zip(overdue, started, strict=True) if _lost(due, m, s, cutoff)
        ]
        if stale:
            log.warning("run %s: resending %d lost message(s)", run_id, len(stale))
            rt.send(stale)
            resent += len(stale)
    return resent


def _lost(due: float, m: Message, started: str | None, cutoff: float) -> bool:
    """Never reached a task; or started, yet past any time it could still be running (a task
    that died on an unexpected error is acked by Celery and never comes back)."""
    return started is None or due + (m.time_limit or 0.0) < cutoff


class Reaper(threading.Thread):
    """Sweeps every ``interval`` seconds while the worker lives."""

    def __init__(self, rt: Runtime, interval: float, lost_after: float) -> None:
        super().__init__(name="baton-reaper", daemon=True)
        self.rt, self.interval, self.lost_after = rt, interval, lost_after
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.sweep_once()
            except Exception:  # Redis down or restarting: try again next round
                log.warning("reaper sweep failed", exc_info=True)

    def sweep_once(self) -> None:
        """Sweep unless another worker is sweeping; the lock is held only while sweeping."""
        r, key, token = self.rt.redis, self.rt.keys.reaper_lock(), self.name + str(id(self))
        if not r.set(key, token, nx=True, ex=60):
            return
        try:
            sweep(self.rt, self.lost_after)
        finally:
            if r.get(key) == token:
                r.delete(key)


def install(rt: Runtime) -> None:
    """Start a reaper in each worker's main process once it is ready."""
    vt = float(rt.settings.visibility_timeout)
    interval = min(10.0, max(1.0, vt / 4))

    def start(**_: Any) -> None:
        Reaper(rt, interval, lost_after=vt).start()

    signals.worker_ready.connect(start, weak=False)

"""Schedules in Redis: their definitions (one hash) and, per schedule, the runs it started.

The scheduler itself (``app/schedules.py``) keeps no shared state: which tick already fired is
decided by the run's idempotency key, claimed by the CREATE script with the run. What is
written here is only for people: the definitions, and which run each tick started. Every call
turns Redis being down into :class:`StoreUnavailableError` (``tasks.queries.store_errors``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.protocol.schedules import ScheduleRecord
from tasks.queries import store_errors

if TYPE_CHECKING:
    from tasks.runtime import Runtime


def add(rt: Runtime, record: ScheduleRecord) -> bool:
    """Store ``record`` unless its name is taken; False (and nothing written) if it is."""
    with store_errors():
        return bool(rt.redis.hsetnx(rt.keys.schedules(), record.name, record.to_json()))


def remove(rt: Runtime, name: str) -> bool:
    """Delete a schedule and its tick -> run index (the runs themselves stay); False if none."""
    with store_errors():
        pipe = rt.redis.pipeline(transaction=True)
        pipe.hdel(rt.keys.schedules(), name)
        pipe.delete(rt.keys.schedule_runs(name))
        removed, _ = pipe.execute()
    return bool(removed)


def all_schedules(rt: Runtime) -> list[ScheduleRecord]:
    """Every schedule, by name."""
    with store_errors():
        raw = rt.redis.hgetall(rt.keys.schedules())
    return [ScheduleRecord.from_json(raw[name]) for name in sorted(raw)]


def record_run(rt: Runtime, name: str, tick: float, run_id: str) -> bool:
    """Note that ``tick`` of ``name`` started ``run_id``; True for the first to note it.

    Trimmed like the runs index: what is older than retention is gone with its runs."""
    key, retention = rt.keys.schedule_runs(name), rt.settings.retention_seconds
    with store_errors():
        pipe = rt.redis.pipeline(transaction=True)
        pipe.zadd(key, {run_id: tick})
        pipe.zremrangebyscore(key, "-inf", tick - retention)
        pipe.expire(key, retention)
        added, _, _ = pipe.execute()
    return bool(added)


def started_runs(rt: Runtime, name: str, limit: int = 20) -> list[tuple[float, str]]:
    """The newest ``limit`` (tick, run id) pairs of a schedule, newest first."""
    with store_errors():
        got = rt.redis.zrevrange(rt.keys.schedule_runs(name), 0, limit - 1, withscores=True)
    return [(float(score), str(run_id)) for run_id, score in got]


def server_time(rt: Runtime) -> float:
    """Redis's clock (estimated): every scheduler sees ticks come due at the same moment."""
    with store_errors():
        return rt.server_time()

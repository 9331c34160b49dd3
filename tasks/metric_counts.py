"""Step and tool duration histograms and outcome counts, aggregated in-process, flushed to Redis.

Every span a process writes (a step delivery in ``tasks.step_hop.write_span``, a tool attempt
in ``tasks.tool_task``) is also :func:`observe`-d here: per ``(kind, name, outcome)`` a count, a
sum of seconds and a count per duration bucket, held in memory behind a lock. A daemon thread,
started lazily by the first observation of each process (a prefork child starts its own after
the fork), adds the deltas to one Redis hash (``Keys.metrics``) every :data:`FLUSH_EVERY`
seconds, in one MULTI/EXEC of HINCRBY/HINCRBYFLOAT. So the hop path pays no Redis command for
its metrics. If Redis refuses a flush the deltas are kept and added to the next one; the
process also flushes when it exits (``atexit``, and Celery's worker/worker-process shutdown
signals, since a prefork child ends with ``os._exit``). A worker killed with -9 loses at most
its last :data:`FLUSH_EVERY` seconds of observations.

The hash only grows (counts are monotonic, as Prometheus counters must be) and never expires:
its size is bounded by step and tool names x outcomes x buckets. Fields are
``kind<TAB>name<TAB>outcome<TAB>stat``, ``stat`` being ``count``, ``sum`` or the index of the
first bucket (:data:`BUCKETS`) the duration fits in (none: above the last one, in +Inf only).
:func:`read` parses it into :class:`Series`, cumulated by the exporter (``app.metrics``).
"""

from __future__ import annotations

import atexit
import bisect
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from celery import signals

from tasks.protocol import Span
from tasks.runtime import Runtime

log = logging.getLogger("baton.worker")

# upper bounds in seconds: from a cache hit to a slow LLM call with retries inside
BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
FLUSH_EVERY = 2.0
SEP = "\t"


def fields_of(span: Span) -> dict[str, float]:
    """The hash fields one span adds to, and by how much."""
    base = SEP.join((span.kind.value, span.name, span.outcome.value))
    d = span.duration
    out = {f"{base}{SEP}count": 1.0, f"{base}{SEP}sum": d}
    i = bisect.bisect_left(BUCKETS, d)  # the first bound >= d (``le`` is inclusive)
    if i < len(BUCKETS):
        out[f"{base}{SEP}{i}"] = 1.0
    return out


class Recorder:
    """A process's pending deltas per hash key, and the thread that flushes them."""

    def __init__(self, every: float = FLUSH_EVERY) -> None:
        self.every = every
        self._reset()
        if hasattr(os, "register_at_fork"):
            # the parent flushes what it observed; a lock held at fork would never be released
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[str, dict[str, float]] = {}
        self.runtimes: dict[str, Runtime] = {}
        self.pid = os.getpid()
        self.thread: threading.Thread | None = None
        self.stopped = threading.Event()

    def observe(self, rt: Runtime, span: Span) -> None:
        key = rt.keys.metrics()
        adds = fields_of(span)
        with self.lock:
            if self.pid != os.getpid():  # forked without the hook: the deltas are the parent's
                self.pending, self.runtimes, self.thread = {}, {}, None
                self.pid = os.getpid()
            self.runtimes[key] = rt
            deltas = self.pending.setdefault(key, {})
            for f, v in adds.items():
                deltas[f] = deltas.get(f, 0.0) + v
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(
                    target=self._loop, name="baton-metrics-flush", daemon=True
                )
                self.thread.start()

    def _loop(self) -> None:
        while not self.stopped.wait(self.every):
            self.flush()

    def flush(self) -> bool:
        """Add the pending deltas to Redis; False (and they stay pending) if it refused."""
        with self.lock:
            batch, self.pending = self.pending, {}
            runtimes = dict(self.runtimes)
        failed: dict[str, dict[str, float]] = {}
        for key, deltas in batch.items():
            if not deltas:
                continue
            try:
                pipe = runtimes[key].redis.pipeline(transaction=True)
                for f, v in deltas.items():
                    if f.endswith(f"{SEP}sum"):
                        pipe.hincrbyfloat(key, f, v)
                    else:
                        pipe.hincrby(key, f, int(v))
                pipe.execute()
            except Exception:  # Redis away: keep them for the next round
                log.debug("metrics flush failed; kept for the next one", exc_info=True)
                failed[key] = deltas
        if failed:
            with self.lock:
                for key, deltas in failed.items():
                    mine = self.pending.setdefault(key, {})
                    for f, v in deltas.items():
                        mine[f] = mine.get(f, 0.0) + v
        return not failed


RECORDER = Recorder()


def observe(rt: Runtime, span: Span) -> None:
    """Count one span (in memory; flushed to ``rt.keys.metrics()`` within seconds)."""
    try:
        RECORDER.observe(rt, span)
    except Exception:  # metrics never fail a hop (e.g. no thread can start at shutdown)
        log.debug("span not counted in the metrics", exc_info=True)


def flush() -> bool:
    """Flush this process's pending observations now (at exit, and in tests)."""
    return RECORDER.flush()


def _flush_at_exit(*_: Any, **__: Any) -> None:
    try:
        if RECORDER.pid == os.getpid():
            RECORDER.flush()
    except Exception:  # exiting anyway
        pass


atexit.register(_flush_at_exit)
signals.worker_process_shutdown.connect(_flush_at_exit, weak=False)
signals.worker_shutdown.connect(_flush_at_exit, weak=False)


@dataclass
class Series:
    """One ``(kind, name, outcome)``'s totals: per-bucket (not cumulative) counts, sum, count."""

    kind: str
    name: str
    outcome: str
    count: int = 0
    sum: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count)`` pairs as Prometheus wants them, ``+Inf`` (the count) last."""
        out, running = [], 0
        for bound, n in zip(BUCKETS, self.buckets, strict=True):
            running += n
            out.append((f"{bound:g}", running))
        out.append(("+Inf", self.count))
        return out


def parse(raw: dict[str, str]) -> list[Series]:
    """The hash's fields as series, sorted by kind, name and outcome (unknown fields skipped)."""
    series: dict[tuple[str, str, str], Series] = {}
    for f, value in raw.items():
        parts = f.split(SEP)
        if len(parts) != 4:
            continue
        kind, name, outcome, stat = parts
        s = series.setdefault((kind, name, outcome), Series(kind, name, outcome))
        try:
            if stat == "count":
                s.count = int(value)
            elif stat == "sum":
                s.sum = float(value)
            elif stat.isdigit() and int(stat) < len(BUCKETS):
                s.buckets[int(stat)] = int(value)
        except ValueError:
            continue
    return [series[k] for k in sorted(series)]


def read(rt: Runtime) -> list[Series]:
    """Every series flushed so far, by every process (raises Redis's errors)."""
    raw: dict[str, str] = rt.redis.hgetall(rt.keys.metrics())
    return parse(raw)

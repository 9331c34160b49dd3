"""Global rate limits: one ``10/s`` limit shared by every worker process holds over time.

On one private Redis (AOF, fsync once a second) and ``workers`` prefork worker processes of
concurrency 2 (4 pool processes by default), ``runs`` runs of
``tests.integration.limit_flows.LimitBurst`` each gather ``calls`` calls of ``limited_10`` at
once (``runs x calls`` calls, ~32 s at 10/s). Each execution records its start (the tool's own
clock). Reported: the overall rate (calls - 1 over first-to-last); the startup gap (the first
call starts at once, the second only once the burst of first deliveries has gone through the
queue); the steady part's rate (after that gap) and, over sliding 1 s windows ``[t, t + 1)``
starting at each of its executions (the last second excluded), min, p50, max executions and
the share within +-10% of 10; the smallest gap between two starts. Mid-way it samples where the
waiting calls are (the timer set, the queue list, kombu's unacked hash).

    .venv/bin/python -m benchmarks.bench_limits [--runs 4] [--calls 80] [--workers 2]

``--concurrency-test``: a concurrency limit of 3 per key (``concurrent_3_keyed``, each call
holding its permit 300 ms) under ``runs x calls`` calls (default 5 x 100 = 500) spread over 20
keys, on ``workers`` threads workers of concurrency 40 (more slots than the 60 permits, so
the limit binds); reported: the most calls of one
key observed in flight at once (from each execution's enter and exit times), per key and
overall, and the throughput.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from app.celery_app import create_app
from app.client import Client
from benchmarks.bench_distributed import _running
from config import Settings
from tests.harness import RedisServer, Worker, worker_env
from tests.integration.limit_flows import QUEUE, effects, held

IMPORTS = ["tests.integration.limit_flows"]
PREFIX = "blimits"
RATE = 10.0


def windows(times: list[float]) -> list[int]:
    """Executions in ``[t, t + 1)`` for every execution time t at least 1 s before the last."""
    return [sum(1 for u in times if t <= u < t + 1.0) for t in times if t <= times[-1] - 1.0]


def bench(url: str, tmp: Path, runs: int, calls: int, n_workers: int) -> Any:
    env = worker_env(url, tmp, BATON_IMPORTS=json.dumps(IMPORTS), BATON_KEY_PREFIX=PREFIX)
    workers = [Worker(env, [QUEUE], 2, name=f"limits{i}@bench") for i in range(n_workers)]
    settings = Settings(redis_url=url, key_prefix=PREFIX, imports=IMPORTS)
    client = Client(runtime=create_app(settings)[1])
    rt = client.runtime
    with _running(workers[0]):
        for w in workers[1:]:
            w.start()
        try:
            began = time.perf_counter()
            handles = [
                client.submit("LimitBurst", label="bench", tool="limited_10", n=calls)
                for _ in range(runs)
            ]
            time.sleep(5.0)  # mid-way: where do the waiting calls wait?
            holders = {
                "timer_set": rt.redis.zcard(rt.keys.timers()),
                "queue_list": rt.redis.llen(rt.keys.queue(QUEUE)),
                "unacked": rt.redis.hlen(rt.keys.unacked()),
            }
            done = sum(h.result(timeout=runs * calls / RATE + 60) for h in handles)
            total = time.perf_counter() - began
        finally:
            for w in workers[1:]:
                w.stop()
    lines = effects("bench", tmp).read_text().splitlines()
    times = sorted(float(line.split()[0]) for line in lines)
    span = times[-1] - times[0]
    # the first call starts at once; the next wait behind the burst of first deliveries on the
    # queue (each is re-sent to the timers): measure the steady part from the end of that gap
    gap, after = max((b - a, i + 1) for i, (a, b) in enumerate(itertools.pairwise(times)))
    steady = times[after:]
    counts = windows(steady)
    within = sum(1 for c in counts if abs(c - RATE) <= 0.1 * RATE)
    return {
        "limit": "10/s",
        "workers": f"{n_workers} x prefork, concurrency 2",
        "calls": runs * calls,
        "completed": done,
        "executions": len(times),
        "first_to_last_s": round(span, 2),
        "total_s": round(total, 2),
        "overall_rate_per_s": round((len(times) - 1) / span, 3),
        "startup_gap_s": round(gap, 3),
        "steady_executions": len(steady),
        "steady_rate_per_s": round((len(steady) - 1) / (steady[-1] - steady[0]), 3),
        "steady_sliding_1s": {
            "windows": len(counts),
            "min": min(counts),
            "p50": statistics.median(counts),
            "max": max(counts),
            "within_10_percent": round(within / len(counts), 4),
        },
        "min_gap_ms": round(min(b - a for a, b in itertools.pairwise(times)) * 1000, 1),
        "mid_way": holders,
    }


def max_in_flight(spans: list[tuple[float, float]]) -> int:
    """The most executions in progress at one instant (an exit sorts before an equal enter)."""
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    most = level = 0
    for _, step in events:
        level += step
        most = max(most, level)
    return most


def bench_concurrency(url: str, tmp: Path, runs: int, calls: int, n_workers: int) -> Any:
    env = worker_env(url, tmp, BATON_IMPORTS=json.dumps(IMPORTS), BATON_KEY_PREFIX=PREFIX)
    workers = [
        Worker(env, [QUEUE], 40, pool="threads", name=f"climits{i}@bench") for i in range(n_workers)
    ]
    settings = Settings(redis_url=url, key_prefix=PREFIX, imports=IMPORTS)
    client = Client(runtime=create_app(settings)[1])
    users = [f"u{i:02d}" for i in range(20)]
    with _running(workers[0]):
        for w in workers[1:]:
            w.start()
        try:
            began = time.perf_counter()
            handles = [
                client.submit(
                    "LimitBurst", label="cbench", tool="concurrent_3_keyed", n=calls, users=users
                )
                for _ in range(runs)
            ]
            done = sum(h.result(timeout=120) for h in handles)
            total = time.perf_counter() - began
            limited = sum(1 for h in handles for sp in h.spans() if sp.outcome.value == "limited")
        finally:
            for w in workers[1:]:
                w.stop()
    by_key: dict[str, list[tuple[float, float]]] = {}
    for line in held("cbench", tmp).read_text().splitlines():
        enter, leave, _, key = line.split()
        by_key.setdefault(key, []).append((float(enter), float(leave)))
    per_key = {key: max_in_flight(spans) for key, spans in sorted(by_key.items())}
    return {
        "limit": "concurrency 3 per key, 20 keys, 300 ms per call",
        "workers": f"{n_workers} x threads, concurrency 40",
        "calls": runs * calls,
        "completed": done,
        "executions": sum(len(v) for v in by_key.values()),
        "limited_spans": limited,
        "total_s": round(total, 2),
        "calls_per_s": round(runs * calls / total, 1),
        "max_in_flight_per_key": per_key,
        "max_in_flight_any_key": max(per_key.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=None, help="4 (5 with --concurrency-test)")
    parser.add_argument(
        "--calls", type=int, default=None, help="calls gathered by each run: 80 (100)"
    )
    parser.add_argument(
        "--concurrency-test", action="store_true", help="a concurrency limit of 3 per key"
    )
    parser.add_argument("--workers", type=int, default=2, help="prefork worker processes (c2)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="baton-bench-limits-"))
    (tmp / "redis").mkdir()
    server = RedisServer(tmp / "redis", appendfsync="everysec")
    server.start()
    try:
        if args.concurrency_test:
            runs, calls = args.runs or 5, args.calls or 100
            out = bench_concurrency(server.url, tmp, runs, calls, args.workers)
        else:
            out = bench(server.url, tmp, args.runs or 4, args.calls or 80, args.workers)
    finally:
        server.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

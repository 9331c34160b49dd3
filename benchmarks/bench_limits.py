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
from tests.integration.limit_flows import QUEUE, effects

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--calls", type=int, default=80, help="calls gathered by each run")
    parser.add_argument("--workers", type=int, default=2, help="prefork worker processes (c2)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="baton-bench-limits-"))
    (tmp / "redis").mkdir()
    server = RedisServer(tmp / "redis", appendfsync="everysec")
    server.start()
    try:
        out = bench(server.url, tmp, args.runs, args.calls, args.workers)
    finally:
        server.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

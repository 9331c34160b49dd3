"""Durable timers: ``runs`` runs each ``await ctx.sleep(S)``; sleeping, they hold no worker slot,
and they wake on time.

On one private Redis (AOF, fsync once a second) and ``workers`` asyncio worker processes, runs of
``tests.integration.timer_flows.Nap`` are submitted at ``rate`` per second (paced, so the wake-ups
come at the rate the first steps ran). Once every run has started sleeping and before the first
wakes, it samples what holds them: the workers' active tasks (Celery's ``inspect().active()``),
the timer set's size, the step queue's length and kombu's unacked hash. Lateness of a run is
``woke - (t0 + S)``, both read by the step on its own clock (``t0`` just before ``ctx.sleep``,
``woke`` just after it returned on the resume): the timer pump's poll, the sleep tool's task and
the step's resume hop.

    .venv/bin/python -m benchmarks.bench_timers [--runs 1000] [--seconds 8] [--rate 200]
"""

from __future__ import annotations

import argparse
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
from tests.integration.timer_flows import QUEUE

IMPORTS = ["tests.integration.timer_flows"]
PREFIX = "btimers"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sample_holders(client: Client, workers: list[Worker]) -> dict[str, Any]:
    rt = client.runtime
    active = rt.app.control.inspect(destination=[w.name for w in workers], timeout=1.0).active()
    return {
        "active_tasks": {name: len(tasks) for name, tasks in (active or {}).items()},
        "timer_set": rt.redis.zcard(rt.keys.timers()),
        "queue_list": rt.redis.llen(rt.keys.queue(QUEUE)),
        "unacked": rt.redis.hlen(rt.keys.unacked()),
    }


def bench(url: str, tmp: Path, runs: int, seconds: float, rate: float, n_workers: int) -> Any:
    env = worker_env(url, tmp, BATON_IMPORTS=json.dumps(IMPORTS), BATON_KEY_PREFIX=PREFIX)
    workers = [
        Worker(env, [QUEUE], 100, pool="asyncio", name=f"timers{i}@bench") for i in range(n_workers)
    ]
    settings = Settings(redis_url=url, key_prefix=PREFIX, imports=IMPORTS)
    client = Client(runtime=create_app(settings)[1])
    with _running(workers[0]):
        for w in workers[1:]:
            w.start()
        try:
            assert client.submit("Nap", seconds=0.1).result(timeout=30)  # warm-up
            began = time.perf_counter()
            handles = []
            for i in range(runs):
                pause = began + i / rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)  # pacing the submissions
                handles.append(client.submit("Nap", seconds=seconds))
            submitted = time.perf_counter() - began
            # every run asleep (the last submitted ~0.5 s ago), the first not awake yet
            wait = min(0.5, seconds - submitted - 0.5)
            if wait > 0:
                time.sleep(wait)
            holders = sample_holders(client, workers)
            results = [h.result(timeout=seconds + 120) for h in handles]
            total = time.perf_counter() - began
        finally:
            for w in workers[1:]:
                w.stop()
    late = [(r["woke"] - (r["t0"] + seconds)) * 1000 for r in results]
    return {
        "runs": runs,
        "sleep_s": seconds,
        "submit_rate_per_s": rate,
        "submitted_in_s": round(submitted, 2),
        "total_s": round(total, 2),
        "workers": f"{n_workers} x asyncio, concurrency 100",
        "while_all_sleep": holders,
        "lateness_ms": {
            "min": round(min(late), 1),
            "p50": round(statistics.median(late), 1),
            "p90": round(percentile(late, 0.90), 1),
            "p99": round(percentile(late, 0.99), 1),
            "max": round(max(late), 1),
        },
        "woke_early": sum(1 for x in late if x < 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=8.0, help="each run's sleep")
    parser.add_argument("--rate", type=float, default=200.0, help="submissions per second")
    parser.add_argument("--workers", type=int, default=2, help="asyncio worker processes")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="baton-bench-timers-"))
    (tmp / "redis").mkdir()
    server = RedisServer(tmp / "redis", appendfsync="everysec")
    server.start()
    try:
        out = bench(server.url, tmp, args.runs, args.seconds, args.rate, args.workers)
    finally:
        server.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

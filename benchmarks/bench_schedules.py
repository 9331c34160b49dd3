"""Schedules under several schedulers: does each tick start exactly one run, and how late?

A private redis-server, ``--schedulers`` ``baton scheduler`` processes (3), one cron schedule
(default ``* * * * * *``: every second, croniter's 6-field form with seconds first; pass
``--cron "* * * * *"`` for the minute cron) watched for ``--seconds`` (120). No worker runs:
a started run is a run written, which is what is counted. Prints JSON: ticks expected (those
that came due while the schedulers ran), runs started, duplicates (runs beyond one per tick),
ticks missed, and the lateness of each run's creation after its tick.

    .venv/bin/python -m benchmarks.bench_schedules [--seconds 120] [--cron "* * * * *"]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

from app.schedules import ticks
from tests.harness import (
    RedisServer,
    eventually,
    private_client,
    spawn,
    stop_group,
    worker_env,
)

PREFIX = "benchsched"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--cron", default="* * * * * *")
    parser.add_argument("--schedulers", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            result = bench(server.url, Path(tmp), args.cron, args.seconds, args.schedulers)
        finally:
            server.stop()
    print(json.dumps(result, indent=2))
    return result


def bench(url: str, tmp: Path, cron: str, seconds: float, n: int) -> dict[str, Any]:
    client = private_client(url, PREFIX)
    env = worker_env(url, tmp, BATON_KEY_PREFIX=PREFIX)
    logs = [tmp / f"scheduler{i}.log" for i in range(n)]
    procs = [spawn(["app.cli", "scheduler"], env, log) for log in logs]
    try:
        for log in logs:
            eventually(partial(_ready, log), timeout=30, interval=0.1)
        record = client.schedules.add("bench", "AddTwice", {"a": 1, "b": 2}, cron=cron)
        start = record.created
        time.sleep(seconds)  # the measured window: the schedulers fire on their own
        end = client.runtime.server_time()
        due = _due(client, start, end)
        with contextlib.suppress(AssertionError):  # the last tick's run may be a moment away;
            # if it never comes it is reported as missed
            eventually(lambda: len(client.schedules.runs("bench", 100_000)) >= len(due), 5)
    finally:
        for proc in procs:
            stop_group(proc)
    fired = sorted(client.schedules.runs("bench", limit=100_000))
    run_ids = {r.run_id for r in client.runs(limit=100_000)}
    per_tick = Counter(tick for tick, _ in fired)
    # beyond one run per tick: runs no tick claims, and ticks with more than one run
    duplicates = len(run_ids - {r for _, r in fired}) + sum(c - 1 for c in per_tick.values())
    window = [(tick, run_id) for tick, run_id in fired if tick <= end]
    late = [client.get(run_id).info().created - tick for tick, run_id in window]
    return {
        "cron": cron,
        "schedulers": n,
        "seconds": seconds,
        "ticks_expected": len(due),
        "runs_started": len(window),
        "duplicates": duplicates,
        "ticks_missed": len(set(due) - set(per_tick)),
        "lateness_ms": {
            "median": _ms(statistics.median(late)) if late else None,
            "max": _ms(max(late)) if late else None,
            # a new schedule is seen within a second (MAX_SLEEP): its first tick may be late
            "max_after_first_tick": _ms(max(late[1:])) if len(late) > 1 else None,
        },
    }


def _ready(log: Path) -> bool:
    return "baton scheduler ready" in log.read_text()


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _due(client: Any, start: float, end: float) -> list[float]:
    """The ticks in ``(start, end]`` of the schedule, as the schedulers compute them."""
    from tasks.schedules import all_schedules

    (record,) = all_schedules(client.runtime)
    return ticks(record, start, end)


if __name__ == "__main__":
    main()

"""HTTP API under load, on a private Redis, real workers and a real ``baton serve``.

1. ``run-nowait`` latency: sequential POSTs, p50 / p99 (what a caller waits to get a handler).
2. 200 event-stream readers: 200 runs each streaming one event per step hop, read at the same
   time over NDJSON (``GET /events/{id}?sse=false``) by one client process; events delivered
   per second across all readers (live: paced by the workers producing them), and
   ``run-nowait`` latency measured while they read (the server keeps accepting runs).
3. The same 200 readers again once the runs ended: delivery alone, as fast as the server goes.

    .venv/bin/python -m benchmarks.bench_http [--readers 200] [--ticks 10] [--posts 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.harness import ROOT, RedisServer, Worker, eventually, free_port, stop_group, worker_env

IMPORTS = json.dumps(["benchmarks.flows"])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, log.read_text()[-2000:]
        return httpx.get(f"{url}/health", timeout=1).status_code == 200

    eventually(up, timeout=40, interval=0.1, what="baton serve up")
    return proc, url


async def post_latencies(http: httpx.AsyncClient, count: int) -> list[float]:
    out = []
    for _ in range(count):
        start = time.perf_counter()
        reply = await http.post("/workflows/BenchChain/run-nowait", json={"start_event": {"n": 1}})
        reply.raise_for_status()
        out.append(time.perf_counter() - start)
    return out


async def read_events(http: httpx.AsyncClient, handler_id: str) -> int:
    """Events one reader got from the beginning of the run to its end."""
    got = 0
    params = {"sse": "false", "after_sequence": "-1"}
    async with http.stream("GET", f"/events/{handler_id}", params=params, timeout=300) as reply:
        reply.raise_for_status()
        async for line in reply.aiter_lines():
            if line.strip():
                got += 1
    return got


async def load(url: str, token: str, readers: int, ticks: int, posts: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=readers + 20, max_keepalive_connections=readers + 20)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as http:
        await post_latencies(http, 10)  # warm-up
        idle = await post_latencies(http, posts)
        handlers = []
        for _ in range(readers):
            body = {"start_event": {"ticks": ticks}}
            reply = await http.post("/workflows/BenchTicks/run-nowait", json=body)
            reply.raise_for_status()
            handlers.append(reply.json()["handler_id"])
        start = time.perf_counter()
        reading = asyncio.gather(*[read_events(http, h) for h in handlers])
        busy = await post_latencies(http, min(posts, 50))
        counts = await reading
        wall = time.perf_counter() - start
    delivered = sum(counts)
    # the same readers again on the ended runs: from the first event, as fast as the server
    # delivers (the live phase above is paced by the workers producing the events)
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as http:
        replayed = await asyncio.gather(*[read_events(http, h) for h in handlers])
    replay_wall = time.perf_counter() - start
    return {
        "run_nowait_ms": {
            "p50": round(statistics.median(idle) * 1000, 2),
            "p99": round(percentile(idle, 0.99) * 1000, 2),
            "posts": len(idle),
        },
        "readers": {
            "readers": readers,
            "events_per_reader_min": min(counts),
            "events_delivered": delivered,
            "wall_s": round(wall, 2),
            "events_per_s": round(delivered / wall, 1),
        },
        "readers_of_ended_runs": {
            "events_delivered": sum(replayed),
            "wall_s": round(replay_wall, 2),
            "events_per_s": round(sum(replayed) / replay_wall, 1),
        },
        "run_nowait_ms_while_reading": {
            "p50": round(statistics.median(busy) * 1000, 2),
            "p99": round(percentile(busy, 0.99) * 1000, 2),
            "posts": len(busy),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--ticks", type=int, default=10)
    parser.add_argument("--posts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="baton-bench-http-") as tmp:
        work = Path(tmp)
        redis = RedisServer(work / "redis", appendfsync="everysec")
        redis.dir.mkdir()
        redis.start()
        token = secrets.token_urlsafe(24)
        env = worker_env(redis.url, work, BATON_IMPORTS=IMPORTS, BATON_API_TOKEN=token)
        worker = Worker(env, ["bench"], concurrency=args.concurrency, name="bench-http@b").start()
        server, url = start_server(env, work / "serve.log")
        try:
            result = asyncio.run(load(url, token, args.readers, args.ticks, args.posts))
        finally:
            stop_group(server)
            worker.stop()
            redis.stop()
    result["machine"] = {"cpus": os.cpu_count(), "worker_concurrency": args.concurrency}
    print(json.dumps(result, indent=2))
    expected = args.ticks + 1  # each tick, and the run's StopEvent
    if result["readers"]["events_per_reader_min"] < expected:
        raise SystemExit(f"a reader got fewer than {expected} events")


if __name__ == "__main__":
    main()

"""Distributed cost, side by side on one private Redis: Baton vs raw Celery.

1. Step latency: a chain of N Baton step hops vs a raw Celery chain of N no-op links.
2. Fan-out: one step calling 1,000 tools in parallel vs a raw Celery group of 1,000 no-ops.
Each side gets one worker of the same pool and concurrency, run one after the other.

    .venv/bin/python -m benchmarks.bench_distributed [--hops 100] [--width 1000] [--repeat 3]
        [--broker redis|rabbitmq]

``--broker rabbitmq`` starts a private RabbitMQ node as both sides' broker (Baton's messages
then pass its outbox and relay, ``BATON_BROKER_URL``); Redis stays the state store and the raw
side's result backend.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from celery import chain, group

from tests.harness import RedisServer, Worker, worker_env
from tests.rabbit import RabbitServer


def _time(fn: Any, repeat: int) -> list[float]:
    fn()  # warm-up: imports, connections, first-task costs
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def bench_raw(
    url: str, hops: list[int], width: int, repeat: int, broker: str | None = None
) -> dict[str, Any]:
    import os

    os.environ["BATON_REDIS_URL"] = url
    if broker:
        os.environ["BATON_BROKER_URL"] = broker
    from benchmarks.raw_celery import noop

    def run_chain(n: int) -> None:
        result = chain(noop.s(0), *[noop.s() for _ in range(n - 1)]).apply_async()
        assert result.get(timeout=120) == n

    def run_group() -> None:
        result = group(noop.s(i) for i in range(width)).apply_async()
        assert len(result.get(timeout=300)) == width

    chains = {n: _time(lambda n=n: run_chain(n), repeat) for n in hops}
    return {"chain": chains, "group": _time(run_group, repeat)}


def bench_baton(
    url: str, hops: list[int], width: int, repeat: int, broker: str | None = None
) -> dict[str, Any]:
    from app.celery_app import create_app
    from app.client import Client
    from config import Settings

    settings = Settings(redis_url=url, broker_url=broker, imports=["benchmarks.flows"])
    _, runtime = create_app(settings)
    client = Client(runtime=runtime)

    def run_chain(n: int) -> None:
        assert client.submit("BenchChain", n=n).result(timeout=120) == n

    def run_fan() -> None:
        expected = width * (width - 1) // 2
        assert client.submit("BenchFanOut", width=width).result(timeout=300) == expected

    chains = {n: _time(lambda n=n: run_chain(n), repeat) for n in hops}
    return {"chain": chains, "group": _time(run_fan, repeat)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hops", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--broker", choices=["redis", "rabbitmq"], default="redis")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="baton-bench-"))
    (tmp / "redis").mkdir()
    # AOF on, fsync once a second: Redis's default durability, what a deployment runs
    server = RedisServer(tmp / "redis", appendfsync="everysec")
    server.start()
    rabbit = None
    if args.broker == "rabbitmq":
        (tmp / "rabbit").mkdir()
        rabbit = RabbitServer(tmp / "rabbit")
        rabbit.start()
    broker = None if rabbit is None else rabbit.url
    extra = {} if broker is None else {"BATON_BROKER_URL": broker}
    env = worker_env(server.url, tmp, BATON_IMPORTS='["benchmarks.flows"]', **extra)
    results: dict[str, Any] = {}
    try:
        raw_worker = Worker(env, ["raw"], args.concurrency, name="raw@bench")
        raw_worker.start_app = "benchmarks.raw_celery:raw_app"
        with _running(raw_worker):
            results["raw"] = bench_raw(server.url, args.hops, args.width, args.repeat, broker)
        with _running(Worker(env, ["bench"], args.concurrency, name="baton@bench")):
            results["baton"] = bench_baton(server.url, args.hops, args.width, args.repeat, broker)
    finally:
        server.stop()
        if rabbit is not None:
            rabbit.stop()
    print(json.dumps(summarize(results, args.hops, args.width), indent=2))
    if args.out:
        args.out.write_text(
            json.dumps({"raw": results, **summarize(results, args.hops, args.width)})
        )


class _running:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def __enter__(self) -> Worker:
        return self.worker.start()

    def __exit__(self, *_: object) -> None:
        self.worker.stop()


def summarize(results: dict[str, Any], hops: list[int], width: int) -> dict[str, Any]:
    """Per-hop cost at each chain length, the marginal cost of one more hop, fan-out ratio."""
    out: dict[str, Any] = {}
    med = {
        side: {n: statistics.median(results[side]["chain"][n]) for n in hops}
        for side in ("raw", "baton")
    }
    for n in hops:
        raw, baton = med["raw"][n] / n, med["baton"][n] / n
        out[f"chain_{n}"] = {
            "raw_link_ms": round(raw * 1000, 3),
            "baton_hop_ms": round(baton * 1000, 3),
            "ratio_baton_over_raw": round(baton / raw, 3),
        }
    if len(hops) > 1:
        lo, hi = min(hops), max(hops)
        raw_m = (med["raw"][hi] - med["raw"][lo]) / (hi - lo)
        baton_m = (med["baton"][hi] - med["baton"][lo]) / (hi - lo)
        out["marginal_hop"] = {
            "raw_link_ms": round(raw_m * 1000, 3),
            "baton_hop_ms": round(baton_m * 1000, 3),
            "ratio_baton_over_raw": round(baton_m / raw_m, 3),
        }
    raw_group = statistics.median(results["raw"]["group"])
    baton_fan = statistics.median(results["baton"]["group"])
    out[f"fanout_{width}"] = {
        "raw_group_s": round(raw_group, 3),
        "baton_tools_s": round(baton_fan, 3),
        "throughput_ratio_baton_over_raw": round(raw_group / baton_fan, 3),
        "raw_tasks_per_s": round(width / raw_group, 1),
        "baton_tools_per_s": round(width / baton_fan, 1),
    }
    return out


if __name__ == "__main__":
    main()

"""Distributed cost, side by side on one private Redis: Baton vs raw Celery.

1. Step latency: a chain of N Baton step hops vs a raw Celery chain of N no-op links.
2. Fan-out: one step calling 1,000 tools in parallel vs a raw Celery group of 1,000 no-ops.
Each side gets one worker of the same pool and concurrency, run one after the other.

    .venv/bin/python -m benchmarks.bench_distributed [--hops 100] [--width 1000] [--repeat 3]
        [--broker redis|rabbitmq] [--state redis|cluster] [--config all]

``--broker rabbitmq`` starts a private RabbitMQ node as both sides' broker (Baton's messages
then pass its outbox and relay, ``BATON_BROKER_URL``); Redis stays the state store and the raw
side's result backend.

``--state cluster`` (implies ``--broker rabbitmq``) keeps Baton's state in a private Redis
Cluster (three masters with a replica each, ``BATON_REDIS_URL=redis+cluster://``). Celery has
no cluster state: the raw side runs on the same RabbitMQ broker with a single private Redis as
its result backend, as with ``--broker rabbitmq``.

``--config all`` runs the three configurations (one Redis; RabbitMQ + Redis; RabbitMQ + Redis
Cluster) one after the other, each in a fresh process on fresh servers, and prints one table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from celery import chain, group

from benchmarks.servers import CONFIGS, check_config, servers
from tests.harness import Worker, worker_env


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
    args = parse()
    if args.config == "all":
        run_all(args)
        return
    results = bench_config(args)
    print(json.dumps(summarize(results, args.hops, args.width), indent=2))
    if args.out:
        args.out.write_text(
            json.dumps({"raw": results, **summarize(results, args.hops, args.width)})
        )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hops", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--broker", choices=["redis", "rabbitmq"])
    parser.add_argument("--state", choices=["redis", "cluster"], default="redis")
    parser.add_argument("--config", choices=["all"])
    args = parser.parse_args(argv)
    if args.broker is None:
        args.broker = "rabbitmq" if args.state == "cluster" else "redis"
    if (problem := check_config(args.broker, args.state)) is not None:
        parser.error(problem)
    return args


def bench_config(args: argparse.Namespace) -> dict[str, Any]:
    """Both sides on one configuration's fresh servers: raw Celery first, then Baton."""
    tmp = Path(tempfile.mkdtemp(prefix="baton-bench-"))
    # the raw side's result backend is a single Redis, also beside a cluster state
    with servers(tmp, args.broker, args.state, plain_redis=True) as srv:
        assert srv.redis is not None
        broker = srv.broker_url
        extra = {} if broker is None else {"BATON_BROKER_URL": broker}
        imports = '["benchmarks.flows"]'
        raw_env = worker_env(srv.redis.url, tmp, BATON_IMPORTS=imports, **extra)
        env = worker_env(srv.state_url, tmp, BATON_IMPORTS=imports, **extra)
        results: dict[str, Any] = {}
        raw_worker = Worker(raw_env, ["raw"], args.concurrency, name="raw@bench")
        raw_worker.start_app = "benchmarks.raw_celery:raw_app"
        with _running(raw_worker):
            results["raw"] = bench_raw(srv.redis.url, args.hops, args.width, args.repeat, broker)
        with _running(Worker(env, ["bench"], args.concurrency, name="baton@bench")):
            results["baton"] = bench_baton(
                srv.state_url, args.hops, args.width, args.repeat, broker
            )
    return results


def run_all(args: argparse.Namespace) -> None:
    """Each configuration in a process of its own (raw Celery's app reads its URLs from the
    environment at import, once per process), then one table of the three."""
    tmp = Path(tempfile.mkdtemp(prefix="baton-bench-all-"))
    summaries: dict[str, Any] = {}
    for name, (broker, state) in CONFIGS.items():
        out = tmp / f"{name}.json"
        cmd = [sys.executable, "-m", "benchmarks.bench_distributed", "--broker", broker]
        cmd += ["--state", state, "--hops", *map(str, args.hops), "--width", str(args.width)]
        cmd += ["--repeat", str(args.repeat), "--concurrency", str(args.concurrency)]
        print(f"== {name}: broker {broker}, state {state}", flush=True)
        subprocess.run([*cmd, "--out", str(out)], check=True)
        summaries[name] = json.loads(out.read_text())
    print(table(summaries, args.hops, args.width))
    if args.out:
        args.out.write_text(json.dumps(summaries))


def table(summaries: dict[str, Any], hops: list[int], width: int) -> str:
    """One row a configuration: the marginal hop (else the per-hop cost of the longest chain)
    and the fan-out, Baton beside raw Celery on the same broker."""
    hop_key = "marginal_hop" if len(hops) > 1 else f"chain_{max(hops)}"
    lines = [
        f"| config | Baton hop ms ({hop_key}) | raw chain link ms | ratio "
        f"| Baton fan-out calls/s ({width}) | raw group calls/s | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {"redis": "one Redis", "rabbitmq": "RabbitMQ + Redis", "cluster": "RabbitMQ + Cluster"}
    for name, s in summaries.items():
        hop, fan = s[hop_key], s[f"fanout_{width}"]
        cells = [
            hop["baton_hop_ms"],
            hop["raw_link_ms"],
            hop["ratio_baton_over_raw"],
            fan["baton_tools_per_s"],
            fan["raw_tasks_per_s"],
            fan["throughput_ratio_baton_over_raw"],
        ]
        lines.append(f"| {names[name]} | " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


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

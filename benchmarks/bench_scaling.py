"""Throughput at 1, 2 and 4 worker processes per queue, per broker configuration.

Configurations: ``redis`` (one Redis: broker and state, the default) and ``rabbitmq`` (a
private RabbitMQ node as broker, messages through the outbox and relay; Redis for state);
``--state cluster`` runs ``cluster`` alone (RabbitMQ as broker, a private Redis Cluster of three
masters with a replica each for state: its six nodes' CPU is counted as ``redis``).
Redis is a private redis-server with AOF ``everysec``, as in ``bench_distributed``.

For each number of worker processes P (1, 2, 4) on the ``bench`` queue, three closed loops,
each run for a warm-up and then ``--seconds`` of steady state (only completions inside that
window count):

- **runs/s**: ``--run-slots`` client threads, each submitting a 2-hop ``BenchChain(n=2)`` and
  waiting for its result, again and again (the shortest run ``benchmarks.flows`` has);
- **hops/s**: ``--chains`` concurrent ``BenchChain(n=--hops)`` runs, each resubmitted when it
  ends; hops/s = step spans (``RunHandle.spans``) that completed inside the window / seconds;
- **tools/s**: ``--fans`` concurrent ``BenchFanOut(width=--width)`` runs, likewise, counting
  completed tool spans.

Over each window it reads the CPU seconds (user+sys, from ``/proc/<pid>/stat``) of the worker
processes (main and pool children), redis-server, the RabbitMQ node (beam.smp, epmd, port
programs), this client process, and of the whole machine (``/proc/stat``), as cores busy:
the machine has ``os.cpu_count()`` of them, and whatever is busy beyond ours is other load.

Layouts: ``prefork`` is one prefork worker with ``-c P``; ``separate`` is P prefork workers
with ``-c 1`` (P main processes, P relays).

    .venv/bin/python -m benchmarks.bench_scaling [--broker redis|rabbitmq|both] [--seconds 15]
        [--state redis|cluster]
        [--layout prefork|separate|both] [--processes 1 2 4] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.client import Client, RunHandle
from benchmarks.servers import CONFIGS, Servers, check_config, servers
from tests.harness import Worker, worker_env
from tests.rabbit import tagged_pids

TICK = os.sysconf("SC_CLK_TCK")
IMPORTS = ["benchmarks.flows"]


def proc_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()  # after "(comm)": field 3 (state) onwards
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / TICK  # minus idle and iowait


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    found = [pid]
    for child in out.stdout.split():
        found += descendants(int(child))
    return found


@dataclass
class Stack:
    """The processes of one configuration whose CPU is counted, by role."""

    servers: Servers
    workers: list[Worker] = field(default_factory=list)

    def pids(self) -> dict[str, list[int]]:
        roles = {
            # a prefork worker's main process consumes, dispatches and relays; its pool runs tasks
            "worker_main": [w.proc.pid for w in self.workers if w.proc],
            "worker_pool": [p for w in self.workers if w.proc for p in descendants(w.proc.pid)[1:]],
            "redis": redis_pids(self.servers),
            "client": [os.getpid()],
        }
        if self.servers.rabbit is not None:
            roles["rabbitmq"] = tagged_pids(self.servers.rabbit.tag)
        return roles


def redis_pids(srv: Servers) -> list[int]:
    """The state's redis-server processes: the one Redis, or every node of the cluster."""
    nodes = [srv.redis] if srv.cluster is None else srv.cluster.nodes
    return [n.proc.pid for n in nodes if n is not None and n.proc is not None]


def cpu_snapshot(stack: Stack) -> dict[str, dict[int, float]]:
    snap = {role: {pid: proc_seconds(pid) for pid in pids} for role, pids in stack.pids().items()}
    snap["machine"] = {0: machine_busy_seconds()}
    return snap


def cores_busy(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], seconds: float
) -> dict[str, float]:
    """Cores busy per role over the window (a process born inside it counts from zero)."""
    out = {
        role: sum(t - before[role].get(pid, 0.0) for pid, t in pids.items()) / seconds
        for role, pids in after.items()
    }
    out["workers"] = out["worker_main"] + out["worker_pool"]
    out["baton_total"] = out["workers"] + sum(
        out.get(role, 0.0) for role in ("redis", "rabbitmq", "client")
    )
    out["other_load"] = out["machine"] - out["baton_total"]
    return {k: round(v, 2) for k, v in out.items()}


@dataclass(frozen=True)
class Load:
    """A closed loop: ``slots`` threads each submitting one run and waiting for it, repeatedly;
    a run is worth ``units`` (hops or tool calls)."""

    name: str
    workflow: str
    kwargs: dict[str, Any]
    slots: int
    units: int
    spans: str | None = None  # count these spans (step/tool) ending in the window, not runs


def spans_in_window(handles: list[RunHandle], kind: str, start: float, end: float) -> int:
    """Completed spans of ``kind`` that ended inside [start, end) (wall clock): exact, where
    counting whole runs would step in units of ``slots`` x ``units`` (the slots run in step)."""
    return sum(
        start <= span.end < end and span.kind == kind and span.outcome == "completed"
        for handle in handles
        for span in handle.spans(children=False)
    )


def drive(
    client: Client, stack: Stack, load: Load, warmup: float, seconds: float
) -> dict[str, Any]:
    """Run ``load`` for ``warmup + seconds``; count the runs that end inside the window."""
    done: list[float] = []
    handles: list[RunHandle] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def slot() -> None:
        while not stop.is_set():
            try:
                handles.append(client.submit(load.workflow, **load.kwargs))
                handles[-1].result(timeout=300)
            except BaseException as exc:  # reported below, never silently lost
                errors.append(exc)
                return
            done.append(time.monotonic())

    threads = [threading.Thread(target=slot, daemon=True) for _ in range(load.slots)]
    for t in threads:
        t.start()
    time.sleep(warmup)  # the timing window itself: a fixed wall-clock span
    before, start, wall_start = cpu_snapshot(stack), time.monotonic(), time.time()
    time.sleep(seconds)
    end, wall_end, after = time.monotonic(), time.time(), cpu_snapshot(stack)
    stop.set()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{load.name}: {len(errors)} runs failed, first: {errors[0]!r}")
    runs = sum(start <= t < end for t in done)
    units = runs * load.units
    if load.spans:
        units = spans_in_window(handles, load.spans, wall_start, wall_end)
    return {
        "runs": runs,
        "per_s": round(units / (end - start), 1),
        "cpu_cores": cores_busy(before, after, end - start),
    }


def loads(args: argparse.Namespace) -> list[Load]:
    return [
        Load("runs", "BenchChain", {"n": 2}, args.run_slots, 1),
        Load("hops", "BenchChain", {"n": args.hops}, args.chains, args.hops, "step"),
        Load("tools", "BenchFanOut", {"width": args.width}, args.fans, args.width, "tool"),
    ]


def start_workers(env: dict[str, str], layout: str, processes: int) -> list[Worker]:
    if layout == "prefork":
        specs = [(f"scale{processes}", processes)]
    else:
        specs = [(f"scale{processes}s{i}", 1) for i in range(processes)]
    workers: list[Worker] = []
    try:
        for name, concurrency in specs:
            workers.append(Worker(env, ["bench"], concurrency, name=f"{name}@bench").start())
    except BaseException:
        stop_workers(workers)
        raise
    return workers


def stop_workers(workers: list[Worker]) -> None:
    for worker in workers:
        worker.stop()


def bench_config(config: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every layout and process count of one configuration, on fresh servers."""
    from app.celery_app import create_app
    from config import Settings

    tmp = Path(tempfile.mkdtemp(prefix=f"baton-scaling-{config}-"))
    results: dict[str, Any] = {}
    with servers(tmp, *CONFIGS[config]) as srv:
        stack, broker_url, state_url = Stack(srv), srv.broker_url, srv.state_url
        extra = {"BATON_BROKER_URL": broker_url} if broker_url else {}
        env = worker_env(state_url, tmp, BATON_IMPORTS=json.dumps(IMPORTS), **extra)
        settings = Settings(redis_url=state_url, broker_url=broker_url, imports=IMPORTS)
        client = Client(runtime=create_app(settings)[1])
        for layout in layouts(args.layout):
            for processes in args.processes:
                key = f"{layout}/{processes}"
                results[key] = bench_processes(client, stack, env, layout, processes, args)
                print(f"[{config} {key}] {compact(results[key])}", flush=True)
    return results


def bench_processes(
    client: Client,
    stack: Stack,
    env: dict[str, str],
    layout: str,
    processes: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    stack.workers = start_workers(env, layout, processes)
    try:
        return {
            load.name: drive(client, stack, load, args.warmup, args.seconds) for load in loads(args)
        }
    finally:
        stop_workers(stack.workers)
        stack.workers = []


def layouts(choice: str) -> list[str]:
    return ["prefork", "separate"] if choice == "both" else [choice]


def compact(row: dict[str, Any]) -> str:
    return ", ".join(f"{name}/s={m['per_s']}" for name, m in row.items())


def markdown(results: dict[str, Any]) -> str:
    """A rates table (with the ratio to the same layout's first process count) and the CPU
    cores busy in each window."""
    lines = [
        "| config | layout | P | runs/s | hops/s | tools/s |",
        "|---|---|---|---|---|---|",
    ]
    cpu = [
        "| config | layout | P | load | workers (main+pool) | redis | rabbitmq | client "
        "| baton total | machine | other load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for broker, rows in results.items():
        base: dict[str, dict[str, Any]] = {}
        for key, row in rows.items():
            layout, processes = key.split("/")
            first = base.setdefault(layout, row)
            cells = [
                rate_cell(row[n]["per_s"], first[n]["per_s"]) for n in ("runs", "hops", "tools")
            ]
            lines.append(f"| {broker} | {layout} | {processes} | {' | '.join(cells)} |")
            for name, m in row.items():
                c = m["cpu_cores"]
                vals = [f"{c['workers']} ({c['worker_main']}+{c['worker_pool']})"]
                vals += [c.get(k, "-") for k in ("redis", "rabbitmq", "client")]
                vals += [c["baton_total"], c["machine"], c["other_load"]]
                cpu.append(
                    f"| {broker} | {layout} | {processes} | {name} | "
                    + " | ".join(str(v) for v in vals)
                    + " |"
                )
    return "\n".join(lines) + "\n\nCPU, cores busy over each window:\n\n" + "\n".join(cpu)


def rate_cell(value: float, base: float) -> str:
    return f"{value} (x{value / base:.2f})" if base else str(value)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker", choices=["redis", "rabbitmq", "both"], default="both")
    parser.add_argument("--state", choices=["redis", "cluster"], default="redis")
    parser.add_argument("--layout", choices=["prefork", "separate", "both"], default="prefork")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--run-slots", type=int, default=16)
    parser.add_argument("--chains", type=int, default=20)
    parser.add_argument("--hops", type=int, default=50)
    parser.add_argument("--fans", type=int, default=4)
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.state == "cluster" and args.broker == "both":
        args.broker = "rabbitmq"  # the one configuration with a cluster state
    if (problem := check_config(args.broker, args.state)) is not None:
        parser.error(problem)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.state == "cluster":
        configs = ["cluster"]
    else:
        configs = ["redis", "rabbitmq"] if args.broker == "both" else [args.broker]
    results = {config: bench_config(config, args) for config in configs}
    meta = {"cpu_count": os.cpu_count(), "args": {k: str(v) for k, v in vars(args).items()}}
    print(json.dumps({"meta": meta, "results": results}, indent=2))
    print(markdown(results))
    if args.out:
        args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()

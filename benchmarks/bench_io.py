"""IO-bound work on one ``pool: asyncio`` worker vs one prefork worker of concurrency 2.

Every wait is ``await asyncio.sleep`` (an LLM call stand-in). On one private Redis (AOF,
fsync once a second), one side after the other, each with a worker and a key prefix of its own:

(a) one run whose step makes ``calls`` parallel async tool calls of 0.5 s: submit to result;
(b) ``runs`` concurrent runs of a one-step workflow whose step awaits 0.5 s: submit to last result;
(c) ``runs`` concurrent runs of a 3-step workflow, 0.2 s per step: runs/s;
(d) CPU ms per tool call of the asyncio worker process during (a) (``/proc/<pid>/stat``; its
    main thread, Celery's consumer, apart);
(e) RSS of the asyncio worker process: peak while (a) runs, and at idle;
(f) bounded memory: ``queued`` one-step runs (0.2 s each) piled up in the step queue while the
    asyncio worker does not consume it (Celery's ``cancel_consumer``), then drained once it does
    again (``add_consumer``): the worker's RSS (idle, peak), the queue list's peak length and the
    messages the worker held at once (kombu's unacked hash), sampled every 0.2 s, and the time
    from resuming to the end of the last run. Prefetch is bounded by the concurrency, so the
    worker never holds the backlog.

The prefork side runs a scaled-down count (a process slot per task, two at a time) and prints the
projected time at the asyncio side's count (measured * asyncio count / prefork count).

    .venv/bin/python -m benchmarks.bench_io [--quick] [--queued N] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from app.celery_app import create_app
from app.client import Client, RunHandle
from benchmarks.bench_distributed import _running
from benchmarks.io_flows import STEP_QUEUE, TOOL_QUEUE
from config import Settings
from tests.harness import RedisServer, Worker, worker_env
from workflows.errors import WorkflowTimeoutError

IMPORTS = ["benchmarks.io_flows"]
QUEUES = [STEP_QUEUE, TOOL_QUEUE]
TOOL_SECONDS = 0.5  # (a): one tool call
ONE_STEP_SECONDS = 0.5  # (b): the one step
THREE_STEP_SECONDS = 0.2  # (c): each of the three steps
QUEUED_STEP_SECONDS = 0.2  # (f): the one step of each queued run
QUEUE_SAMPLE_EVERY = 0.2  # (f): seconds between samples of RSS and queue length
CLK_TCK = os.sysconf("SC_CLK_TCK")
UNEXPECTED = re.compile(r"raised unexpected: (\S+)")


@dataclass(frozen=True)
class Sizes:
    aio_concurrency: int = 1000
    aio_calls: int = 1000  # (a)
    pf_calls: int = 40
    aio_one_step: int = 200  # (b)
    pf_one_step: int = 8
    aio_three_step: int = 1000  # (c)
    pf_three_step: int = 10
    aio_queued: int = 10_000  # (f)
    repeat: int = 3  # (a) on the asyncio worker: the first run also starts the pool's threads


QUICK = Sizes(
    aio_concurrency=200,
    aio_calls=100,
    pf_calls=8,
    aio_one_step=40,
    pf_one_step=4,
    aio_three_step=100,
    pf_three_step=4,
    aio_queued=1000,
    repeat=1,
)


# --- /proc ------------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes, every thread included (dead ones too)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total / CLK_TCK


def status_field(pid: int, name: str) -> int:
    """A number from ``/proc/<pid>/status`` (VmRSS in KiB, Threads)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise KeyError(name)


class Sampler:
    """Samples a process's RSS and thread count every few ms while a block runs; keeps peaks."""

    def __init__(self, pid: int, every: float = 0.01) -> None:
        self.pid, self.every = pid, every
        self.peak_rss_kib = 0
        self.peak_threads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while True:
            self.peak_rss_kib = max(self.peak_rss_kib, status_field(self.pid, "VmRSS"))
            self.peak_threads = max(self.peak_threads, status_field(self.pid, "Threads"))
            if self._stop.wait(self.every):
                return


class QueueSampler:
    """Every ``every`` s: a process's RSS, a queue list's length (LLEN) and the number of
    messages taken by workers and not yet acknowledged (HLEN of kombu's unacked hash)."""

    def __init__(self, pid: int, redis: Any, queue: str, unacked: str, every: float) -> None:
        self.pid, self.redis, self.queue, self.unacked, self.every = (
            pid,
            redis,
            queue,
            unacked,
            every,
        )
        self.start = time.perf_counter()
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> QueueSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.take()  # the state at the end too

    def take(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(self.queue)
        pipe.hlen(self.unacked)
        waiting, held = pipe.execute()
        self.samples.append(
            {
                "t_s": round(time.perf_counter() - self.start, 2),
                "waiting": waiting,
                "held": held,
                "rss_mib": mib(status_field(self.pid, "VmRSS")),
            }
        )

    def peak(self, field: str) -> float:
        return max(s[field] for s in self.samples)

    def _sample(self) -> None:
        while True:
            self.take()
            if self._stop.wait(self.every):
                return


def main_thread_seconds(pid: int) -> float:
    """CPU time of the process's main thread (Celery's consumer), from its scheduler stats."""
    return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[0]) / 1e9


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


# --- the measurements -------------------------------------------------------------------


def fan_out(client: Client, calls: int, timeout: float) -> float | None:
    """(a): one run, ``calls`` parallel tool calls; seconds from submit to result (None: the run
    did not finish within ``timeout``, see the worker's errors)."""
    start = time.perf_counter()
    handle = client.submit("IoFanOut", calls=calls, seconds=TOOL_SECONDS)
    try:
        assert handle.result(timeout=timeout) == calls * (calls - 1) // 2
    except WorkflowTimeoutError:
        return None
    return time.perf_counter() - start


def many_runs(
    client: Client, workflow: str, runs: int, seconds: float, expected: int, timeout: float
) -> dict[str, Any]:
    """(b), (c): ``runs`` runs submitted in a loop, then every result awaited.

    ``wall_s``: first submit to last result read; ``last_finish_s``: first submit to the end of
    the run that ended last (its record's ``updated``), without the reading of results. Runs
    not finished within ``timeout`` are counted as ``unfinished`` (the times are then None)."""
    wall0, start = time.time(), time.perf_counter()
    handles = [client.submit(workflow, seconds=seconds) for _ in range(runs)]
    submitted = time.perf_counter() - start
    unfinished = _await_all(handles, expected, time.monotonic() + timeout)
    wall = time.perf_counter() - start
    last = max(h.info().updated for h in handles) - wall0
    done = unfinished == 0
    return {
        "runs": runs,
        "unfinished": unfinished,
        "submit_s": round(submitted, 3),
        "wall_s": round(wall, 3) if done else None,
        "last_finish_s": round(last, 3) if done else None,
        "runs_per_s": round(runs / wall, 1) if done else None,
    }


def _await_all(handles: list[RunHandle], expected: int, deadline: float) -> int:
    """Reads every run's result (each must be ``expected``); how many did not finish in time."""
    unfinished = 0
    for h in handles:
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise WorkflowTimeoutError(h.run_id)
            assert h.result(timeout=left) == expected
        except WorkflowTimeoutError:
            unfinished += 1
    return unfinished


def queued(client: Client, worker: Worker, runs: int, timeout: float) -> dict[str, Any]:
    """(f): ``runs`` one-step runs queued while the worker does not consume the step queue, then
    drained; RSS and queue length sampled throughout (see :class:`QueueSampler`).

    ``drain_s``: from resuming consumption to the end of the run that ended last (its record's
    ``updated``). The sampling stops once the queue list and the unacked hash are both empty
    (twice in a row) or after ``timeout``; runs not finished then count as ``unfinished``."""
    pid, rt = _pid(worker), client.runtime
    queue, unacked = rt.keys.queue(STEP_QUEUE), rt.keys.unacked()
    assert rt.redis.llen(queue) == 0 and rt.redis.hlen(unacked) == 0, "(f) needs an idle worker"
    time.sleep(0.5)
    idle = _idle(pid)
    _control(
        worker, rt.app.control.cancel_consumer(STEP_QUEUE, destination=[worker.name], reply=True)
    )
    with (
        Sampler(pid) as fine,
        QueueSampler(pid, rt.redis, queue, unacked, QUEUE_SAMPLE_EVERY) as coarse,
    ):
        start = time.perf_counter()
        handles = [client.submit("IoOneStep", seconds=QUEUED_STEP_SECONDS) for _ in range(runs)]
        submitted = time.perf_counter() - start
        coarse.take()  # the whole backlog, before the worker sees any of it
        cpu0, wall0, resumed = cpu_seconds([pid]), time.time(), time.monotonic()
        _control(
            worker, rt.app.control.add_consumer(STEP_QUEUE, destination=[worker.name], reply=True)
        )
        empty = 0
        while empty < 2 and time.monotonic() < resumed + timeout:
            time.sleep(QUEUE_SAMPLE_EVERY)
            empty = empty + 1 if rt.redis.llen(queue) == rt.redis.hlen(unacked) == 0 else 0
        cpu = cpu_seconds([pid]) - cpu0
    unfinished = _await_all(handles, 1, time.monotonic() + 5)
    done = unfinished == 0
    drain = max(h.info().updated for h in handles) - wall0 if done else None
    time.sleep(0.5)
    return {
        "runs": runs,
        "unfinished": unfinished,
        "submit_s": round(submitted, 3),
        "drain_s": None if drain is None else round(drain, 3),
        "runs_per_s": None if drain is None else round(runs / drain, 1),
        "cpu_ms_per_step": _per(cpu, runs),
        "idle_before": idle,
        "peak_rss_mib": mib(fine.peak_rss_kib),
        "peak_threads": fine.peak_threads,
        "peak_waiting": int(coarse.peak("waiting")),
        "peak_held": int(coarse.peak("held")),
        "idle_after": _idle(pid),
        "samples": coarse.samples,
    }


def _control(worker: Worker, replies: Any) -> None:
    """A remote-control command's replies must include the worker's ``ok``."""
    assert any("ok" in r.get(worker.name, {}) for r in replies or []), replies


def _client(url: str, prefix: str) -> Client:
    settings = Settings(redis_url=url, key_prefix=prefix, imports=IMPORTS)
    return Client(runtime=create_app(settings)[1])


def _warm_up(client: Client) -> None:
    """Imports, connections, first-task costs, out of the timings."""
    assert fan_out(client, 4, timeout=60) is not None, "warm-up run did not finish"
    assert many_runs(client, "IoOneStep", 2, 0.01, 1, timeout=60)["unfinished"] == 0


def worker_errors(worker: Worker) -> dict[str, Any]:
    """Tasks that failed in the worker (``raised unexpected: <Error>`` in its log), by error.

    A Baton task never fails for a step's or tool's own error (those are data), so any of these
    is the runtime failing: the run it belongs to waits for the reaper (minutes)."""
    kinds = Counter(UNEXPECTED.findall(worker.log.read_text(errors="replace")))
    return {"count": sum(kinds.values()), "kinds": dict(kinds), "log": str(worker.log)}


def _pid(worker: Worker) -> int:
    assert worker.proc is not None
    return worker.proc.pid


def bench_asyncio(url: str, tmp: Path, sizes: Sizes) -> dict[str, Any]:
    prefix = "ioaio"
    env = worker_env(url, tmp, BATON_IMPORTS=json.dumps(IMPORTS), BATON_KEY_PREFIX=prefix)
    worker = Worker(env, QUEUES, sizes.aio_concurrency, pool="asyncio", name="ioaio@bench")
    client = _client(url, prefix)
    out: dict[str, Any] = {"pool": "asyncio", "concurrency": sizes.aio_concurrency}
    with _running(worker):
        pid = _pid(worker)
        assert not worker.children(), "an asyncio worker is one process"
        _warm_up(client)
        time.sleep(0.5)
        out["idle_before"] = _idle(pid)
        fans = []
        for _ in range(sizes.repeat):
            cpu0, main0 = cpu_seconds([pid]), main_thread_seconds(pid)
            with Sampler(pid) as sampler:
                wall = fan_out(client, sizes.aio_calls, timeout=20)
            cpu, main = cpu_seconds([pid]) - cpu0, main_thread_seconds(pid) - main0
            fans.append(
                {
                    "wall_s": None if wall is None else round(wall, 3),
                    "cpu_s": round(cpu, 2),
                    "cpu_ms_per_call": round(cpu * 1000 / sizes.aio_calls, 3),
                    "main_thread_cpu_ms_per_call": round(main * 1000 / sizes.aio_calls, 3),
                    "peak_rss_mib": mib(sampler.peak_rss_kib),
                    "peak_threads": sampler.peak_threads,
                }
            )
        out["fan_out"] = {"calls": sizes.aio_calls, "runs": fans}
        time.sleep(0.5)
        out["idle_after_fan_out"] = _idle(pid)
        cpu0 = cpu_seconds([pid])
        one = many_runs(client, "IoOneStep", sizes.aio_one_step, ONE_STEP_SECONDS, 1, timeout=30)
        cpu1 = cpu_seconds([pid])
        three = many_runs(
            client, "IoThreeSteps", sizes.aio_three_step, THREE_STEP_SECONDS, 3, timeout=60
        )
        cpu2 = cpu_seconds([pid])
        # CPU per step task: (b) runs one step task per run, (c) three
        out["one_step"] = {**one, "cpu_ms_per_step": _per(cpu1 - cpu0, sizes.aio_one_step)}
        out["three_step"] = {
            **three,
            "cpu_ms_per_step": _per(cpu2 - cpu1, 3 * sizes.aio_three_step),
        }
        out["queued"] = queued(
            client, worker, sizes.aio_queued, timeout=max(60, sizes.aio_queued / 50)
        )
    out["worker_errors"] = worker_errors(worker)
    return out


def _per(cpu: float, count: int) -> float:
    return round(cpu * 1000 / count, 3)


def _idle(pid: int) -> dict[str, Any]:
    return {"rss_mib": mib(status_field(pid, "VmRSS")), "threads": status_field(pid, "Threads")}


def bench_prefork(url: str, tmp: Path, sizes: Sizes) -> dict[str, Any]:
    prefix = "iopf"
    env = worker_env(url, tmp, BATON_IMPORTS=json.dumps(IMPORTS), BATON_KEY_PREFIX=prefix)
    worker = Worker(env, QUEUES, 2, pool="prefork", name="iopf@bench")
    client = _client(url, prefix)
    out: dict[str, Any] = {"pool": "prefork", "concurrency": 2}
    with _running(worker):
        pids = [_pid(worker), *worker.children()]
        _warm_up(client)
        cpu0 = cpu_seconds(pids)
        wall = fan_out(client, sizes.pf_calls, timeout=120)
        cpu = cpu_seconds(pids) - cpu0
        out["fan_out"] = {
            "calls": sizes.pf_calls,
            "wall_s": None if wall is None else round(wall, 3),
            "cpu_ms_per_call": round(cpu * 1000 / sizes.pf_calls, 3),
            "projected_s": _project(wall, sizes.aio_calls, sizes.pf_calls),
        }
        one = many_runs(client, "IoOneStep", sizes.pf_one_step, ONE_STEP_SECONDS, 1, timeout=60)
        out["one_step"] = {
            **one,
            "projected_s": _project(one["wall_s"], sizes.aio_one_step, sizes.pf_one_step),
        }
        three = many_runs(
            client, "IoThreeSteps", sizes.pf_three_step, THREE_STEP_SECONDS, 3, timeout=60
        )
        out["three_step"] = {
            **three,
            "projected_s": _project(three["wall_s"], sizes.aio_three_step, sizes.pf_three_step),
        }
    out["worker_errors"] = worker_errors(worker)
    return out


def _project(measured: float | None, target: int, count: int) -> float | None:
    return None if measured is None else round(measured * target / count, 1)


# --- report -----------------------------------------------------------------------------


def summarize(aio: dict[str, Any], pf: dict[str, Any], sizes: Sizes) -> dict[str, Any]:
    fans = aio["fan_out"]["runs"]
    walls = [f["wall_s"] for f in fans]
    finished = [w for w in walls if w is not None]
    return {
        "a_fan_out_tool_calls": {
            "calls": sizes.aio_calls,
            "asyncio_wall_s": walls,
            "asyncio_wall_s_median": round(statistics.median(finished), 3) if finished else None,
            "asyncio_runs_not_finished": len(walls) - len(finished),
            "goal_s": 3.0,
            "prefork_c2_calls": pf["fan_out"]["calls"],
            "prefork_c2_wall_s": pf["fan_out"]["wall_s"],
            f"prefork_c2_projected_s_for_{sizes.aio_calls}": pf["fan_out"]["projected_s"],
        },
        "b_one_step_runs": {
            "runs": sizes.aio_one_step,
            "asyncio_wall_s": aio["one_step"]["wall_s"],
            "asyncio_last_finish_s": aio["one_step"]["last_finish_s"],
            "asyncio_submit_s": aio["one_step"]["submit_s"],
            "asyncio_cpu_ms_per_step": aio["one_step"]["cpu_ms_per_step"],
            "asyncio_unfinished": aio["one_step"]["unfinished"],
            "goal_s": 2.0,
            "prefork_c2_runs": pf["one_step"]["runs"],
            "prefork_c2_wall_s": pf["one_step"]["wall_s"],
            f"prefork_c2_projected_s_for_{sizes.aio_one_step}": pf["one_step"]["projected_s"],
        },
        "c_three_step_runs": {
            "runs": sizes.aio_three_step,
            "asyncio_wall_s": aio["three_step"]["wall_s"],
            "asyncio_last_finish_s": aio["three_step"]["last_finish_s"],
            "asyncio_submit_s": aio["three_step"]["submit_s"],
            "asyncio_cpu_ms_per_step": aio["three_step"]["cpu_ms_per_step"],
            "asyncio_runs_per_s": aio["three_step"]["runs_per_s"],
            "asyncio_unfinished": aio["three_step"]["unfinished"],
            "prefork_c2_runs": pf["three_step"]["runs"],
            "prefork_c2_runs_per_s": pf["three_step"]["runs_per_s"],
        },
        "d_cpu_ms_per_tool_call": {
            "asyncio": [f["cpu_ms_per_call"] for f in fans],
            "asyncio_main_thread": [f["main_thread_cpu_ms_per_call"] for f in fans],
            "prefork_c2_all_processes": pf["fan_out"]["cpu_ms_per_call"],
        },
        "e_asyncio_worker_rss_mib": {
            "peak_during_a": [f["peak_rss_mib"] for f in fans],
            "peak_threads_during_a": [f["peak_threads"] for f in fans],
            "idle_before_a": aio["idle_before"]["rss_mib"],
            "idle_after_a": aio["idle_after_fan_out"]["rss_mib"],
            "idle_threads_before_a": aio["idle_before"]["threads"],
            "idle_threads_after_a": aio["idle_after_fan_out"]["threads"],
        },
        "f_queued_runs": {
            k: v
            for k, v in aio["queued"].items()
            if k not in ("idle_before", "idle_after", "samples")
        }
        | {
            "idle_rss_mib_before": aio["queued"]["idle_before"]["rss_mib"],
            "idle_rss_mib_after": aio["queued"]["idle_after"]["rss_mib"],
            "step_seconds": QUEUED_STEP_SECONDS,
            "sample_every_s": QUEUE_SAMPLE_EVERY,
        },
        "worker_task_errors": {
            "asyncio": aio["worker_errors"],
            "prefork_c2": pf["worker_errors"],
        },
    }


def table(summary: dict[str, Any], sizes: Sizes) -> str:
    a, b, c = (summary[k] for k in ("a_fan_out_tool_calls", "b_one_step_runs", "c_three_step_runs"))
    d, e = summary["d_cpu_ms_per_tool_call"], summary["e_asyncio_worker_rss_mib"]
    f = summary["f_queued_runs"]
    errors = summary["worker_task_errors"]
    rows = [
        ("measure", "asyncio (1 process)", "prefork c2 (measured -> projected)"),
        (
            f"(a) {sizes.aio_calls} tool calls x {TOOL_SECONDS}s, 1 run",
            f"{a['asyncio_wall_s_median']} s (runs {a['asyncio_wall_s']}; goal <= 3 s)",
            f"{a['prefork_c2_calls']} calls {a['prefork_c2_wall_s']} s -> "
            f"{a[f'prefork_c2_projected_s_for_{sizes.aio_calls}']} s",
        ),
        (
            f"(b) {sizes.aio_one_step} one-step runs x {ONE_STEP_SECONDS}s",
            f"{b['asyncio_wall_s']} s (goal <= 2 s){_unfinished(b)}",
            f"{b['prefork_c2_runs']} runs {b['prefork_c2_wall_s']} s -> "
            f"{b[f'prefork_c2_projected_s_for_{sizes.aio_one_step}']} s",
        ),
        (
            f"(c) {sizes.aio_three_step} 3-step runs x {THREE_STEP_SECONDS}s",
            f"{c['asyncio_runs_per_s']} runs/s ({c['asyncio_wall_s']} s, "
            f"{c['asyncio_cpu_ms_per_step']} CPU ms/step){_unfinished(c)}",
            f"{c['prefork_c2_runs']} runs: {c['prefork_c2_runs_per_s']} runs/s",
        ),
        (
            "(d) CPU ms per tool call",
            f"{d['asyncio']} (main thread {d['asyncio_main_thread']})",
            f"{d['prefork_c2_all_processes']} (main + pool processes)",
        ),
        (
            "(e) worker RSS MiB",
            f"peak {e['peak_during_a']}, idle {e['idle_before_a']} -> {e['idle_after_a']}",
            "",
        ),
        (
            f"(f) {sizes.aio_queued} queued one-step runs x {QUEUED_STEP_SECONDS}s",
            f"RSS MiB idle {f['idle_rss_mib_before']} -> peak {f['peak_rss_mib']} -> idle "
            f"{f['idle_rss_mib_after']}",
            "",
        ),
        (
            "    queue, drain",
            f"peak {f['peak_waiting']} waiting, <= {f['peak_held']} held by the worker; "
            f"drained in {f['drain_s']} s{_unfinished_f(f)}",
            "",
        ),
        (
            "    drain rate",
            f"{f['runs_per_s']} runs/s ({f['cpu_ms_per_step']} CPU ms/step)",
            "",
        ),
        (
            "tasks failed in the worker",
            f"{errors['asyncio']['kinds']}",
            f"{errors['prefork_c2']['kinds']}",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return "\n".join(line.rstrip() for line in lines)


def _unfinished(row: dict[str, Any]) -> str:
    n = row["asyncio_unfinished"]
    return f", {n} runs unfinished" if n else ""


def _unfinished_f(row: dict[str, Any]) -> str:
    n = row["unfinished"]
    return f", {n} runs unfinished" if n else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke check")
    parser.add_argument(
        "--queued", type=int, metavar="N", help="(f): runs to queue (default 10,000; 1,000 quick)"
    )
    parser.add_argument("--out", type=Path, help="also write the raw results here (JSON)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    if args.queued is not None:
        sizes = replace(sizes, aio_queued=args.queued)
    tmp = Path(tempfile.mkdtemp(prefix="baton-bench-io-"))
    (tmp / "redis").mkdir()
    # AOF on, fsync once a second: Redis's default durability, what a deployment runs
    server = RedisServer(tmp / "redis", appendfsync="everysec")
    server.start()
    started = time.perf_counter()
    try:
        aio = _timed("asyncio side", lambda: bench_asyncio(server.url, tmp, sizes))
        pf = _timed("prefork side", lambda: bench_prefork(server.url, tmp, sizes))
    finally:
        server.stop()
    summary = summarize(aio, pf, sizes)
    summary["sizes"] = asdict(sizes)
    summary["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary, indent=2))
    print()
    print(table(summary, sizes))
    for side, errors in summary["worker_task_errors"].items():
        if errors["count"]:
            print(
                f"WARNING: {errors['count']} task(s) failed in the {side} worker "
                f"(their runs wait for the reaper): see {errors['log']}"
            )
    if args.out:
        args.out.write_text(json.dumps({"asyncio": aio, "prefork": pf, "summary": summary}))


def _timed(what: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    start = time.perf_counter()
    out = fn()
    print(f"# {what}: {time.perf_counter() - start:.1f} s", flush=True)
    return out


if __name__ == "__main__":
    main()

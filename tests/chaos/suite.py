"""Baton's chaos suite: many mixed runs while workers and Redis are killed, frozen and poisoned.

Runs of ``tests.chaos.flows`` (gather and send/collect fan-outs, a nested child,
human-in-the-loop answered by a bot, a tool retry, sleeps, and runs meant to fail) are
submitted by a few client threads at a steady rate, while a fault thread SIGKILLs worker
process groups, SIGTERMs worker main processes, SIGKILLs and restarts the suite's own
redis-server (AOF ``everysec`` and ``always``), freezes it and pushes poison messages onto
the queue (``tests.chaos.cluster``). Then it counts what went wrong (``tests.chaos.measure``)
into a :class:`ChaosResult`; the six headline counts must all be 0.

    python -m tests.chaos.suite --short     # the CI setting: under 3 minutes on 2 cores
    python -m tests.chaos.suite             # long: 2,000 runs, 12 faults, both fsync modes

It uses its own redis-server in a temp dir and its own key prefix: it kills and freezes Redis.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

from redis.exceptions import RedisError

from app.client import Client
from tasks.runtime import Runtime
from tests.chaos import measure
from tests.chaos.cluster import VISIBILITY_TIMEOUT, Cluster
from tests.chaos.driver import Driver, Outcome, make_plans
from tests.chaos.flows import EFFECTS_FILE
from tests.chaos.record import ChaosConfig, ChaosResult
from tests.harness import ROOT
from workflows import BatonError


def run_chaos(cfg: ChaosConfig, parts: type[Cluster] = Cluster) -> ChaosResult:
    """Start the cluster (``parts``: its servers, workers and faults), drive the runs under
    faults, then measure; always cleans up (the work dir stays when something failed, or with
    ``keep`` or a given ``workdir``)."""
    started = time.monotonic()
    workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="baton-chaos-"))
    prefix = f"chaos{cfg.seed}-{uuid.uuid4().hex[:6]}"
    settings = {**asdict(cfg), "workdir": str(workdir), "prefix": prefix, "code": _code()}
    result = ChaosResult(settings=settings, workdir=str(workdir))
    cluster = parts(cfg, workdir, prefix)
    monitor = Monitor(cluster, result)
    try:
        cluster.start()
        monitor.start()
        _drive_and_measure(cfg, cluster, result)
    finally:
        monitor.stopped.set()
        if monitor.is_alive():
            monitor.join()
            monitor.look()  # a death or dead letter after its last look counts too
        cluster.stop()
    result.dead_letters = len(monitor.dead)
    _collect(cluster, workdir, result)
    result.wall_seconds = time.monotonic() - started
    if result.ok and cfg.workdir is None and not cfg.keep:
        shutil.rmtree(workdir, ignore_errors=True)
        result.workdir = f"{workdir} (removed: nothing failed)"
    return result


class Monitor(threading.Thread):
    """Polls the worker processes (a death the suite did not cause is counted and the worker
    restarted) and the dead-letter list (whose entries expire: they are counted as seen)."""

    def __init__(self, cluster: Cluster, result: ChaosResult) -> None:
        super().__init__(name="chaos-monitor", daemon=True)
        self.cluster, self.result = cluster, result
        self.stopped = threading.Event()
        self.dead: set[str] = set()
        self.rt: Runtime | None = None

    def run(self) -> None:
        self.rt = Client(self.cluster.settings()).runtime
        while not self.stopped.wait(0.5):  # polling the workers and the list
            self.look()

    def look(self) -> None:
        try:
            self.cluster.check_workers()
        except Exception as exc:  # a worker that cannot restart: say so, keep watching
            self.result.suite_errors.append(f"monitor: {exc!r}"[:500])
        if self.rt is None:
            return
        with contextlib.suppress(BatonError, RedisError):  # Redis down or frozen: next round
            self.dead.update(self.rt.redis.lrange(self.rt.keys.dead_letters(), 0, -1))


def _drive_and_measure(cfg: ChaosConfig, cluster: Cluster, result: ChaosResult) -> None:
    outcomes = [Outcome(plan, i) for i, plan in enumerate(make_plans(cfg))]
    driver = Driver(cfg, cluster, outcomes)
    driver.run()
    client = Client(cluster.settings())
    rt = client.runtime
    result.queues_left = measure.settle(rt, timeout=3 * VISIBILITY_TIMEOUT + 6)
    result.duplicates_left = sum(result.queues_left.values())
    quiet_since = time.monotonic()
    measure.recheck_ends(outcomes, client)
    measure.judge(outcomes, result, partial(measure.diagnose, rt))
    left, skipped = measure.wait_for_retention(rt, quiet_since)
    result.keys_left = len(left)
    result.leftover_keys = measure.describe(rt, left)
    result.leftover_shapes = measure.shapes(rt, left)
    result.excluded_keys = measure.describe(rt, skipped)
    # last: an execution that started while the suite waited still counts
    measure.effects(cluster.workdir / EFFECTS_FILE, outcomes, result)
    result.bot_errors = driver.bot.errors[:20]
    result.client_errors = dict(driver.client_errors)
    result.suite_errors += driver.suite_errors


def _code() -> str:
    """The code under test: ``git describe --dirty`` of the checkout (workers run its tree)."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _collect(cluster: Cluster, workdir: Path, result: ChaosResult) -> None:
    result.faults = dict(cluster.faults)
    result.fsync_at_restart = list(cluster.fsync_at_restart)
    result.poison_pushed = cluster.poison_pushed
    result.worker_faults_mid_task = cluster.mid_task
    result.worker_deaths = cluster.deaths[:20]
    result.workers_died = len(cluster.deaths)
    result.log_errors = measure.log_lines(workdir, measure.ERROR_LINE)
    result.log_warnings = measure.log_lines(workdir, measure.WARNING_LINE)


def parse_config(argv: list[str] | None = None) -> tuple[ChaosConfig, Path | None]:
    p = argparse.ArgumentParser(
        prog="python -m tests.chaos.suite",
        description="Baton's chaos suite: mixed runs under worker kills, Redis restarts and "
        "freezes, and poison messages; exits 1 if any headline count is not 0.",
    )
    p.add_argument("--short", action="store_true", help="the CI setting (80 runs, 5 faults)")
    p.add_argument("--runs", type=int, help="runs to submit (long: 2000)")
    p.add_argument("--faults", type=int, help="faults to inject, spread over the run (long: 12)")
    p.add_argument("--clients", type=int, help="client threads submitting runs (3)")
    p.add_argument("--seed", type=int, help="seed of the run mix and the faults (1)")
    p.add_argument(
        "--fsync",
        choices=["everysec", "always", "alternate"],
        help="Redis appendfsync; alternate (default) flips it at every Redis restart",
    )
    p.add_argument("--rate", type=float, help="runs submitted per second (long 3, short 1.6)")
    p.add_argument("--retention", type=int, help="BATON_RETENTION_SECONDS of the cluster (30)")
    p.add_argument("--grace", type=float, help="seconds runs may take to end after the last fault")
    p.add_argument(
        "--workdir", type=Path, help="keep logs and Redis data here (default: a temp dir)"
    )
    p.add_argument(
        "--broker",
        choices=["redis", "rabbitmq"],
        help="redis (default): one Redis is broker and state; rabbitmq: a private RabbitMQ "
        "node is the broker (BATON_BROKER_URL), and is killed and restarted too",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp work dir even on a pass")
    p.add_argument("--json", type=Path, help="also write the result as JSON to this file")
    args = p.parse_args(argv)
    base = ChaosConfig.short() if args.short else ChaosConfig()
    names = (
        "runs",
        "faults",
        "clients",
        "seed",
        "fsync",
        "rate",
        "retention",
        "grace",
        "workdir",
        "broker",
    )
    changes = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    changes["keep"] = args.keep
    cfg = replace(base, **changes)
    if args.short and args.faults is None:
        cfg = replace(cfg, faults=len(cfg.fault_kinds))  # one fault of each kind
    return cfg, args.json


def main(
    argv: list[str] | None = None, run: Callable[[ChaosConfig], ChaosResult] = run_chaos
) -> int:
    cfg, json_path = parse_config(argv)
    result = run(cfg)
    print(result.table())
    line = json.dumps(asdict(result), sort_keys=True)
    print(line)
    if json_path is not None:
        json_path.write_text(line + "\n")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

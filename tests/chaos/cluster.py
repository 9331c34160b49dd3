"""The chaos suite's own redis-server and workers, and the faults done to them.

Faults: SIGKILL of a worker's whole process group (a machine or container dying), SIGTERM of
its main process (Celery's warm shutdown), SIGKILL and restart of Redis on the same port and
data dir (AOF ``everysec`` or ``always``), SIGSTOP/SIGCONT of Redis (a frozen server), and
poison messages pushed onto the queue list. A stopped worker is started again at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from config import Settings
from tasks.protocol import Message, StepArgs
from tasks.runtime import Runtime
from tests.chaos.flows import QUEUE
from tests.chaos.record import ChaosConfig
from tests.harness import RedisServer, Worker, eventually, worker_env
from tests.rabbit import RabbitServer

FAULT_KINDS = ChaosConfig().fault_kinds  # with one Redis; RabbitMQ adds "broker_restart"
# short limits, so a message lost in a crash comes back within seconds
MAX_TIME_LIMIT, VISIBILITY_TIMEOUT = 5, 8
TERM_WAIT = 30.0  # warm shutdown: how long a SIGTERMed worker may take to finish its tasks
BUSY_WAIT = 5.0  # how long a worker fault waits for its worker to be running a task


class Cluster:
    """A private redis-server and two workers (prefork and asyncio) serving the chaos queue.

    Every fault is done under ``lock``, restart included, so the death monitor (same lock) can
    tell a worker the suite stopped from one that died by itself."""

    def __init__(self, cfg: ChaosConfig, workdir: Path, prefix: str) -> None:
        self.cfg, self.workdir, self.prefix = cfg, workdir, prefix
        (workdir / "redis").mkdir(parents=True, exist_ok=True)
        first = "always" if cfg.fsync == "always" else "everysec"
        self.redis = RedisServer(workdir / "redis", appendfsync=first)
        self.rabbit: RabbitServer | None = None
        if cfg.broker == "rabbitmq":
            (workdir / "rabbit").mkdir(parents=True, exist_ok=True)
            self.rabbit = RabbitServer(workdir / "rabbit")
        self.lock = threading.Lock()
        self.faults: Counter[str] = Counter({kind: 0 for kind in cfg.fault_kinds})
        self.fsync_at_restart: list[str] = []
        self.deaths: list[str] = []
        self.hangs: list[str] = []  # SIGTERMed workers that did not stop within TERM_WAIT
        self.poison_pushed = 0
        self.mid_task = 0  # worker faults that found the worker running a task
        self.workers: list[Worker] = []
        self._generation: Counter[str] = Counter()

    @property
    def url(self) -> str:
        """``BATON_REDIS_URL`` of the state store."""
        return self.redis.url

    def start_state(self) -> None:
        self.redis.start()

    def stop_state(self) -> None:
        if self.redis.proc is not None and self.redis.proc.poll() is None:
            os.kill(self.redis.proc.pid, signal.SIGCONT)  # never leave it frozen
        self.redis.stop()

    def start(self) -> None:
        self.start_state()
        broker = {}
        if self.rabbit is not None:
            self.rabbit.start()
            broker = {"BATON_BROKER_URL": self.rabbit.url}
        env = worker_env(
            self.url,
            self.workdir,
            **broker,
            BATON_IMPORTS='["tests.chaos.flows"]',
            BATON_KEY_PREFIX=self.prefix,
            BATON_MAX_TIME_LIMIT=MAX_TIME_LIMIT,
            BATON_VISIBILITY_TIMEOUT=VISIBILITY_TIMEOUT,
            BATON_RETENTION_SECONDS=self.cfg.retention,
        )
        self.workers = [
            Worker(env, [QUEUE], concurrency=2, name="chaos-prefork@chaos"),
            Worker(env, [QUEUE], concurrency=16, pool="asyncio", name="chaos-asyncio@chaos"),
        ]
        for worker in self.workers:
            worker.start()

    def settings(self) -> Settings:
        """What a client of this cluster uses (the same limits as the workers)."""
        return Settings(
            redis_url=self.url,
            broker_url=None if self.rabbit is None else self.rabbit.url,
            key_prefix=self.prefix,
            imports=["tests.chaos.flows"],
            retention_seconds=self.cfg.retention,
            max_time_limit=MAX_TIME_LIMIT,
            visibility_timeout_override=VISIBILITY_TIMEOUT,
        )

    def stop(self) -> None:
        with self.lock:
            for worker in self.workers:
                worker.stop()
            self.stop_state()
            if self.rabbit is not None:
                self.rabbit.stop()

    def inject(self, kind: str, rng: random.Random, rt: Runtime) -> None:
        worker = rng.choice(self.workers)
        if kind in ("worker_kill", "worker_term"):
            # a fault that lands mid-task is the one worth making: wait a little for one
            with contextlib.suppress(AssertionError):
                eventually(lambda: busy(worker), timeout=BUSY_WAIT, interval=0.01)
        with self.lock:
            if kind in ("worker_kill", "worker_term"):
                self.mid_task += busy(worker)
                self._stop_worker(worker, kill=kind == "worker_kill")
            elif kind == "redis_restart":
                self._restart_redis()
            elif kind == "redis_freeze":
                self._freeze_redis()
            elif kind == "broker_restart":
                assert self.rabbit is not None
                self.rabbit.kill()
                self.rabbit.restart()
            else:
                self._poison(rt)
            self.faults[kind] += 1

    def check_workers(self) -> None:
        """A worker that exited while the suite did not stop it has died: note why, restart it."""
        with self.lock:
            for worker in self.workers:
                if worker.proc is not None and worker.proc.poll() is not None:
                    code = worker.proc.returncode
                    self.deaths.append(f"{worker.name} exited ({code}): {_last_error(worker)}")
                    self._restart(worker)

    def _stop_worker(self, worker: Worker, kill: bool) -> None:
        assert worker.proc is not None
        pid = worker.proc.pid
        if kill:  # the whole process group: a machine or container dying
            os.killpg(pid, signal.SIGKILL)
        else:  # the main process only: Celery's warm shutdown
            os.kill(pid, signal.SIGTERM)
        try:
            worker.proc.wait(timeout=TERM_WAIT)
        except subprocess.TimeoutExpired:
            self.hangs.append(f"{worker.name} still running {TERM_WAIT}s after SIGTERM; killed")
            os.killpg(pid, signal.SIGKILL)
            worker.proc.wait()
        # pool processes left behind by a warm shutdown would keep taking messages
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        self._restart(worker)

    def _restart(self, worker: Worker, tries: int = 3) -> None:
        """Start the worker again, its old log kept aside (``Worker.start`` waits for a
        "ready." line, which must be the new process's)."""
        for attempt in range(1, tries + 1):
            self._generation[worker.name] += 1
            if worker.log.exists():
                worker.log.rename(worker.log.with_suffix(f".{self._generation[worker.name]}.log"))
            try:
                worker.start()
                return
            except Exception:
                if attempt == tries:
                    raise

    def _restart_redis(self) -> None:
        killed_under = self.redis.appendfsync
        self.fsync_at_restart.append(killed_under)
        if self.cfg.fsync == "alternate":
            self.redis.appendfsync = "always" if killed_under == "everysec" else "everysec"
        self.redis.restart()

    def _freeze_redis(self) -> None:
        assert self.redis.proc is not None
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(self.cfg.freeze_seconds)  # the fault itself: Redis stays stopped this long
        finally:
            os.kill(self.redis.proc.pid, signal.SIGCONT)

    def _poison(self, rt: Runtime) -> None:
        """Plain text, JSON that is no kombu envelope, and a message for an unknown task."""
        n = self.faults["poison"]  # numbered, so that each dead letter can be told apart
        unknown = Message("chaos.no_such_task", StepArgs("chaos-poison", f"inv{n}", {}), QUEUE)
        if self.rabbit is not None:
            self._poison_rabbit(rt, n, unknown)
            return
        _, framed = rt.publisher.frame(unknown)
        for payload in (f"not json {n}", json.dumps({"a": 1, "n": n}), framed):
            rt.redis.lpush(rt.keys.queue(QUEUE), payload)
            self.poison_pushed += 1

    def _poison_rabbit(self, rt: Runtime, n: int, unknown: Message) -> None:
        """The same three, published to the RabbitMQ queue: text, JSON with no task header,
        and a task message (through the outbox and a relay) for a task no worker has."""
        queue = rt.app.amqp.queues[QUEUE]
        with rt.app.connection_for_write() as conn:
            producer = rt.app.amqp.Producer(conn)
            for body, content_type in ((f"not json {n}", "text/plain"), ({"a": 1, "n": n}, None)):
                producer.publish(
                    body,
                    exchange=queue.exchange,
                    routing_key=queue.routing_key,
                    declare=[queue],
                    content_type=content_type,
                    content_encoding="utf-8" if content_type else None,
                    serializer=None if content_type else "json",
                )
                self.poison_pushed += 1
        rt.send([unknown])
        rt.redis.hdel(rt.keys.inflight(unknown.run_id), unknown.task_id)  # no run to resend it
        self.poison_pushed += 1


TASK_LINE = re.compile(r"Task [\w.]+\[([0-9a-f-]+)\] (received|succeeded|raised|failed|retry)")


def busy(worker: Worker) -> bool:
    """The worker's log shows a task received and not finished (its last 32 KB)."""
    try:
        with worker.log.open("rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 32768))
            text = fh.read().decode(errors="replace")
    except OSError:
        return False
    running: set[str] = set()
    for m in TASK_LINE.finditer(text):
        (running.add if m.group(2) == "received" else running.discard)(m.group(1))
    return bool(running)


def _last_error(worker: Worker) -> str:
    lines = worker.log.read_text(errors="replace").splitlines() if worker.log.exists() else []
    bad = [ln for ln in lines if re.search(r"ERROR|CRITICAL|Error:|Exception", ln)]
    return " | ".join((bad or lines)[-3:])[-600:]


def fault_schedule(
    n: int, rng: random.Random, kinds_of: tuple[str, ...] = FAULT_KINDS
) -> list[str]:
    """``n`` faults: every kind once (shuffled) before any kind comes again."""
    out: list[str] = []
    while len(out) < n:
        kinds = list(kinds_of)
        rng.shuffle(kinds)
        out += kinds
    return out[:n]

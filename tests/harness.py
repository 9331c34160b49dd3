"""Real parts for tests: a private redis-server and Celery worker processes.

Tests never use the machine's Redis: each session starts its own on a free port in a temp dir
(AOF on), so tests can kill and restart it. Waiting is done with ``eventually``, never sleeps.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import redis

from app.celery_app import create_app
from app.client import Client
from app.stack import pool_env
from config import QueueSpec, Settings

ROOT = Path(__file__).resolve().parents[1]
# the modules every test worker and client imports (their workflows and tools)
TEST_IMPORTS = [
    "examples",
    "tests.integration.flows",
    "tests.integration.error_flows",
    "tests.integration.memory_flows",
    "tests.integration.resource_flows",
    "tests.integration.tool_error_flows",
    "tests.integration.timer_flows",
    "tests.integration.limit_flows",
]
T = TypeVar("T")


def eventually(
    check: Callable[[], T | None],
    timeout: float = 30.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll ``check`` until it returns a truthy value (returned) or raise after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except ProcessDied:
            raise
        except Exception as exc:  # retried until the deadline
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s (last error: {last_exc!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ProcessDied(Exception):
    """A process we wait for has exited: waiting longer is pointless."""


class RedisServer:
    """A redis-server process of our own, restartable on the same port and data dir."""

    def __init__(self, workdir: Path, appendfsync: str = "always") -> None:
        self.dir = workdir
        self.appendfsync = appendfsync
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run bash scripts/bootstrap.sh")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                self.appendfsync,
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        eventually(lambda: client.ping(), timeout=10, what="redis-server up")
        client.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop(signal.SIGKILL)
        self.start()


class Worker:
    """A ``celery worker`` subprocess serving some queues."""

    def __init__(
        self,
        env: dict[str, str],
        queues: list[str],
        concurrency: int = 2,
        pool: str = "prefork",
        name: str | None = None,
    ) -> None:
        self.env, self.queues, self.concurrency, self.pool = env, queues, concurrency, pool
        self.name = name or f"w{free_port()}@test"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(env["BATON_TEST_DIR"]) / f"{self.name.split('@')[0]}.log"
        self.start_app = "app.worker:celery_app"

    def start(self) -> Worker:
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            self.start_app,
            "worker",
            "-Q",
            ",".join(self.queues),
            "-c",
            str(self.concurrency),
            "-P",
            "custom" if self.pool == "asyncio" else self.pool,
            "-n",
            self.name,
            "-E",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env={**self.env, **pool_env(QueueSpec.model_validate({"pool": self.pool}))},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            eventually(self._ready, timeout=40, interval=0.1, what=f"worker {self.name} ready")
        except BaseException:
            self.stop()  # never leave a half-started worker behind
            raise
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise ProcessDied(f"worker exited: {self.log.read_text()[-3000:]}")
        return "ready." in self.log.read_text(errors="replace")

    def children(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid if self.proc else 0)], capture_output=True, text=True
        )
        return [int(p) for p in out.stdout.split()]

    def stop(self) -> None:
        stop_group(self.proc)


StartWorker = Callable[..., "Worker"]  # the ``isolated_workers`` fixture: start(queue, name, n)


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m <args>`` from the repo root, in a session of its own (``stop_group`` stops
    it and its children), its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextmanager
def running_redis(workdir: Path, appendfsync: str = "always") -> Iterator[RedisServer]:
    """A redis-server of our own in ``workdir`` (made here) for the ``with`` block."""
    server = RedisServer(workdir, appendfsync=appendfsync)
    server.dir.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def stop_group(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM a process started in its own session, and its children; SIGKILL after 15 s."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def worker_env(redis_url: str, testdir: Path, **extra: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env.update(
        {
            "BATON_REDIS_URL": redis_url,
            "BATON_IMPORTS": json.dumps(TEST_IMPORTS),
            "BATON_TEST_DIR": str(testdir),
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def private_client(redis_url: str, prefix: str, **settings: Any) -> Client:
    """A client under a key prefix of its own: its queues and runs are seen only by workers
    started with the same ``BATON_KEY_PREFIX``."""
    config = Settings(
        redis_url=redis_url,
        key_prefix=prefix,
        imports=TEST_IMPORTS,
        **settings,
    )
    return Client(runtime=create_app(config)[1])

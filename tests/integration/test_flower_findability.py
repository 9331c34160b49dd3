"""Flower findability: every ``baton worker`` process has its own node name, so two workers
for one queue on one machine are two workers in Flower and ``celery inspect``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.celery_app import create_app
from app.cli.processes import default_hostname, named
from app.stack import worker_command
from config import QueueSpec, Settings
from tests.harness import RedisServer, eventually, worker_env

pytestmark = pytest.mark.integration
QUEUE = "itest"  # a queue the test workflows use, so ``baton worker`` knows it


def start_baton_worker(env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "app.cli", "worker", "-Q", QUEUE, "-P", "solo", *extra]
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in started:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_two_baton_workers_for_one_queue_answer_ping_under_different_names(
    redis_server: RedisServer,
    settings: Settings,
    tmp_path: Path,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    env = worker_env(redis_server.url, tmp_path)
    custom = f"custom-{uuid.uuid4().hex[:8]}@%h"
    procs.append(start_baton_worker(env, tmp_path / "a.log"))
    procs.append(start_baton_worker(env, tmp_path / "b.log"))
    procs.append(start_baton_worker(env, tmp_path / "c.log", "--hostname", custom))
    host = socket.gethostname()
    expected = {
        f"{QUEUE}-{procs[0].pid}@{host}",  # ``execve`` keeps the pid: the default names it
        f"{QUEUE}-{procs[1].pid}@{host}",
        custom.replace("%h", host),
    }
    control = create_app(settings)[0].control

    def names() -> set[str] | None:
        for proc, log in zip(procs, "abc", strict=True):
            assert proc.poll() is None, (tmp_path / f"{log}.log").read_text()
        replies = control.ping(timeout=0.5) or []
        found = {name for reply in replies for name in reply}
        return found if expected <= found else None

    eventually(names, timeout=30, what="both workers answering ping")


def test_the_default_name_replaces_only_the_node_name_of_the_worker_command() -> None:
    cmd = worker_command(QUEUE, QueueSpec())
    renamed = named(cmd, default_hostname(QUEUE))
    at = cmd.index("-n") + 1
    assert renamed[at] == f"{QUEUE}-{os.getpid()}@%h"
    assert renamed[:at] + renamed[at + 1 :] == cmd[:at] + cmd[at + 1 :]

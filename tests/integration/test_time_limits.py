"""Honest time limits: a call stopped at its hard limit is a timeout under its retry policy
(never redelivered and re-run), the asyncio pool enforces limits Celery's threads pool
ignores, a worker refuses calls its visibility timeout cannot cover, and an exception in
Baton's own code fails the run as data."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.client import Client
from tasks import runs
from tests.harness import ProcessDied, RedisServer, Worker, eventually, private_client, worker_env
from tests.integration.flows import Label
from workflows import RunError, StepFailedError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def limits(redis_server: RedisServer) -> Client:
    return private_client(redis_server.url, "limits")


@pytest.fixture(scope="module")
def prefork_worker(redis_server: RedisServer, testdir: Path) -> Iterator[Worker]:
    env = worker_env(
        redis_server.url,
        testdir,
        BATON_KEY_PREFIX="limits",
        BATON_MAX_TIME_LIMIT=5,
        BATON_VISIBILITY_TIMEOUT=8,
    )
    worker = Worker(env, ["crash", "itest"], concurrency=2, name="limits@test").start()
    yield worker
    worker.stop()


def _lines(testdir: Path, name: str) -> int:
    path = testdir / "effects" / name
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_tool_stopped_at_its_hard_limit_is_a_timeout_and_runs_once(
    limits: Client, prefork_worker: Worker, testdir: Path
) -> None:
    label = uuid.uuid4().hex
    result = limits.submit("StubbornTool", label=label).result(timeout=60)
    assert result["type"] == "ToolTimeout"
    assert "hard time limit" in result["message"]
    # no retry policy: one execution, however long we watch the queue afterwards
    assert limits.submit("AddTwice", a=1, b=1).result(timeout=30) == 4
    assert _lines(testdir, f"{label}.stubborn") == 1


def test_a_step_stopped_at_its_hard_limit_fails_its_run_as_a_timeout(
    limits: Client, prefork_worker: Worker, testdir: Path
) -> None:
    label = uuid.uuid4().hex
    with pytest.raises(StepFailedError, match="hard time limit"):
        limits.submit("StubbornStep", label=label).result(timeout=60)
    assert limits.submit("AddTwice", a=1, b=1).result(timeout=30) == 4
    assert _lines(testdir, f"{label}.stubborn-step") == 1


def test_an_exception_in_batons_own_code_fails_the_run_as_data(
    limits: Client, prefork_worker: Worker
) -> None:
    rt = limits.runtime
    run_id, _ = runs.create_run(rt, "NeedsArgs", uuid.uuid4().hex, Label(label="x"))
    with pytest.raises(RunError, match="could not run it: TypeError"):
        limits.get(run_id).result(timeout=30)


def test_an_asyncio_worker_stops_a_step_at_its_hard_limit(
    redis_server: RedisServer, testdir: Path
) -> None:
    client = private_client(redis_server.url, "aiolimits")
    env = worker_env(
        redis_server.url,
        testdir,
        BATON_KEY_PREFIX="aiolimits",
        BATON_MAX_TIME_LIMIT=3,
        BATON_VISIBILITY_TIMEOUT=12,
    )
    worker = Worker(env, ["itest"], concurrency=8, pool="asyncio", name="aiolimits@test").start()
    try:
        with pytest.raises(StepFailedError, match=r"hard time limit \(3s\)"):
            client.submit("SlowStep", seconds=30).result(timeout=30)
        assert client.submit("SlowStep", seconds=0.1).result(timeout=30) == 1
    finally:
        worker.stop()


def test_a_worker_refuses_to_serve_calls_its_visibility_timeout_cannot_cover(
    redis_server: RedisServer, testdir: Path
) -> None:
    env = worker_env(
        redis_server.url,
        testdir,
        BATON_KEY_PREFIX="uncovered",
        BATON_MAX_TIME_LIMIT=3,
        BATON_VISIBILITY_TIMEOUT=4,
    )
    worker = Worker(env, ["crash"], concurrency=1, name="uncovered@test")
    with pytest.raises(ProcessDied):
        worker.start()
    log = worker.log.read_text()
    assert "tool it_stubborn may run 6s" in log
    assert "visibility timeout (4s) does not cover it" in log
    eventually(lambda: worker.proc is not None and worker.proc.poll() is not None)

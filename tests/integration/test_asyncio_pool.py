"""``pool: asyncio`` workers: many steps and tool calls in flight on one event loop per process,
with every guarantee of prefork workers. A private key prefix gives these tests queues of their
own, served only by the workers started here."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.client import Client
from tasks import queries
from tasks.protocol import DeadLetter, Message, StepArgs
from tests.harness import RedisServer, Worker, eventually, private_client, worker_env
from tests.integration.flows import Answer, Ask
from tests.integration.test_guarantees import (
    EXPECTED_CRASH_SUM,
    _assert_each_call_applied_once_and_never_rerun_after_completion,
)
from workflows import RunCancelledError, StepFailedError

pytestmark = pytest.mark.integration
QUEUES = ["baton", "tools", "analysis", "itest", "single", "crash"]


@pytest.fixture(scope="module")
def aio(redis_server: RedisServer) -> Client:
    return private_client(redis_server.url, "aio")


@pytest.fixture(scope="module")
def aio_worker(redis_server: RedisServer, testdir: Path) -> Iterator[Worker]:
    env = worker_env(redis_server.url, testdir, BATON_KEY_PREFIX="aio")
    worker = Worker(env, QUEUES, concurrency=64, pool="asyncio", name="aio@test").start()
    yield worker
    worker.stop()


def test_one_asyncio_worker_keeps_a_runs_parallel_tool_calls_in_flight_together(
    aio: Client, aio_worker: Worker
) -> None:
    group = uuid.uuid4().hex
    assert aio.submit("GatherMeet", group=group, n=40).result(timeout=60) == 40


def test_one_asyncio_worker_keeps_many_runs_steps_in_flight_together(
    aio: Client, aio_worker: Worker
) -> None:
    group = uuid.uuid4().hex
    handles = [aio.submit("StepMeet", group=group, n=30) for _ in range(30)]
    assert [h.result(timeout=60) for h in handles] == [30] * 30


@pytest.mark.parametrize(
    ("workflow", "kwargs", "expected"),
    [
        ("AddTwice", {"a": 1, "b": 2}, 6),
        ("FanIn", {"n": 20}, [i * 2 for i in range(20)]),
        ("StepRetries", {"label": "aio"}, 3),
        ("ItOuter", {"x": 1}, {"middle": [5, 25, 101], "sum": 30}),
        ("Research", {"topic": "baton"}, None),
    ],
)
def test_workflows_complete_on_an_asyncio_worker_as_on_prefork(
    aio: Client, aio_worker: Worker, workflow: str, kwargs: dict[str, Any], expected: object
) -> None:
    result = aio.submit(workflow, **kwargs).result(timeout=60)
    if expected is not None:
        assert result == expected


def test_tool_retries_failures_and_timeouts_hold_on_an_asyncio_worker(
    aio: Client, aio_worker: Worker
) -> None:
    result = aio.submit("ToolFailures", label=uuid.uuid4().hex, seconds=3).result(timeout=60)
    assert result["it_flaky"] == {"ok": 3}
    assert result["it_broken"]["attempts"] == 2
    assert result["it_sleep"]["type"] == "ToolTimeout"  # a sync tool, stopped on its thread
    assert aio.submit("Overrun", seconds=5).result(timeout=30) == "ToolTimeout"  # async tool


def test_step_failures_and_step_timeouts_fail_runs_on_an_asyncio_worker(
    aio: Client, aio_worker: Worker
) -> None:
    with pytest.raises(StepFailedError, match="boom"):
        aio.submit("Boom", label="aio").result(timeout=30)
    with pytest.raises(StepFailedError, match="timed out"):
        aio.submit("StepTimeout", seconds=5).result(timeout=30)


def test_human_in_the_loop_and_cancel_work_on_an_asyncio_worker(
    aio: Client, aio_worker: Worker
) -> None:
    handle = aio.submit("Approve", label="aio")
    asked = next(iter(handle.stream_events(timeout=30)))
    assert isinstance(asked, Ask)
    handle.send_event(Answer(approved=True))
    assert handle.result(timeout=30) == {"label": "aio", "approved": True}
    slow = aio.submit("SlowStep", seconds=30)
    eventually(lambda: _active(aio, aio_worker), what="the slow step is running")
    assert slow.cancel()
    with pytest.raises(RunCancelledError):
        slow.result(timeout=10)


def test_the_watchdog_reports_a_step_that_blocks_the_event_loop(
    aio: Client, aio_worker: Worker
) -> None:
    assert aio.submit("LoopBlocker", seconds=1.6).result(timeout=30) == "blocked"
    eventually(lambda: "event loop blocked" in aio_worker.log.read_text(), what="a watchdog report")
    assert "time.sleep(ev.seconds)" in aio_worker.log.read_text()  # it says where the loop is stuck


def test_an_unknown_task_on_an_asyncio_queue_is_kept_as_a_dead_letter(
    aio: Client, aio_worker: Worker
) -> None:
    rt = aio.runtime
    rt.send([Message("NoSuchAioTask.step", StepArgs("no-run", "inv", {}), "itest")])
    assert eventually(
        lambda: any("NoSuchAioTask" in d.reason for d in _dead_letters(aio)),
        what="the dead letter",
    )


@pytest.mark.long  # slow (a whole worker killed, a timeout run out): scripts/long.sh
def test_runs_complete_when_an_asyncio_worker_is_killed_with_calls_in_flight(
    redis_server: RedisServer, testdir: Path
) -> None:
    client = private_client(redis_server.url, "aiokill")
    env = worker_env(
        redis_server.url,
        testdir,
        BATON_KEY_PREFIX="aiokill",
        BATON_MAX_TIME_LIMIT=5,
        BATON_VISIBILITY_TIMEOUT=8,
    )
    first = Worker(env, ["crash"], concurrency=50, pool="asyncio", name="aiokill1@test").start()
    labels = [f"aiokill{i}" for i in range(6)]
    handles = [client.submit("CrashChain", label=label) for label in labels]
    eventually(lambda: len(_active(client, first)) >= 6, what="calls in flight")
    assert first.proc is not None
    os.killpg(first.proc.pid, signal.SIGKILL)
    first.proc.wait()
    second = Worker(env, ["crash"], concurrency=50, pool="asyncio", name="aiokill2@test").start()
    try:
        for handle in handles:
            assert handle.result(timeout=90) == EXPECTED_CRASH_SUM
    finally:
        second.stop()
    for label in labels:
        _assert_each_call_applied_once_and_never_rerun_after_completion(testdir, label)


def test_a_threads_worker_runs_async_steps_concurrently(
    redis_server: RedisServer, testdir: Path
) -> None:
    client = private_client(redis_server.url, "thr")
    env = worker_env(redis_server.url, testdir, BATON_KEY_PREFIX="thr")
    worker = Worker(env, QUEUES, concurrency=12, pool="threads", name="thr@test").start()
    try:
        group = uuid.uuid4().hex
        handles = [client.submit("StepMeet", group=group, n=8) for _ in range(8)]
        assert [h.result(timeout=60) for h in handles] == [8] * 8
        assert client.submit("FanIn", n=10).result(timeout=60) == [i * 2 for i in range(10)]
    finally:
        worker.stop()
    assert "already running" not in worker.log.read_text()


def _active(client: Client, worker: Worker) -> list[object]:
    inspect = client.runtime.app.control.inspect(destination=[worker.name], timeout=0.5)
    return [t for tasks in (inspect.active() or {}).values() for t in tasks]


def _dead_letters(client: Client) -> list[DeadLetter]:
    return queries.dead_letters(client.runtime, 50)[1]


def test_more_tasks_in_flight_than_redis_connections_wait_for_one_instead_of_failing(
    redis_server: RedisServer, testdir: Path
) -> None:
    client = private_client(redis_server.url, "aiomax")
    env = worker_env(
        redis_server.url, testdir, BATON_KEY_PREFIX="aiomax", BATON_REDIS_MAX_CONNECTIONS=6
    )
    worker = Worker(env, ["itest"], concurrency=64, pool="asyncio", name="aiomax@test").start()
    try:
        group = uuid.uuid4().hex
        assert client.submit("GatherMeet", group=group, n=40).result(timeout=60) == 40
    finally:
        worker.stop()
    assert "MaxConnectionsError" not in worker.log.read_text()


def test_sigterm_lets_an_asyncio_worker_finish_what_it_has_in_flight(
    redis_server: RedisServer, testdir: Path
) -> None:
    client = private_client(redis_server.url, "aioterm")
    env = worker_env(redis_server.url, testdir, BATON_KEY_PREFIX="aioterm")
    first = Worker(env, ["itest"], concurrency=16, pool="asyncio", name="aioterm1@test").start()
    handle = client.submit("SlowStep", seconds=2)
    eventually(lambda: _active(client, first), what="the slow step is running")
    assert first.proc is not None
    os.killpg(first.proc.pid, signal.SIGTERM)  # warm shutdown: no new message, finish these
    first.proc.wait(timeout=30)
    finished = [line for line in first.log.read_text().splitlines() if "SlowStep.wait" in line]
    assert any("succeeded" in line for line in finished), finished
    second = Worker(env, ["itest"], concurrency=16, pool="asyncio", name="aioterm2@test").start()
    try:
        assert handle.result(timeout=30) == 1  # the next step, queued meanwhile, runs here
    finally:
        second.stop()


@pytest.mark.long  # slow (a TTL, a backlog, a whole stack): bash scripts/long.sh
def test_a_message_lost_by_the_broker_is_resent_by_an_asyncio_workers_reaper(
    redis_server: RedisServer, testdir: Path
) -> None:
    client = private_client(redis_server.url, "aioreap")
    handle = client.submit("CrashChain", label="aioreap", steps=1)
    assert client.runtime.redis.delete(client.runtime.keys.queue("crash")) == 1  # lost
    env = worker_env(
        redis_server.url,
        testdir,
        BATON_KEY_PREFIX="aioreap",
        BATON_MAX_TIME_LIMIT=5,
        BATON_VISIBILITY_TIMEOUT=8,
    )
    worker = Worker(env, ["crash"], concurrency=8, pool="asyncio", name="aioreap@test").start()
    try:
        assert handle.result(timeout=60) == 0 + 1 + 2
    finally:
        worker.stop()

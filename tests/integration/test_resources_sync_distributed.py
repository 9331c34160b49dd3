"""Resources and sync steps on real workers: each worker process builds a cached resource once
(prefork and asyncio pools: one event loop per process) and nothing crosses the wire; sync steps
run on a worker thread, fan out, stream, fan in, are retried and time out as async steps do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.client import Client
from tests.harness import RedisServer, Worker, private_client, worker_env
from tests.integration.resource_flows import Progress
from workflows import StepFailedError, WorkflowTimeoutError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def aio(redis_server: RedisServer) -> Client:
    return private_client(redis_server.url, "resaio")


@pytest.fixture(scope="module")
def aio_worker(redis_server: RedisServer, testdir: Path) -> Iterator[Worker]:
    env = worker_env(redis_server.url, testdir, BATON_KEY_PREFIX="resaio")
    worker = Worker(env, ["baton"], concurrency=8, pool="asyncio", name="resaio@test").start()
    yield worker
    worker.stop()


def _assert_built_once_per_process(results: list[dict[str, Any]]) -> None:
    assert {(r["builds"], r["loop_builds"]) for r in results} == {(1, 1)}  # however many runs
    assert all(r["built_here"] for r in results)  # by the worker process that used it
    assert all(r["on_its_loop"] for r in results)  # and used on the loop it was built on
    assert {tuple(r["notes"]) for r in results} == {("done",)}  # cache=False: one per step


def test_each_worker_process_builds_a_cached_resource_once(client: Client, workers: Worker) -> None:
    handles = [client.submit("ResClientPerProcess") for _ in range(8)]
    _assert_built_once_per_process([h.result(timeout=30) for h in handles])


def test_an_asyncio_worker_builds_a_cached_resource_once_for_all_its_runs(
    aio: Client, aio_worker: Worker
) -> None:
    handles = [aio.submit("ResClientPerProcess") for _ in range(16)]
    _assert_built_once_per_process([h.result(timeout=30) for h in handles])


def test_a_failing_factory_fails_the_step_which_is_retried(client: Client, workers: Worker) -> None:
    handle = client.submit("ResFlakyFactory")
    assert handle.result(timeout=30) == 3
    assert [e["kind"] for e in handle.timeline()].count("retry") == 2


def test_sync_steps_fan_out_stream_retry_and_fan_in_on_workers(
    client: Client, workers: Worker
) -> None:
    handle = client.submit("SyncChunks")
    assert handle.result(timeout=30) == {"parts": [0, 1, 2], "on_loop_thread": []}
    streamed = [e.n for e in handle.events() if isinstance(e, Progress)]
    assert streamed == [0, 1, 2]
    assert [e["kind"] for e in handle.timeline()].count("retry") == 1


def test_a_sync_step_past_its_timeout_fails_the_run(client: Client, workers: Worker) -> None:
    with pytest.raises(StepFailedError) as info:
        client.submit("SyncTooSlow").result(timeout=30)
    assert info.value.cause_type == WorkflowTimeoutError.__name__

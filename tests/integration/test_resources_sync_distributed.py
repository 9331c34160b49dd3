"""Resources and sync steps on real workers: each worker process builds a cached resource once
and nothing crosses the wire; sync steps run on a worker thread, fan out, stream, fan in, are
retried and time out as async steps do."""

from __future__ import annotations

import pytest

from app.client import Client
from tests.harness import Worker
from tests.integration.resource_flows import Progress
from workflows import StepFailedError, WorkflowTimeoutError

pytestmark = pytest.mark.integration


def test_each_worker_process_builds_a_cached_resource_once(client: Client, workers: Worker) -> None:
    handles = [client.submit("ResClientPerProcess") for _ in range(8)]
    results = [h.result(timeout=30) for h in handles]
    assert {r["builds"] for r in results} == {1}  # however many runs a process served
    assert all(r["built_here"] for r in results)  # by the worker that used it
    assert {tuple(r["notes"]) for r in results} == {("done",)}  # cache=False: one per step


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

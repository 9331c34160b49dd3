"""The distributed runtime's promises, against a real redis-server and real worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.client import Client
from tasks.protocol import StepArgs, ToolArgs
from tests.harness import ROOT, Worker, eventually
from tests.integration.flows import Answer, Ask
from workflows import (
    InvalidInputError,
    PayloadError,
    RunCancelledError,
    StepFailedError,
    UnknownWorkflowError,
    WorkflowTimeoutError,
)
from workflows.tools import get_tool


def effects(testdir: Path, label: str, suffix: str = "log") -> list[list[str]]:
    path = testdir / "effects" / f"{label}.{suffix}"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_each_tool_call_runs_once_with_a_stable_idempotency_key(
    client: Client, workers: Worker, testdir: Path
) -> None:
    handle = client.submit("Recorder", label="once", calls=5)
    ids = handle.result(timeout=30)
    recorded = effects(testdir, "once")
    assert sorted(call for call, _ in recorded) == sorted(ids)
    assert len(set(ids)) == 5


def test_tool_failures_come_back_as_data_with_retries_and_timeouts(
    client: Client, workers: Worker, testdir: Path
) -> None:
    handle = client.submit("ToolFailures", label="fail", seconds=5.0)
    out = handle.result(timeout=60)
    assert out["it_flaky"] == {"ok": 3}
    assert out["it_broken"]["type"] == "ValueError"
    assert out["it_broken"]["attempts"] == 2
    assert out["it_sleep"]["type"] == "ToolTimeout"
    attempts = [int(a) for _, a in effects(testdir, "fail", "flaky")]
    assert attempts == [1, 2, 3]
    kinds = [e["kind"] for e in handle.timeline()]
    assert kinds.count("retry") == 3  # two for the flaky tool, one for the broken one


def test_a_timed_out_tool_leaves_its_worker_serving(client: Client, workers: Worker) -> None:
    client.submit("ToolFailures", label="t1", seconds=5.0).result(timeout=60)
    assert client.submit("AddTwice", a=1, b=1).result(timeout=30) == 4


def test_fan_in_of_200_events_is_collected_exactly_once(client: Client, workers: Worker) -> None:
    handle = client.submit("FanIn", n=200)
    assert handle.result(timeout=90) == [2 * i for i in range(200)]
    rt = client.runtime
    assert rt.redis.hget(rt.keys.store(handle.run_id), "collected") == "1"


def test_submitting_the_same_idempotency_key_twice_returns_the_same_run(
    client: Client, workers: Worker
) -> None:
    first = client.submit("AddTwice", a=1, b=2, idempotency_key="idem-1")
    second = client.submit("AddTwice", a=1, b=2, idempotency_key="idem-1")
    assert first.run_id == second.run_id
    assert first.result(timeout=30) == 6


def test_invalid_submits_are_rejected_and_write_nothing(client: Client) -> None:
    rt = client.runtime
    before = set(rt.redis.keys("*"))
    with pytest.raises(UnknownWorkflowError, match="NoSuchFlow"):
        client.submit("NoSuchFlow")
    with pytest.raises(InvalidInputError, match="a"):
        client.submit("AddTwice", a="not a number", b=1)
    with pytest.raises(PayloadError, match="limit"):
        client.submit("Recorder", label="x" * 2_000_000)
    assert set(rt.redis.keys("*")) - before == set()


def test_cancel_stops_a_running_run(client: Client, workers: Worker) -> None:
    handle = client.submit("SlowStep", seconds=2.0)
    eventually(
        lambda: (
            client.runtime.redis.hget(client.runtime.keys.run(handle.run_id), "status") == "running"
        )
    )
    assert handle.cancel() is True
    with pytest.raises(RunCancelledError):
        handle.result(timeout=10)
    assert handle.status() == "cancelled"
    # the running step ends its sleep, but what it emits is never started
    eventually(lambda: any(e["kind"] == "cancelled" for e in handle.timeline()))
    assert _idle(client)
    assert [type(e).__name__ for e in handle.events()] == ["Slow"]
    assert handle.status() == "cancelled"


def test_a_failing_step_is_retried_then_fails_the_run_with_the_error_as_data(
    client: Client, workers: Worker
) -> None:
    handle = client.submit("Boom", label="b")
    with pytest.raises(StepFailedError, match="boom b"):
        handle.result(timeout=30)
    info = handle.info()
    assert info.status == "failed"
    assert info.error is not None and info.error.attempts == 2
    assert info.error.details["cause_type"] == "ValueError"


def test_a_step_retried_by_its_policy_succeeds_on_attempt_three(
    client: Client, workers: Worker
) -> None:
    handle = client.submit("StepRetries")
    assert handle.result(timeout=30) == 3
    assert [e["kind"] for e in handle.timeline()].count("retry") == 2


def test_a_step_past_its_timeout_fails_the_run(client: Client, workers: Worker) -> None:
    handle = client.submit("StepTimeout", seconds=5.0)
    with pytest.raises(StepFailedError, match="WorkflowTimeoutError"):
        handle.result(timeout=30)


def test_a_waiting_run_holds_no_worker_and_resumes_on_an_event_from_another_process(
    client: Client, workers: Worker, settings: object
) -> None:
    handle = client.submit("Approve", label="hitl")
    asked = next(iter(handle.stream_events(timeout=30)))
    assert isinstance(asked, Ask)
    assert asked.question == "ok hitl?"
    assert _idle(client)
    sender = (
        "from app.client import Client\n"
        "from tests.integration.flows import Answer\n"
        f"Client().get({handle.run_id!r}).send_event(Answer(approved=True))\n"
    )
    env = _env(client)
    subprocess.run([sys.executable, "-c", sender], cwd=ROOT, env=env, check=True, timeout=60)
    assert handle.result(timeout=30) == {"label": "hitl", "approved": True}


def test_a_child_waiting_for_an_answer_surfaces_it_on_the_parent_and_receives_it(
    client: Client, workers: Worker
) -> None:
    handle = client.submit("ApproveParent", label="nested")
    asked = next(iter(handle.stream_events(timeout=30)))
    assert isinstance(asked, Ask)
    assert asked.question == "ok nested?"
    assert _idle(client)
    handle.send_event(Answer(approved=False))
    assert handle.result(timeout=30) == {"child": {"label": "nested", "approved": False}}


def _idle(client: Client) -> bool:
    """No task queued and none running on any worker."""
    rt = client.runtime

    def check() -> bool:
        queued = sum(
            rt.redis.llen(f"{rt.settings.key_prefix}:q:{q}")
            for q in rt.topology.queues | {"itest": None}
        )
        active = rt.app.control.inspect(timeout=1.0).active() or {}
        return queued == 0 and all(not tasks for tasks in active.values())

    return bool(eventually(check, timeout=20, what="no task in flight"))


def _env(client: Client) -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["BATON_REDIS_URL"] = client.runtime.settings.redis_url or ""
    env["BATON_IMPORTS"] = json.dumps(["examples", "tests.integration.flows"])
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_redelivered_step_and_tool_messages_never_rerun_a_completed_call(
    client: Client, workers: Worker, testdir: Path
) -> None:
    rt = client.runtime
    handle = client.submit("RecordThenWait", label="redeliver")
    next(iter(handle.stream_events(timeout=30)))  # parked at wait_for_event
    [(call_id, _)] = effects(testdir, "redeliver")
    inv = call_id.rsplit(".", 1)[0]
    start = json.loads(rt.redis.hget(rt.keys.run(handle.run_id), "input"))
    # what a crash would cause: the step and the tool call delivered once more
    rt.send(
        [
            rt.placement.step_message(
                "RecordThenWait", "main", StepArgs(handle.run_id, inv, start)
            ),
            rt.placement.tool_message(
                get_tool("it_record"), ToolArgs(handle.run_id, inv, call_id, {"label": "redeliver"})
            ),
        ]
    )
    eventually(
        lambda: sum(1 for e in handle.timeline() if e["kind"] == "input") == 2,
        what="the redelivered step replayed up to its wait again",
    )
    assert _idle(client)
    handle.send_event(Answer(approved=True))
    assert handle.result(timeout=30) == {"call_id": call_id, "approved": True}
    assert effects(testdir, "redeliver") == [[call_id, "1"]]


def test_a_distributed_step_runs_an_inprocess_tool_inline_and_a_distributed_one_as_a_task(
    client: Client, workers: Worker
) -> None:
    handle = client.submit("Placement")
    result = handle.result(timeout=30)
    assert result["tool_pid"] == result["step_pid"] != os.getpid()
    assert result["sum"] == 3
    delivered = client.runtime.redis.hkeys(client.runtime.keys.deliveries(handle.run_id))
    # step, it_add, step resumed: 3 tasks. Had where_am_i gone out as a task too: 5.
    assert len(delivered) == 3


def test_the_async_client_submits_streams_and_awaits_a_run(client: Client, workers: Worker) -> None:
    from app.client import AsyncClient

    async def go() -> tuple[object, list[str]]:
        aclient = AsyncClient(runtime=client.runtime)
        handle = await aclient.submit("Research", topic="async", n_docs=2)
        seen = [type(e).__name__ async for e in aclient.stream_events(handle, timeout=30)]
        return await aclient.result(handle), seen

    import asyncio

    result, seen = asyncio.run(go())
    assert isinstance(result, dict)
    assert result["documents"] == 2
    assert seen[0] == "ResearchProgress" and seen[-1] == "StopEvent"


def test_a_step_that_suspends_many_times_completes(client: Client, workers: Worker) -> None:
    handle = client.submit("Recorder", label="many", calls=2)
    assert len(handle.result(timeout=30)) == 2
    handle = client.submit("ManyCalls", label="seq")
    assert handle.result(timeout=60) == sum(range(8))


def test_cancelling_a_child_fails_the_parents_call_instead_of_hanging(
    client: Client, workers: Worker
) -> None:
    handle = client.submit("ApproveParent", label="cancel-child")
    next(iter(handle.stream_events(timeout=30)))  # the child waits for an answer
    rt = client.runtime
    [child] = rt.redis.smembers(rt.keys.children(handle.run_id))
    assert client.get(child).cancel()
    with pytest.raises(StepFailedError, match="ChildWorkflowError"):
        handle.result(timeout=30)


def test_a_run_parked_on_a_wait_fails_at_its_deadline(client: Client, workers: Worker) -> None:
    handle = client.submit("Approve", label="late", timeout=1.0)
    with pytest.raises(WorkflowTimeoutError):
        handle.result(timeout=60)
    assert handle.status() == "failed"


def test_gather_branches_get_their_own_answers_when_a_replay_interleaves_differently(
    client: Client, workers: Worker, testdir: Path
) -> None:
    handle = client.submit("Branches", label="branches")
    assert handle.result(timeout=30) == ["A", "B"]
    executed = sorted(value for _, value in effects(testdir, "branches", "echo"))
    assert executed == ["A", "B"]  # each branch's tool ran once

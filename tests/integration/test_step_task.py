"""The step and tool task bodies driven by hand against the test Redis, with no worker.

Each message a task sends is popped from its queue list and run here, so every hop's writes
(journal, wait record, in-flight records, done markers, the run's end) can be checked between
hops. A private key prefix keeps the session's workers away from these queues.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from app.celery_app import create_app
from config import Settings
from tasks import queries, runs
from tasks.protocol import LogKind, RunStatus, StepArgs, ToolArgs, parse_entry
from tasks.runtime import MAX_DELIVERIES, Runtime
from tasks.step_task import StepTask
from tasks.tool_task import run_tool
from tests.harness import RedisServer
from tests.integration.flows import Numbers
from workflows import Context, Retry, StopEvent, Workflow, step

pytestmark = pytest.mark.integration


class ParkRetryPark(Workflow):
    """Parks on a call, fails after it, and parks again on its retry."""

    queue = "itest"

    @step(retry=Retry(max_attempts=2))
    async def go(self, ctx: Context, ev: Numbers) -> StopEvent:
        total = await ctx.call_tool("it_add", a=ev.a, b=ev.b)
        if ctx.attempt == 1:
            raise ConnectionError("failed after its call")
        return StopEvent(result=await ctx.call_tool("it_add", a=total, b=total))


@pytest.fixture
def rt(redis_server: RedisServer) -> Runtime:
    settings = Settings(
        redis_url=redis_server.url,
        key_prefix=f"bare{uuid.uuid4().hex[:8]}",
        imports=["examples", "tests.integration.flows"],
    )
    return create_app(settings)[1]


def pop(rt: Runtime, queue: str) -> tuple[str, list[Any], str]:
    """The oldest message of ``queue``: task name, positional args, task id."""
    raw = rt.redis.rpop(rt.keys.queue(queue))
    assert raw is not None, f"no message on {queue}"
    envelope = json.loads(raw)
    args, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
    assert kwargs == {}
    return envelope["headers"]["task"], args, envelope["headers"]["id"]


def run_step(rt: Runtime, queue: str = "itest") -> tuple[str, StepArgs]:
    name, args, task_id = pop(rt, queue)
    workflow, step = name.split(".")
    step_args = StepArgs.from_wire(args)
    StepTask(rt, workflow, step, step_args, task_id).run()
    return name, step_args


def run_tool_message(rt: Runtime, queue: str = "itest") -> ToolArgs:
    name, args, task_id = pop(rt, queue)
    tool_args = ToolArgs.from_wire(args)
    run_tool(rt, name.removeprefix("tool."), tool_args, task_id)
    return tool_args


def test_a_run_advances_hop_by_hop_through_parks_answers_and_resumes(rt: Runtime) -> None:
    run_id = uuid.uuid4().hex
    runs.create_run(rt, "AddTwice", run_id, Numbers(a=1, b=2))
    k = rt.keys
    assert rt.redis.hlen(k.inflight(run_id)) == 1

    name, first = run_step(rt)  # parks on it_add: a tool message and a wait record
    assert name == "AddTwice.first"
    assert rt.redis.hget(k.wait(run_id, first.inv_id), "pending") == "1"
    assert rt.redis.llen(k.queue("itest")) == 1

    tool = run_tool_message(rt)  # answers the call; the last answer resends the step
    journal = rt.redis.hgetall(k.journal(run_id, first.inv_id))
    assert json.loads(journal[tool.call_id]) == {"ok": 3}
    assert not rt.redis.exists(k.wait(run_id, first.inv_id))

    run_step(rt)  # replays: the journaled call returns at once; emits Summed
    done = json.loads(rt.redis.hget(k.done(run_id), first.inv_id))
    assert [m[0] for m in done] == ["AddTwice.second"]
    assert not rt.redis.exists(k.journal(run_id, first.inv_id))

    run_step(rt)  # second parks on its tool call
    run_tool_message(rt)
    run_step(rt)  # completes the run
    assert rt.redis.hget(k.run(run_id), "status") == RunStatus.COMPLETED
    assert json.loads(rt.redis.hget(k.run(run_id), "result")) == 6
    assert rt.redis.hlen(k.inflight(run_id)) == 0
    assert rt.redis.llen(k.queue("itest")) == 0
    kinds = [parse_entry(i, f).kind for i, f in rt.redis.xrange(k.events(run_id))]
    assert kinds == [LogKind.EVENT, LogKind.EVENT, LogKind.STOP]


def test_a_redelivered_finished_step_resends_only_what_is_not_done_yet(rt: Runtime) -> None:
    run_id = uuid.uuid4().hex
    k = rt.keys
    runs.create_run(rt, "AddTwice", run_id, Numbers(a=1, b=1))
    _, first_args, first_id = pop(rt, "itest")
    in_flight = rt.redis.hget(k.inflight(run_id), first_id)
    first = StepArgs.from_wire(first_args)
    StepTask(rt, "AddTwice", "first", first, first_id).run()
    run_tool_message(rt)
    run_step(rt)  # first is done: AddTwice.second is queued
    assert rt.redis.llen(k.queue("itest")) == 1

    StepTask(rt, "AddTwice", "first", first, first_id).run()  # a duplicate: no longer in flight
    assert rt.redis.llen(k.queue("itest")) == 1  # nothing sent twice

    # Redis lost the tail of the hop's round trip (a crash under AOF everysec): the message is
    # in flight still, and what it sent is gone; its redelivery sends it again
    rt.redis.hset(k.inflight(run_id), first_id, in_flight)
    rt.redis.rpop(k.queue("itest"))
    StepTask(rt, "AddTwice", "first", first, first_id).run()
    assert rt.redis.llen(k.queue("itest")) == 1
    run_step(rt)  # second parks on its tool call,
    run_tool_message(rt)
    run_step(rt)  # and finishes the run
    rt.redis.hset(k.inflight(run_id), first_id, in_flight)
    StepTask(rt, "AddTwice", "first", first, first_id).run()
    assert rt.redis.llen(k.queue("itest")) == 0  # second is done: nothing resent


def test_a_step_of_a_finished_run_does_nothing_and_frees_its_message(rt: Runtime) -> None:
    run_id = uuid.uuid4().hex
    runs.create_run(rt, "AddTwice", run_id, Numbers(a=1, b=1))
    runs.cancel_run(rt, run_id)
    _, args, task_id = pop(rt, "itest")
    StepTask(rt, "AddTwice", "first", StepArgs.from_wire(args), task_id).run()
    assert rt.redis.llen(rt.keys.queue("itest")) == 0
    assert rt.redis.hlen(rt.keys.inflight(run_id)) == 0
    assert rt.redis.hget(rt.keys.run(run_id), "status") == RunStatus.CANCELLED


def test_a_step_delivered_more_than_the_limit_fails_its_run_instead_of_looping(
    rt: Runtime,
) -> None:
    run_id = uuid.uuid4().hex
    runs.create_run(rt, "AddTwice", run_id, Numbers(a=1, b=1))
    _, args, task_id = pop(rt, "itest")
    rt.redis.hset(rt.keys.deliveries(run_id), task_id, MAX_DELIVERIES)  # it killed 5 workers
    StepTask(rt, "AddTwice", "first", StepArgs.from_wire(args), task_id).run()
    record = queries.require_run(rt, run_id)
    assert record.status is RunStatus.FAILED
    assert record.error is not None and "delivered 6 times" in record.error.message
    assert rt.redis.llen(rt.keys.queue("itest")) == 0  # the step did not run


def test_the_last_answer_resumes_a_step_parked_by_an_older_baton(rt: Runtime) -> None:
    run_id = uuid.uuid4().hex
    k = rt.keys
    runs.create_run(rt, "AddTwice", run_id, Numbers(a=1, b=2))
    _, first = run_step(rt)  # parks on it_add
    # a wait record as written before resumes were framed at park time (a rolling upgrade)
    rt.redis.hdel(k.wait(run_id, first.inv_id), "task", "queue", "envelope")
    run_tool_message(rt)
    name, _ = run_step(rt)  # the resume was sent all the same
    assert name == "AddTwice.first"
    assert rt.redis.hexists(k.done(run_id), first.inv_id)


def test_only_a_retried_steps_messages_carry_the_first_start_an_older_worker_cannot_take(
    rt: Runtime,
) -> None:
    run_id = uuid.uuid4().hex
    runs.create_run(rt, "ParkRetryPark", run_id, Numbers(a=1, b=2))
    sent: list[tuple[int, int]] = []  # (attempt, number of task arguments), per step message
    starts: list[float] = []

    def next_step() -> None:
        _, args, task_id = pop(rt, "itest")
        sent.append((args[3], len(args)))
        starts.extend(args[4:])
        StepTask(rt, "ParkRetryPark", "go", StepArgs.from_wire(args), task_id).run()

    next_step()  # parks on its call
    run_tool_message(rt)
    next_step()  # the resume of the first attempt: fails, and is retried
    next_step()  # the retry parks on its second call
    run_tool_message(rt)
    next_step()  # the retry's resume finishes the run
    assert sent == [(1, 4), (1, 4), (2, 5), (2, 5)]
    assert starts[0] == starts[1]  # the retry's resume goes on timing from the same start
    assert rt.redis.hget(rt.keys.run(run_id), "status") == RunStatus.COMPLETED

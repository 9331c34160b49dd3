"""``workflows.testing.WorkflowTestRunner``, used as LlamaIndex users use it in their tests."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from workflows import Context, Event, StartEvent, StepFailedError, StopEvent, Workflow, step
from workflows.testing import WorkflowTestResult, WorkflowTestRunner

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """The body of an ``async def test_...`` (no pytest-asyncio here)."""
    return asyncio.run(coro)


class Progress(Event):
    n: int


class DetailedProgress(Progress):
    detail: str


class Log(Event):
    text: str


class GreetStart(StartEvent):
    name: str


class RunnerGreeter(Workflow):
    @step
    async def greet(self, ctx: Context, ev: GreetStart) -> StopEvent:
        for n in range(2):
            ctx.write_event_to_stream(Progress(n=n))
        ctx.write_event_to_stream(DetailedProgress(n=2, detail="almost"))
        ctx.write_event_to_stream(Log(text="done"))
        return StopEvent(result=f"hello {ev.name}")


class RunnerCounter(Workflow):
    @step
    async def count(self, ctx: Context, ev: StartEvent) -> StopEvent:
        seen = await ctx.store.get("runs", default=0) + 1
        await ctx.store.set("runs", seen)
        return StopEvent(result=seen)


class RunnerBroken(Workflow):
    @step
    async def explode(self, ev: StartEvent) -> StopEvent:
        raise KeyError("missing")


def test_the_runner_collects_every_streamed_event_counts_them_and_returns_the_result() -> None:
    async def test() -> WorkflowTestResult:
        runner = WorkflowTestRunner(RunnerGreeter())
        return await runner.run(start_event=GreetStart(name="Ada"))

    test_result = run(test())
    assert test_result.collected == [
        Progress(n=0),
        Progress(n=1),
        DetailedProgress(n=2, detail="almost"),
        Log(text="done"),
        StopEvent(result="hello Ada"),
    ]
    assert test_result.event_types == {Progress: 2, DetailedProgress: 1, Log: 1, StopEvent: 1}
    assert test_result.result == "hello Ada"
    assert isinstance(test_result.ctx, Context)


def test_excluded_event_types_are_left_out_by_exact_type() -> None:
    async def test() -> WorkflowTestResult:
        runner = WorkflowTestRunner(RunnerGreeter())
        return await runner.run(
            start_event=GreetStart(name="Bo"), expose_internal=False, exclude_events=[Progress]
        )

    test_result = run(test())
    assert len(test_result.collected) == 3
    assert test_result.event_types.get(Progress, 0) == 0
    assert test_result.event_types[DetailedProgress] == 1  # a subclass is not excluded
    assert str(test_result.result) == "hello Bo"


def test_expose_internal_changes_nothing_as_baton_streams_no_internal_events() -> None:
    async def test() -> tuple[WorkflowTestResult, WorkflowTestResult]:
        runner = WorkflowTestRunner(RunnerGreeter())
        shown = await runner.run(GreetStart(name="Cy"), expose_internal=True)
        hidden = await runner.run(GreetStart(name="Cy"), expose_internal=False)
        return shown, hidden

    shown, hidden = run(test())
    assert shown.collected == hidden.collected and shown.result == hidden.result


def test_without_a_start_event_the_workflow_starts_with_its_default_one() -> None:
    async def test() -> WorkflowTestResult:
        return await WorkflowTestRunner(RunnerCounter()).run()

    test_result = run(test())
    assert test_result.result == 1
    assert test_result.collected == [StopEvent(result=1)]
    assert test_result.event_types == {StopEvent: 1}


def test_each_run_is_a_new_run_unless_given_a_context_to_carry_over() -> None:
    async def test() -> list[Any]:
        workflow = RunnerCounter()
        runner = WorkflowTestRunner(workflow)
        fresh = [(await runner.run()).result for _ in range(2)]
        ctx = Context(workflow)
        kept = [(await runner.run(ctx=ctx)).result for _ in range(2)]
        return fresh + kept

    assert run(test()) == [1, 1, 1, 2]


def test_a_failing_run_raises_the_steps_own_exception_from_the_runner() -> None:
    async def test() -> None:
        await WorkflowTestRunner(RunnerBroken()).run()

    with pytest.raises(KeyError) as info:
        run(test())
    assert info.value.args == ("missing",)
    assert isinstance(info.value, StepFailedError) and info.value.step == "RunnerBroken.explode"

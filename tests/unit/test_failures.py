"""Step retries, failures, error handlers, child failures, cancellation and run timeouts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from workflows import (
    ChildWorkflowError,
    Context,
    Event,
    Retry,
    RunCancelledError,
    StartEvent,
    StepFailedError,
    StepFailedEvent,
    StopEvent,
    Workflow,
    WorkflowTimeoutError,
    catch_error,
    step,
)

from .helpers import run_sync


class Wobbly(Workflow):
    @step(retry=Retry(max_attempts=3))
    async def wobble(self, ctx: Context, ev: StartEvent) -> StopEvent:
        if ctx.attempt < 3:
            raise ConnectionError(f"attempt {ctx.attempt} failed")
        return StopEvent(result={"attempt": ctx.attempt})


def test_step_is_retried_under_its_policy_and_succeeds() -> None:
    assert run_sync(Wobbly()) == {"attempt": 3}


class Exploding(Workflow):
    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[int] = []

    @step(retry=Retry(max_attempts=2))
    async def explode(self, ctx: Context, ev: StartEvent) -> StopEvent:
        self.attempts.append(ctx.attempt)
        raise ValueError("boom")


def test_step_failing_after_its_retries_fails_the_run_with_step_failed_error() -> None:
    wf = Exploding()
    with pytest.raises(StepFailedError) as info:
        run_sync(wf)
    err = info.value
    assert (err.step, err.cause_type, err.attempts) == ("Exploding.explode", "ValueError", 2)
    assert err.message == "step Exploding.explode failed after 2 attempt(s): ValueError: boom"
    assert isinstance(err, ValueError) and str(err) == "boom"  # the step's own, as in LlamaIndex
    assert isinstance(err.__cause__, ValueError)
    assert wf.attempts == [1, 2]


class RecoverInput(StartEvent):
    label: str


class Recovering(Workflow):
    @step(retry=Retry(max_attempts=2))
    async def explode(self, ev: RecoverInput) -> StopEvent:
        raise ValueError(f"boom {ev.label}")

    @catch_error
    async def recover(self, ev: StepFailedEvent) -> StopEvent:
        return StopEvent(
            result={
                "step": ev.step_name,
                "attempts": ev.attempts,
                "type": ev.error.type,
                "cause": ev.error.details["cause_type"],
                "message": ev.error.message,
                "input": ev.input_event,
            }
        )


def test_catch_error_handler_receives_the_step_failed_event_and_ends_the_run() -> None:
    assert run_sync(Recovering(), label="x") == {
        "step": "explode",
        "attempts": 2,
        "type": "StepFailedError",
        "cause": "ValueError",
        "message": "step Recovering.explode failed after 2 attempt(s): ValueError: boom x",
        "input": {"type": RecoverInput.type_tag, "data": {"label": "x"}},
    }


class ChildInput(StartEvent):
    why: str


class FailingChild(Workflow):
    @step
    async def explode(self, ev: ChildInput) -> StopEvent:
        raise ValueError(ev.why)


class CatchingParent(Workflow):
    @step
    async def call(self, ctx: Context, ev: StartEvent) -> StopEvent:
        try:
            await ctx.run_workflow(FailingChild, ChildInput(why="child broke"))
        except ChildWorkflowError as exc:
            assert exc.child_error is not None
            return StopEvent(
                result={
                    "workflow": exc.details["workflow"],
                    "type": exc.child_error.type,
                    "message": exc.child_error.message,
                }
            )
        return StopEvent(result="unreachable")


class UncaughtParent(Workflow):
    @step
    async def call(self, ctx: Context, ev: StartEvent) -> StopEvent:
        return StopEvent(result=await ctx.run_workflow(FailingChild, ChildInput(why="oops")))


def test_child_failure_raises_child_workflow_error_carrying_the_childs_error() -> None:
    assert run_sync(CatchingParent()) == {
        "workflow": "FailingChild",
        "type": "StepFailedError",
        "message": "step FailingChild.explode failed after 1 attempt(s): ValueError: child broke",
    }


def test_uncaught_child_failure_fails_the_parent_step() -> None:
    with pytest.raises(StepFailedError) as info:
        run_sync(UncaughtParent())
    assert info.value.cause_type == "ChildWorkflowError"
    assert isinstance(info.value.__cause__, ChildWorkflowError)


class Released(Event):
    pass


class Blocking(Workflow):
    """``block`` waits on a gate the test controls; ``after`` runs once ``block`` is released."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.started = asyncio.Event()
        self.gate = asyncio.Event()
        self.after_started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.log: list[str] = []

    @step
    async def block(self, ev: StartEvent) -> Released:
        self.started.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.log.append("block cancelled")
            self.stopped.set()
            raise
        self.log.append("block released")
        return Released()

    @step
    async def after(self, ev: Released) -> StopEvent:
        self.log.append("after started")
        self.after_started.set()
        return StopEvent(result="finished")


def test_cancel_stops_the_running_step_and_no_further_step_starts() -> None:
    async def scenario() -> list[str]:
        wf = Blocking()
        handler = wf.run()
        await wf.started.wait()
        await handler.cancel_run()
        with pytest.raises(RunCancelledError):
            await handler
        await asyncio.wait_for(wf.stopped.wait(), 5)
        wf.gate.set()  # too late: the step body was cancelled, not left running
        await handler.send_event(Released())  # would start `after` in a live run
        with pytest.raises(TimeoutError):  # proving an absence needs a bound; a live run
            await asyncio.wait_for(wf.after_started.wait(), 0.2)  # starts `after` at once
        return list(wf.log)

    assert asyncio.run(scenario()) == ["block cancelled"]


def test_blocking_workflow_finishes_when_released() -> None:
    async def scenario() -> tuple[Any, list[str]]:
        wf = Blocking()
        handler = wf.run()
        await wf.started.wait()
        wf.gate.set()
        return await handler, wf.log

    assert asyncio.run(scenario()) == ("finished", ["block released", "after started"])


def test_run_past_its_timeout_fails_with_workflow_timeout_error_and_stops_its_steps() -> None:
    async def scenario() -> list[str]:
        wf = Blocking(timeout=0.2)
        began = time.monotonic()
        with pytest.raises(WorkflowTimeoutError, match=r"timed out after 0\.2s"):
            await wf.run()
        assert time.monotonic() - began < 2.0
        await asyncio.wait_for(wf.stopped.wait(), 5)
        return list(wf.log)

    assert asyncio.run(scenario()) == ["block cancelled"]

"""Sync (``def``) steps, as LlamaIndex users write them: run on a worker thread, never on the
event loop, with the Context's sync methods (send, stream, collect) forwarded to the loop."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

import pytest

from tests.unit.helpers import run_sync, scratch_registry
from workflows import (
    Context,
    Event,
    Retry,
    StartEvent,
    StepFailedError,
    StopEvent,
    Workflow,
    WorkflowTimeoutError,
    WorkflowValidationError,
    step,
)
from workflows.resource import Resource


class Progress(Event):
    n: int


class Part(Event):
    n: int


class Done(Event):
    thread: str


class SyncChunked(Workflow):
    """Sync steps that fan out, stream and fan in, next to an async one."""

    @step
    def split(self, ctx: Context, ev: StartEvent) -> Part | None:
        for n in range(3):
            ctx.write_event_to_stream(Progress(n=n))
            ctx.send_event(Part(n=n))
        return None

    @step
    def work(self, ev: Part) -> Done:
        return Done(thread=threading.current_thread().name)

    @step
    def join(self, ctx: Context, ev: Done) -> StopEvent | None:
        got = ctx.collect_events(ev, [Done] * 3)
        if got is None:
            return None
        return StopEvent(result=sorted({d.thread for d in got if isinstance(d, Done)}))


def test_sync_steps_run_on_worker_threads_and_can_send_stream_and_collect() -> None:
    async def go() -> tuple[list[int], Any, str]:
        handler = SyncChunked().run()
        streamed = [ev.n async for ev in handler.stream_events() if isinstance(ev, Progress)]
        return streamed, await handler, threading.current_thread().name

    streamed, threads, loop_thread = asyncio.run(go())
    assert streamed == [0, 1, 2]  # in the order the step wrote them
    assert loop_thread not in threads


GATE = threading.Event()


class Left(Event):
    pass


class Right(Event):
    pass


class Opened(Event):
    by: str


class SyncGate(Workflow):
    """``wait`` blocks its thread until the async ``open`` runs: on the loop, it could not."""

    @step
    async def start(self, ctx: Context, ev: StartEvent) -> Left | Right | None:
        ctx.send_event(Left())
        ctx.send_event(Right())
        return None

    @step
    def wait(self, ev: Left) -> Opened:
        return Opened(by="wait" if GATE.wait(timeout=5) else "timeout")

    @step
    async def open(self, ev: Right) -> Opened:
        await asyncio.sleep(0.05)
        GATE.set()
        return Opened(by="open")

    @step
    async def end(self, ctx: Context, ev: Opened) -> StopEvent | None:
        got = ctx.collect_events(ev, [Opened, Opened])
        return (
            None
            if got is None
            else StopEvent(result=sorted(o.by for o in got if isinstance(o, Opened)))
        )


def test_a_blocking_sync_step_leaves_the_loop_free_for_other_steps() -> None:
    assert run_sync(SyncGate()) == ["open", "wait"]


class SyncWobbly(Workflow):
    @step(retry=Retry(max_attempts=3))
    def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
        ctx.write_event_to_stream(Progress(n=ctx.attempt))
        if ctx.attempt < 3:
            raise ConnectionError(f"attempt {ctx.attempt}")
        return StopEvent(result=ctx.attempt)


def test_a_sync_step_is_retried_and_its_effects_apply_once() -> None:
    async def go() -> tuple[list[int], Any]:
        handler = SyncWobbly().run()
        streamed = [ev.n async for ev in handler.stream_events() if isinstance(ev, Progress)]
        return streamed, await handler

    streamed, result = asyncio.run(go())
    assert result == 3
    # the first write of every attempt is the same effect (path "", number 0): applied once
    assert streamed == [1]


LATE: list[str] = []


class SyncSlow(Workflow):
    @step(timeout=0.1)
    def go(self, ctx: Context, ev: StartEvent) -> StopEvent | Progress:
        time.sleep(0.4)
        try:
            ctx.send_event(Progress(n=1))
            LATE.append("sent")
        except asyncio.CancelledError as exc:
            LATE.append(str(exc))
        return StopEvent(result="late")

    @step
    async def never(self, ev: Progress) -> StopEvent:
        return StopEvent(result="the late event got through")


def test_a_sync_step_past_its_timeout_fails_and_its_thread_is_cut_off_from_the_run() -> None:
    with pytest.raises(StepFailedError) as info:
        run_sync(SyncSlow())
    assert isinstance(info.value.__cause__, WorkflowTimeoutError)
    # asyncio.run waited for the thread, which ran on: its Context call was refused
    assert LATE == [
        "step SyncSlow.go has ended (timed out, or its run ended or was cancelled): its sync body "
        "can no longer reach the run"
    ]


class SyncReadsStore(Workflow):
    @step(retry=Retry(max_attempts=3))
    def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
        return StopEvent(result=ctx.store.get("x"))


class SyncCallsTool(Workflow):
    @step
    def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
        return StopEvent(result=ctx.call_tool("search", query="x"))


@pytest.mark.parametrize(
    ("workflow", "what"), [(SyncReadsStore, "ctx.store"), (SyncCallsTool, "ctx.call_tool()")]
)
def test_an_async_context_method_in_a_sync_step_fails_it_at_once_saying_why(
    workflow: type[Workflow], what: str
) -> None:
    with pytest.raises(StepFailedError) as info:
        run_sync(workflow())
    assert info.value.attempts == 1  # a definition mistake: not retried
    assert (
        f"{workflow.name}.go is a sync step: it cannot await {what}; make it `async def` "
        "(a sync step has the Context's sync methods: send_event, write_event_to_stream, "
        "collect_events, ...)" in str(info.value)
    )


class SyncRetryInfo(Workflow):
    @step(retry=Retry(max_attempts=2))
    def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
        if ctx.attempt == 1:
            raise ConnectionError("once")
        return StopEvent(result=[ctx.retry_info().retry_number, ctx.run_id == ev.get("id")])


def test_a_sync_step_has_the_contexts_other_sync_members() -> None:
    assert run_sync(SyncRetryInfo(), id="r1", run_id="r1") == [1, True]


def counter() -> list[str]:
    return []


class SyncWithResource(Workflow):
    @step
    def go(
        self, ctx: Context, ev: StartEvent, seen: Annotated[list[str], Resource(counter)]
    ) -> StopEvent:
        seen.append(ctx.run_id)
        return StopEvent(result=len(seen))


def test_a_sync_step_takes_resources_built_on_the_loop() -> None:
    async def two_runs() -> list[Any]:  # on one loop: they share the cached resource
        return [await SyncWithResource().run(), await SyncWithResource().run()]

    assert asyncio.run(two_runs()) == [1, 2]


def logged(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A sync decorator around an async step (it returns the coroutine)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


class SyncDecorated(Workflow):
    @step
    @logged
    async def go(self, ev: StartEvent) -> StopEvent:
        await asyncio.sleep(0)
        return StopEvent(result=threading.current_thread() is threading.main_thread())


def test_an_async_step_under_a_sync_decorator_still_runs_on_the_loop() -> None:
    assert run_sync(SyncDecorated()) is True


def test_a_generator_step_is_rejected_with_the_class() -> None:
    with scratch_registry(), pytest.raises(WorkflowValidationError) as info:

        class Generator(Workflow):
            @step
            def go(self, ev: StartEvent) -> Any:
                yield StopEvent()

    assert info.value.problems == [
        "Generator.go: a step cannot be a generator; return its event(s)"
    ]

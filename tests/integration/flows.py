"""Workflows and tools used by the integration tests (imported by the test workers too)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from workflows import (
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    Retry,
    StartEvent,
    StopEvent,
    ToolContext,
    ToolError,
    Workflow,
    step,
    tool,
)


def _effects_dir() -> Path:
    path = Path(os.environ.get("BATON_TEST_DIR", "/tmp")) / "effects"
    path.mkdir(parents=True, exist_ok=True)
    return path


@tool(queue="itest")
def it_add(a: int, b: int) -> int:
    return a + b


@tool(queue="itest")
def it_record(label: str, ctx: ToolContext) -> str:
    """Records one line per execution, keyed by the call's idempotency key."""
    with (_effects_dir() / f"{label}.log").open("a") as fh:
        fh.write(f"{ctx.call_id} {ctx.attempt}\n")
    return ctx.call_id


@tool(queue="itest", timeout=1.0)
def it_sleep(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


@tool(queue="itest", retry=Retry(max_attempts=3))
def it_flaky(label: str, ctx: ToolContext) -> int:
    """Fails on attempts 1 and 2, succeeds on attempt 3."""
    with (_effects_dir() / f"{label}.flaky").open("a") as fh:
        fh.write(f"{ctx.call_id} {ctx.attempt}\n")
    if ctx.attempt < 3:
        raise ConnectionError(f"attempt {ctx.attempt} failed")
    return ctx.attempt


@tool(queue="itest", retry=Retry(max_attempts=2))
def it_broken() -> None:
    raise ValueError("always broken")


class Numbers(StartEvent):
    a: int
    b: int


class Summed(Event):
    total: int


class AddTwice(Workflow):
    queue = "itest"

    @step
    async def first(self, ctx: Context, ev: Numbers) -> Summed:
        return Summed(total=await ctx.call_tool("it_add", a=ev.a, b=ev.b))

    @step
    async def second(self, ctx: Context, ev: Summed) -> StopEvent:
        return StopEvent(result=await ctx.call_tool("it_add", a=ev.total, b=ev.total))


class RecordStart(StartEvent):
    label: str
    calls: int = 3


class Recorder(Workflow):
    """Several tool calls in sequence and in parallel, each recording its execution."""

    queue = "itest"

    @step
    async def run(self, ctx: Context, ev: RecordStart) -> StopEvent:
        ids = [await ctx.call_tool("it_record", label=ev.label)]
        ids += await asyncio.gather(
            *[ctx.call_tool("it_record", label=ev.label) for _ in range(ev.calls - 1)]
        )
        return StopEvent(result=ids)


class Label(StartEvent):
    label: str = "x"
    seconds: float = 0.0


class ToolFailures(Workflow):
    queue = "itest"

    @step
    async def run(self, ctx: Context, ev: Label) -> StopEvent:
        out: dict[str, Any] = {}
        for name, kwargs in [("it_flaky", {"label": ev.label}), ("it_broken", {}),
                             ("it_sleep", {"seconds": ev.seconds})]:
            try:
                out[name] = {"ok": await ctx.call_tool(name, **kwargs)}
            except ToolError as exc:
                out[name] = {"type": exc.type, "attempts": exc.attempts, "message": exc.message}
        return StopEvent(result=out)


class Ask(InputRequiredEvent):
    question: str


class Answer(HumanResponseEvent):
    approved: bool


class Approve(Workflow):
    queue = "itest"

    @step
    async def ask(self, ctx: Context, ev: Label) -> StopEvent:
        answer = await ctx.wait_for_event(Answer, waiter_event=Ask(question=f"ok {ev.label}?"))
        return StopEvent(result={"label": ev.label, "approved": answer.approved})


class ApproveParent(Workflow):
    queue = "itest"

    @step
    async def delegate(self, ctx: Context, ev: Label) -> StopEvent:
        inner = await ctx.run_workflow(Approve, Label(label=ev.label), mode="distributed")
        return StopEvent(result={"child": inner})


class Item(Event):
    i: int


class Doubled(Event):
    i: int


class Width(StartEvent):
    n: int


class FanIn(Workflow):
    queue = "itest"

    @step
    async def fan(self, ctx: Context, ev: Width) -> Item | None:
        await ctx.store.set("n", ev.n)
        for i in range(ev.n):
            ctx.send_event(Item(i=i))
        return None

    @step(num_workers=8)
    async def work(self, ev: Item) -> Doubled:
        return Doubled(i=ev.i * 2)

    @step
    async def collect(self, ctx: Context, ev: Doubled) -> StopEvent | None:
        got = ctx.collect_events(ev, [Doubled] * await ctx.store.get("n"))
        if got is None:
            return None
        await ctx.store.set("collected", await ctx.store.get("collected", 0) + 1)
        return StopEvent(result=sorted(e.i for e in got))


class Slow(StartEvent):
    seconds: float


class SlowStep(Workflow):
    queue = "itest"

    @step
    async def wait(self, ev: Slow) -> Item:
        await asyncio.sleep(ev.seconds)
        return Item(i=1)

    @step
    async def end(self, ev: Item) -> StopEvent:
        return StopEvent(result=ev.i)

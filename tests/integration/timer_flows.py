"""Workflows of the durable-timer tests (``test_timers``) and ``benchmarks.bench_timers``,
imported by their workers; on a queue of their own, so no other worker takes them."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from workflows import Context, Retry, StartEvent, StopEvent, ToolContext, Workflow, step, tool

QUEUE = "timers"


def _effects_dir() -> Path:
    path = Path(os.environ.get("BATON_TEST_DIR", "/tmp")) / "timer_effects"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _append(name: str, line: str) -> None:
    with (_effects_dir() / name).open("a") as fh:
        fh.write(line + "\n")


class NapStart(StartEvent):
    label: str = ""
    seconds: float = 2.0


class Nap(Workflow):
    """Sleeps ``seconds``; answers when it began sleeping and when it woke (its own clock),
    and records each wake-up under ``label``."""

    queue = QUEUE

    @step
    async def nap(self, ctx: Context, ev: NapStart) -> StopEvent:
        if await ctx.store.get("t0", default=None) is None:  # journaled: a replay skips it
            await ctx.store.set("t0", time.time())
        await ctx.sleep(ev.seconds)
        woke = time.time()
        t0 = await ctx.store.get("t0")  # first read after the sleep: on the resume
        if ev.label:
            _append(f"{ev.label}.woke", f"{woke}")
        return StopEvent(result={"t0": t0, "woke": woke})


class QuickStart(StartEvent):
    pass


class Quick(Workflow):
    queue = QUEUE

    @step
    async def go(self, ctx: Context, ev: QuickStart) -> StopEvent:
        return StopEvent(result=time.time())


class FlakyStart(StartEvent):
    label: str


class Flaky(Workflow):
    """Fails its first attempt; the retry waits 3 s (in the timer set)."""

    queue = QUEUE

    @step(retry=Retry(max_attempts=2, delay=3.0))
    async def once(self, ctx: Context, ev: FlakyStart) -> StopEvent:
        _append(f"{ev.label}.attempts", f"{ctx.attempt} {time.time()}")
        if ctx.attempt == 1:
            raise ConnectionError("flaky: the first attempt fails")
        return StopEvent(result=ctx.attempt)


@tool(queue=QUEUE)
def timer_record(label: str, ctx: ToolContext) -> str:
    """Records one line per execution."""
    _append(f"{label}.tool", ctx.call_id)
    return label


class BothStart(StartEvent):
    label: str


class SleepAndCall(Workflow):
    """Sleeps 1 s and calls a tool at once: resumes when both are in, the tool run once."""

    queue = QUEUE

    @step
    async def both(self, ctx: Context, ev: BothStart) -> StopEvent:
        began = time.time()
        _, got = await asyncio.gather(ctx.sleep(1.0), ctx.call_tool("timer_record", label=ev.label))
        _append(f"{ev.label}.woke", f"{time.time() - began}")
        return StopEvent(result=got)

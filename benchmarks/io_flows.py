"""Workflows and tools of the IO benchmark (``benchmarks.bench_io``), imported by its workers.

Everything waits with ``await asyncio.sleep``: a stand-in for an LLM or HTTP call, IO-bound work
that an ``asyncio`` worker keeps in flight by the hundred on one event loop. Steps run on queue
``io``, the tool on ``io_tools``; each benchmark side uses a key prefix of its own, so its
queues are its own too.
"""

from __future__ import annotations

import asyncio

from workflows import Context, Event, StartEvent, StopEvent, Workflow, step, tool

STEP_QUEUE = "io"
TOOL_QUEUE = "io_tools"


@tool(queue=TOOL_QUEUE)
async def io_llm(i: int, seconds: float) -> int:
    """An LLM call stand-in: waits ``seconds``, returns its argument."""
    await asyncio.sleep(seconds)
    return i


class IoFanStart(StartEvent):
    calls: int
    seconds: float


class IoFanOut(Workflow):
    """One run, one step, ``calls`` tool calls awaited together (one tool task each)."""

    queue = STEP_QUEUE

    @step
    async def fan(self, ctx: Context, ev: IoFanStart) -> StopEvent:
        got = await asyncio.gather(
            *[ctx.call_tool("io_llm", i=i, seconds=ev.seconds) for i in range(ev.calls)]
        )
        return StopEvent(result=sum(got))


class IoWaitStart(StartEvent):
    seconds: float


class IoOneStep(Workflow):
    """A one-step run whose step itself awaits ``seconds``."""

    queue = STEP_QUEUE

    @step
    async def wait(self, ev: IoWaitStart) -> StopEvent:
        await asyncio.sleep(ev.seconds)
        return StopEvent(result=1)


class IoFirstDone(Event):
    seconds: float


class IoSecondDone(Event):
    seconds: float


class IoThreeSteps(Workflow):
    """Three chained steps, each awaiting ``seconds``: three step tasks per run."""

    queue = STEP_QUEUE

    @step
    async def first(self, ev: IoWaitStart) -> IoFirstDone:
        await asyncio.sleep(ev.seconds)
        return IoFirstDone(seconds=ev.seconds)

    @step
    async def second(self, ev: IoFirstDone) -> IoSecondDone:
        await asyncio.sleep(ev.seconds)
        return IoSecondDone(seconds=ev.seconds)

    @step
    async def third(self, ev: IoSecondDone) -> StopEvent:
        await asyncio.sleep(ev.seconds)
        return StopEvent(result=3)

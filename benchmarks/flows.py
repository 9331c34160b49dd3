"""Workflows and tools the distributed benchmark runs (imported by its workers)."""

from __future__ import annotations

import asyncio

from workflows import Context, Event, StartEvent, StopEvent, Workflow, step, tool


@tool(queue="bench")
def bench_noop(i: int) -> int:
    return i


class HopStart(StartEvent):
    n: int


class Hop(Event):
    i: int
    n: int


class BenchChain(Workflow):
    """n sequential step hops: the cost of one step task, end to end."""

    queue = "bench"

    @step
    async def begin(self, ev: HopStart) -> Hop:
        return Hop(i=1, n=ev.n)

    @step
    async def hop(self, ev: Hop) -> Hop | StopEvent:
        if ev.i + 1 >= ev.n:
            return StopEvent(result=ev.i + 1)
        return Hop(i=ev.i + 1, n=ev.n)


class FanStart(StartEvent):
    width: int


class BenchFanOut(Workflow):
    """One step calling a tool ``width`` times in parallel: a group of tool tasks + one resume."""

    queue = "bench"

    @step
    async def fan(self, ctx: Context, ev: FanStart) -> StopEvent:
        got = await asyncio.gather(*[ctx.call_tool("bench_noop", i=i) for i in range(ev.width)])
        return StopEvent(result=sum(got))


class TickStart(StartEvent):
    ticks: int


class Tick(Event):
    i: int
    n: int


class BenchTicks(Workflow):
    """Streams one event per step hop, ``ticks`` hops long: what the HTTP benchmark's event
    readers read (events arrive over time, as an agent's progress does)."""

    queue = "bench"

    @step
    async def begin(self, ev: TickStart) -> Tick:
        return Tick(i=0, n=ev.ticks)

    @step
    async def tick(self, ctx: Context, ev: Tick) -> Tick | StopEvent:
        ctx.write_event_to_stream(ev)
        if ev.i + 1 >= ev.n:
            return StopEvent(result=ev.n)
        return Tick(i=ev.i + 1, n=ev.n)

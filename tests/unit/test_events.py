"""Routing of events: fan-out, batches, fan-in, concurrency limits, the stream and the store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from workflows import Context, Event, StartEvent, StopEvent, Workflow, WorkflowRuntimeError, step
from workflows._engine.core import collect_match

from .helpers import run_sync


class Part(Event):
    i: int


class BatchInput(StartEvent):
    n: int


class BatchFan(Workflow):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[int]] = []

    @step
    async def split(self, ev: BatchInput) -> list[Part]:
        return [Part(i=i) for i in range(ev.n)]

    @step
    async def join(self, parts: list[Part]) -> StopEvent:
        self.batches.append([p.i for p in parts])
        return StopEvent(result=sum(p.i for p in parts))


def test_a_returned_list_reaches_a_list_step_as_one_batch() -> None:
    wf = BatchFan()
    assert run_sync(wf, n=5) == 10
    assert wf.batches == [[0, 1, 2, 3, 4]]


class Job(Event):
    i: int


class JobDone(Event):
    i: int
    doubled: int


class FanInput(StartEvent):
    n: int


class FanOutIn(Workflow):
    def __init__(self) -> None:
        super().__init__()
        self.collect_calls: list[bool] = []

    @step
    async def start(self, ctx: Context, ev: FanInput) -> Job | None:
        await ctx.store.set("n", ev.n)
        for i in range(ev.n):
            ctx.send_event(Job(i=i))
        return None

    @step(num_workers=8)
    async def work(self, ev: Job) -> JobDone:
        return JobDone(i=ev.i, doubled=ev.i * 2)

    @step
    async def gather(self, ctx: Context, ev: JobDone) -> StopEvent | None:
        got = ctx.collect_events(ev, [JobDone] * await ctx.store.get("n"))
        self.collect_calls.append(got is not None)
        if got is None:
            return None
        done = sorted((e for e in got if isinstance(e, JobDone)), key=lambda e: e.i)
        return StopEvent(result=[e.doubled for e in done])


def test_collect_events_returns_the_full_set_to_exactly_one_invocation() -> None:
    wf = FanOutIn()
    assert run_sync(wf, n=6) == [0, 2, 4, 6, 8, 10]
    assert wf.collect_calls == [False] * 5 + [True]


class Left(Event):
    pass


class Right(Event):
    pass


class MixedFanIn(Workflow):
    @step
    async def start(self, ctx: Context, ev: StartEvent) -> Left | Right | None:
        for event in (Right(), Right(), Right(), Left()):
            ctx.send_event(event)
        return None

    @step
    async def both(self, ctx: Context, ev: Left | Right) -> StopEvent | None:
        got = ctx.collect_events(ev, [Left, Right, Right])
        if got is None:
            return None
        return StopEvent(result=[type(e).__name__ for e in got])


def test_collect_events_waits_for_every_expected_type_and_orders_them_as_expected() -> None:
    assert run_sync(MixedFanIn()) == ["Left", "Right", "Right"]


class Task(Event):
    i: int


class Limited(Workflow):
    """``work`` counts how many of its invocations run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.active = 0
        self.peak = 0

    @step
    async def start(self, ctx: Context, ev: StartEvent) -> Task | None:
        for i in range(12):
            ctx.send_event(Task(i=i))
        return None

    @step(num_workers=3)
    async def work(self, ev: Task) -> StopEvent | None:
        self.active += 1
        self.peak = max(self.peak, self.active)
        for _ in range(5):  # yield to the loop so that every admitted invocation enters
            await asyncio.sleep(0)
        self.active -= 1
        return StopEvent(result=self.peak) if ev.i == 11 else None


def test_num_workers_caps_how_many_invocations_of_a_step_run_at_once() -> None:
    wf = Limited()
    run_sync(wf)
    assert wf.peak == 3


class Note(Event):
    n: int


class Streaming(Workflow):
    @step
    async def talk(self, ctx: Context, ev: StartEvent) -> StopEvent:
        for n in range(3):
            ctx.write_event_to_stream(Note(n=n))
        return StopEvent(result="said 3")


def test_stream_events_yields_streamed_events_then_the_stop_event() -> None:
    async def scenario() -> tuple[list[Event], Any]:
        handler = Streaming().run()
        return [e async for e in handler.stream_events()], await handler

    stream, result = asyncio.run(scenario())
    assert result == "said 3"
    assert stream == [Note(n=0), Note(n=1), Note(n=2), StopEvent(result="said 3")]


class StoreUser(Workflow):
    @step
    async def use(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("user.name", "ada")
        await ctx.store.set("user.address.city", "London")
        await ctx.store.set("count", 1)
        try:
            await ctx.store.get("user.email")
            missing = "no error"
        except ValueError as exc:
            missing = str(exc)
        return StopEvent(
            result={
                "user": await ctx.store.get("user"),
                "city": await ctx.store.get("user.address.city"),
                "count": await ctx.store.get("count"),
                "default": await ctx.store.get("nothing.here", default="fallback"),
                "missing": missing,
            }
        )


def test_store_reads_and_writes_dotted_paths_and_a_missing_key_raises_value_error() -> None:
    assert run_sync(StoreUser()) == {
        "user": {"name": "ada", "address": {"city": "London"}},
        "city": "London",
        "count": 1,
        "default": "fallback",
        "missing": "no value in the store at 'user.email'",
    }


def test_stream_events_called_again_after_the_end_raises_workflow_runtime_error() -> None:
    async def scenario() -> int:
        handler = Streaming().run()
        first = [e async for e in handler.stream_events()]
        await handler
        with pytest.raises(WorkflowRuntimeError, match="already been consumed"):
            await asyncio.wait_for(_drain(handler.stream_events()), 5)
        return len(first)

    assert asyncio.run(scenario()) == 4


async def _drain(stream: Any) -> list[Event]:
    return [e async for e in stream]


def test_fan_in_takes_the_earliest_buffered_event_of_each_expected_type_in_expected_order() -> None:
    buffer = ["B", "A", "B", "C", "A"]
    assert collect_match(buffer, ["A", "B", "A"]) == [1, 0, 4]
    assert collect_match(buffer, ["C", "B", "B"]) == [3, 0, 2]
    assert collect_match(buffer, ["A", "A", "A"]) is None
    assert collect_match(buffer[:2], ["A", "B", "C"]) is None
    assert collect_match([], []) == []

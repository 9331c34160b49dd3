"""``ctx.sleep`` in-process: an asyncio sleep journaled with its wake-up time, so a replay
(a step restored from a snapshot) sleeps only what is left, and a finished sleep not at all."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tasks.protocol import TimerAnswer, TimerEntry, parse_timer
from workflows import Context, StartEvent, StopEvent, Workflow, step
from workflows._engine.backend import Invocation
from workflows._engine.records import JournalEntry
from workflows.errors import PayloadError


class SleepStart(StartEvent):
    seconds: float


class Sleepy(Workflow):
    @step
    async def nap(self, ctx: Context, ev: SleepStart) -> StopEvent:
        began = time.monotonic()
        await ctx.sleep(ev.seconds)
        return StopEvent(result=time.monotonic() - began)


class FakeBackend:
    """Records the sleeps a Context asks of its runtime (journaled as MemoryBackend does)."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    async def sleep(self, inv: Invocation, call_id: str, seconds: float) -> None:
        inv.journal[call_id] = JournalEntry.ok(time.time() + seconds)
        self.slept.append(seconds)


def _ctx(inv: Invocation, backend: Any) -> Context[Any]:
    return Context(backend, inv)


def test_an_in_process_run_sleeps() -> None:
    async def run() -> float:
        slept: float = await Sleepy().run(seconds=0.2)
        return slept

    assert asyncio.run(run()) >= 0.2


def test_a_sleep_is_journaled_with_its_wake_up_time_before_it_sleeps() -> None:
    inv, backend = Invocation("i1", "nap", SleepStart(seconds=5)), FakeBackend()
    before = time.time()
    asyncio.run(_ctx(inv, backend).sleep(5))
    assert backend.slept == [5.0]
    due = inv.journal["i1.1"].value
    assert before + 5 <= due <= time.time() + 5


def test_a_replay_sleeps_only_what_is_left() -> None:
    inv, backend = Invocation("i1", "nap", SleepStart(seconds=60)), FakeBackend()
    inv.journal["i1.1"] = JournalEntry.ok(time.time() + 0.3)  # slept 59.7 s before the snapshot

    async def replay() -> float:
        began = time.monotonic()
        await _ctx(inv, backend).sleep(60)
        return time.monotonic() - began

    took = asyncio.run(replay())
    assert 0.25 <= took < 5
    assert backend.slept == []  # not asked to sleep again


def test_a_finished_sleep_replays_at_once() -> None:
    for value in (time.time() - 10, None):  # in-process past wake-up; a distributed answer
        inv, backend = Invocation("i1", "nap", SleepStart(seconds=60)), FakeBackend()
        inv.journal["i1.1"] = JournalEntry.ok(value)
        began = time.monotonic()
        asyncio.run(_ctx(inv, backend).sleep(60))
        assert time.monotonic() - began < 1 and backend.slept == []


def test_sleep_refuses_what_is_not_a_duration() -> None:
    inv, backend = Invocation("i1", "nap", SleepStart(seconds=1)), FakeBackend()
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"ctx\.sleep"):
            asyncio.run(_ctx(inv, backend).sleep(bad))
    asyncio.run(_ctx(inv, backend).sleep(0))  # nothing to wait for: no timer
    assert backend.slept == []


def test_timer_entry_wire_format() -> None:
    entry = TimerEntry("baton:q:timers", '{"body":"x"}')
    assert entry.dump() == 'baton:q:timers\n{"body":"x"}'
    assert parse_timer(entry.dump()) == entry
    answer = TimerAnswer("b:run:r:j:i", "b:run:r:w:i", "b:run:r:inflight", "i.1", '{"ok":null}')
    assert answer.dump() == (
        '\t["b:run:r:j:i","b:run:r:w:i","b:run:r:inflight","i.1","{\\"ok\\":null}"]'
    )
    assert parse_timer(answer.dump()) == answer
    for bad in ("no newline", "\t[1, 2]", "\tnot json"):
        with pytest.raises(PayloadError):
            parse_timer(bad)

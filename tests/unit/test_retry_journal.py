"""What a retried step keeps of its failed attempt: completed calls before anything it must do
again; it reads the store afresh, applies its writes again, and never gets one call's answer
for another."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from workflows import Context, Event, Retry, StartEvent, StopEvent, ToolError, Workflow, step, tool
from workflows._engine import memory

CALLS = {"a": 0, "charge": 0, "flaky": 0}


@tool()
def rj_tool_a() -> str:
    CALLS["a"] += 1
    if CALLS["a"] == 1:
        raise ValueError("boom")
    return "a-ok"


@tool()
def rj_charge(amount: int) -> str:
    CALLS["charge"] += 1
    return f"charged {amount}"


@tool()
def rj_flaky() -> str:
    CALLS["flaky"] += 1
    if CALLS["flaky"] == 1:
        raise ValueError("boom")
    return "ok"


class CatchReadRaise(Workflow):
    @step(retry=Retry(max_attempts=3))
    async def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
        try:
            a = await ctx.call_tool("rj_tool_a")
        except ToolError:
            failures = await ctx.store.get("failures", 0)
            raise RuntimeError(f"retry me {failures}") from None
        charged = await ctx.call_tool("rj_charge", amount=10)
        return StopEvent(result=(a, charged))


def test_a_retry_that_takes_another_path_never_gets_another_calls_answer() -> None:
    CALLS.update(a=0, charge=0)
    assert asyncio.run(_run(CatchReadRaise())) == ("a-ok", "charged 10")
    assert CALLS == {**CALLS, "a": 2, "charge": 1}


class WriteOnFailure(Workflow):
    @step(retry=Retry(max_attempts=3))
    async def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
        try:
            value = await ctx.call_tool("rj_flaky")
        except ToolError:
            await ctx.store.set("last_error", "boom")
            raise RuntimeError("retry me") from None
        await ctx.store.set("result", value)
        return StopEvent(result=await ctx.store.get("result", "MISSING"))


def test_a_retry_applies_its_own_store_writes() -> None:
    CALLS.update(flaky=0)
    assert asyncio.run(_run(WriteOnFailure())) == "ok"


class Go(Event):
    pass


class Ready(Event):
    pass


class Poll(Workflow):
    @step
    async def start(self, ctx: Context, ev: StartEvent) -> Go | Ready:
        ctx.send_event(Go())
        await asyncio.sleep(0.05)
        await ctx.store.set("ready", True)
        return Ready()

    @step(retry=Retry(max_attempts=20, delay=0.02, backoff=1.0))
    async def poll(self, ctx: Context, ev: Go) -> StopEvent:
        if not await ctx.store.get("ready", False):
            raise RuntimeError("not ready yet")
        return StopEvent(result=ctx.attempt > 1)

    @step
    async def sink(self, ev: Ready) -> None:
        return None


def test_a_retry_reads_the_store_as_it_is_now() -> None:
    assert asyncio.run(_run(Poll())) is True


class Place(Workflow):
    @step(retry=Retry(max_attempts=3))
    async def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("order", "placed")
        return StopEvent(result=await ctx.store.get("order", "MISSING"))


def test_a_write_that_failed_is_not_skipped_by_the_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    real = memory.MemoryBackend.store_set
    blips = [ConnectionError("store blip")]

    async def flaky_set(self: memory.MemoryBackend, key: str, value: Any) -> None:
        if blips:
            raise blips.pop()
        await real(self, key, value)

    monkeypatch.setattr(memory.MemoryBackend, "store_set", flaky_set)
    assert asyncio.run(_run(Place())) == "placed"


async def _run(flow: Workflow) -> Any:
    return await flow.run()

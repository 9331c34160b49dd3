"""Workflows with memory and typed state, written as llama-index-workflows users write them
(imported by the test workers too, so both runtimes run the same classes)."""

from __future__ import annotations

import asyncio
from datetime import datetime

from pydantic import BaseModel, Field

from workflows import Context, Event, StartEvent, StopEvent, Workflow, step, tool


class ChatTurn(BaseModel):
    role: str
    text: str
    at: datetime | None = None


class Reply(BaseModel):
    text: str
    turns: int


class ChatStart(StartEvent):
    message: str


class ChatMemory(Workflow):
    """Appends each message to a history kept in the store across runs."""

    @step
    async def chat(self, ctx: Context, ev: ChatStart) -> StopEvent:
        history: list[ChatTurn] = await ctx.store.get("history", default=[])
        history.append(ChatTurn(role="user", text=ev.message, at=datetime(2026, 12, 6, 9)))
        reply = f"echo {ev.message} ({len(history)} turns)"
        history.append(ChatTurn(role="assistant", text=reply))
        await ctx.store.set("history", history)
        await ctx.store.set("shape", (len(history), "turns"))
        return StopEvent(result=Reply(text=reply, turns=len(history)))


class Counters(BaseModel):
    width: int = 0
    count: int = 0
    seen: list[str] = Field(default_factory=list)
    last: ChatTurn | None = None


class Tick(Event):
    label: str


class Ticked(Event):
    label: str


@tool(queue="itest")
def mf_echo(text: str) -> str:
    return text


class Concurrent(Workflow):
    """``width`` steps at once each add one to a typed counter inside ``edit_state``, with an
    await in the block so their edits overlap; then a tool call replays each step."""

    @step
    async def fan(self, ctx: Context[Counters], ev: StartEvent) -> Tick | None:
        width = int(ev.get("width", 10))
        await ctx.store.set("width", width)
        for i in range(width):
            ctx.send_event(Tick(label=f"t{i}"))
        return None

    @step(num_workers=50)
    async def tick(self, ctx: Context[Counters], ev: Tick) -> Ticked:
        async with ctx.store.edit_state() as state:
            count = state.count
            await asyncio.sleep(0.01)  # another edit may want in now: it must wait
            state.count = count + 1
            state.seen.append(ev.label)
            state.last = ChatTurn(role="tick", text=ev.label)
        # a distributed tool call suspends the step; its replay must not edit again
        await ctx.call_tool("mf_echo", text=ev.label)
        return Ticked(label=ev.label)

    @step
    async def join(self, ctx: Context[Counters], ev: Ticked) -> StopEvent | None:
        width = await ctx.store.get("width")
        if ctx.collect_events(ev, [Ticked] * width) is None:
            return None
        return StopEvent(result=await ctx.store.get_state())


@tool(queue="itest")
def mf_reverse(turn: ChatTurn, when: datetime) -> ChatTurn:
    return ChatTurn(role=turn.role, text=turn.text[::-1], at=when)


class ToolObjects(Workflow):
    """Gives a tool a model and a datetime, and gets a model back."""

    @step
    async def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
        turn = ChatTurn(role="user", text="abc")
        back = await ctx.call_tool("mf_reverse", turn=turn, when=datetime(2026, 1, 2))
        return StopEvent(result=back)


class Tally(BaseModel):
    n: int = 0


class EditThenCall(Workflow):
    """Edits, keeps what it read in the block, then calls a tool: distributed, the call
    replays the step, and the replayed block must see the data the first one saw."""

    @step
    async def go(self, ctx: Context[Tally], ev: StartEvent) -> StopEvent:
        async with ctx.store.edit_state() as state:
            state.n += 1
            mine = state.n
        echoed = await ctx.call_tool("mf_echo", text=str(mine))
        return StopEvent(result={"mine": mine, "echoed": echoed, "n": await ctx.store.get("n")})


class WideEdit(Workflow):
    """One edit_state block that writes, then one that removes, thousands of keys."""

    @step
    async def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
        width = int(ev.get("width", 10))
        async with ctx.store.edit_state() as state:
            for i in range(width):
                state[f"k{i}"] = i
        written = len((await ctx.store.get_state()).model_extra or {})
        async with ctx.store.edit_state() as state:
            for i in range(width - 1):
                del state[f"k{i}"]
        left = (await ctx.store.get_state()).model_extra or {}
        return StopEvent(result={"written": written, "left": left})

"""Memory across runs, objects in the store and typed state, in-process, written the way
llama-index-workflows users write them."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel

from tests.integration.memory_flows import (
    ChatMemory,
    ChatTurn,
    Concurrent,
    Counters,
    Reply,
    ToolObjects,
)
from workflows import (
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    InvalidInputError,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)
from workflows.context import DictState

T = TypeVar("T")


def in_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test body in a fresh event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


@in_loop
async def test_a_context_given_to_several_runs_keeps_the_store_like_a_chat_memory() -> None:
    wf = ChatMemory()
    ctx = Context(wf)
    first = await wf.run(ctx=ctx, message="hi")
    second = await wf.run(ctx=ctx, message="again")
    assert first == Reply(text="echo hi (1 turns)", turns=2)
    assert second == Reply(text="echo again (3 turns)", turns=4)
    history = await ctx.store.get("history")
    assert [type(t) for t in history] == [ChatTurn] * 4
    assert history[0].at == datetime(2026, 12, 6, 9)
    assert await ctx.store.get("shape") == (4, "turns")


@in_loop
async def test_a_run_without_a_context_starts_with_an_empty_store() -> None:
    wf = ChatMemory()
    await wf.run(message="hi")
    assert await wf.run(message="hi") == Reply(text="echo hi (1 turns)", turns=2)


@in_loop
async def test_to_dict_and_from_dict_continue_a_saved_conversation() -> None:
    wf = ChatMemory()
    handler = wf.run(message="one")
    await handler
    data = json.loads(json.dumps(handler.ctx.to_dict()))  # stored as JSON anywhere
    restored = Context.from_dict(wf, data)
    assert await wf.run(ctx=restored, message="two") == Reply(text="echo two (3 turns)", turns=4)
    assert [t.text for t in await restored.store.get("history")][2] == "two"


@in_loop
async def test_context_data_of_another_workflow_or_shape_is_refused_in_one_line() -> None:
    data = Context(ChatMemory()).to_dict()
    with pytest.raises(InvalidInputError, match="the context is of ChatMemory, not Concurrent"):
        Context.from_dict(Concurrent(), data)
    with pytest.raises(InvalidInputError, match="malformed context data"):
        Context.from_dict(ChatMemory(), {"version": 1, "workflow": "ChatMemory"})


@in_loop
async def test_a_context_cannot_be_given_to_a_second_run_while_its_first_goes_on() -> None:
    wf = Asker()
    ctx = Context(wf)
    handler = wf.run(ctx=ctx)
    with pytest.raises(InvalidInputError, match="still going"):
        wf.run(ctx=ctx)
    await handler.cancel_run()


class Question(InputRequiredEvent):
    prompt: str


class Answer(HumanResponseEvent):
    response: str


class Asker(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("asked", True)
        answer = await ctx.wait_for_event(Answer, waiter_event=Question(prompt="name?"))
        return StopEvent(result=f"hello {answer.response}, asked={await ctx.store.get('asked')}")


@in_loop
async def test_a_run_paused_for_input_is_saved_with_to_dict_and_answered_after_from_dict() -> None:
    wf = Asker()
    handler = wf.run()
    async for event in handler.stream_events():
        if isinstance(event, Question):
            saved = json.loads(json.dumps(handler.ctx.to_dict()))
            await handler.cancel_run()
            break
    restored = Context.from_dict(Asker(), saved)
    handler = Asker().run(ctx=restored)
    handler.ctx.send_event(Answer(response="Ada"))
    assert await handler == "hello Ada, asked=True"


@in_loop
async def test_stop_event_results_and_store_values_keep_their_types() -> None:
    class Keeper(Workflow):
        @step
        async def keep(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await ctx.store.set("pair", (1, ChatTurn(role="a", text="b")))
            await ctx.store.set("tags", {"x"})
            await ctx.store.set("nested.turn", ChatTurn(role="n", text="m"))
            pair = await ctx.store.get("pair")
            nested = await ctx.store.get("nested.turn")
            assert await ctx.store.get("nested.turn.text") == "m"
            return StopEvent(result=(pair, await ctx.store.get("tags"), nested))

    pair, tags, nested = await Keeper().run()
    assert pair == (1, ChatTurn(role="a", text="b"))
    assert tags == {"x"}
    assert nested == ChatTurn(role="n", text="m")


@in_loop
async def test_a_value_the_codec_does_not_know_is_refused_naming_its_type() -> None:
    class Bad(Workflow):
        @step
        async def bad(self, ctx: Context, ev: StartEvent) -> StopEvent:
            try:
                await ctx.store.set("x", object())
            except Exception as exc:
                return StopEvent(result=str(exc))
            return StopEvent(result="stored")

    assert "a value of type object cannot be stored" in await Bad().run()


@in_loop
async def test_edit_state_is_atomic_against_steps_editing_at_once() -> None:
    state = await Concurrent().run(width=25)
    assert isinstance(state, Counters)
    assert state.count == 25
    assert sorted(state.seen) == sorted(f"t{i}" for i in range(25))
    assert state.last is not None and state.last.role == "tick"


class Typed(BaseModel):
    count: int = 3
    name: str = "n"


class TypedFlow(Workflow):
    @step
    async def go(self, ctx: Context[Typed], ev: StartEvent) -> StopEvent:
        out: dict[str, object] = {"default": await ctx.store.get("count")}
        try:
            await ctx.store.set("nope", 1)
        except ValueError as exc:
            out["unknown"] = str(exc)
        async with ctx.store.edit_state() as state:
            state.count += 1
            try:
                await ctx.store.set("count", 100)
            except RuntimeError as exc:
                out["inside"] = "edit_state" in str(exc)
        out["after"] = (await ctx.store.get_state()).count
        await ctx.store.set_state(Typed(count=9, name="z"))
        out["set_state"] = await ctx.store.get("name")
        await ctx.store.clear()
        out["cleared"] = await ctx.store.get_state()
        return StopEvent(result=out)


@in_loop
async def test_typed_state_reads_defaults_refuses_unknown_fields_and_resets_on_clear() -> None:
    out = await TypedFlow().run()
    assert out == {
        "default": 3,
        "unknown": '"Typed" object has no field "nope"',
        "inside": True,
        "after": 4,
        "set_state": "z",
        "cleared": Typed(),
    }


@in_loop
async def test_a_workflow_without_a_state_type_has_a_dict_state() -> None:
    class PlainStateFlow(Workflow):
        @step
        async def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await ctx.store.set("a", 1)
            async with ctx.store.edit_state() as state:
                state["b"] = state["a"] + 1
            return StopEvent(result=await ctx.store.get_state())

    state = await PlainStateFlow().run()
    assert isinstance(state, DictState)
    assert (state.a, state["b"]) == (1, 2)  # type: ignore[attr-defined]


def test_asyncio_run_of_wf_run_works_from_synchronous_code() -> None:
    # outside a loop, run() gives a coroutine (typed as the handler, hence the ignore)
    assert asyncio.run(ChatMemory().run(message="sync")) == Reply(  # type: ignore[arg-type]
        text="echo sync (1 turns)", turns=2
    )


@in_loop
async def test_an_event_sent_that_no_step_accepts_is_ignored() -> None:
    class Nobody(Event):
        pass

    class Sender(Workflow):
        @step
        async def send(self, ctx: Context, ev: StartEvent) -> StopEvent:
            ctx.send_event(Nobody())
            return StopEvent(result="done")

    assert await Sender().run() == "done"


@in_loop
async def test_a_tool_takes_and_returns_models() -> None:
    assert await ToolObjects().run() == ChatTurn(role="user", text="cba", at=datetime(2026, 1, 2))

"""Memory across runs, objects in the store and typed state, in-process, written the way
llama-index-workflows users write them."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel, Field, HttpUrl

from tests.integration.memory_flows import (
    ChatMemory,
    ChatTurn,
    Concurrent,
    Counters,
    EditThenCall,
    Reply,
    Tally,
    ToolObjects,
)
from workflows import (
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    InvalidInputError,
    StartEvent,
    StepFailedError,
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


class Slow(Event):
    pass


class Fork(Event):
    pass


class Address(BaseModel):
    city: str = "a"
    site: HttpUrl | None = None


class Profile(BaseModel):
    sender: str = Field(alias="from")
    addr: Address = Field(default_factory=Address)
    home: Path = Path("/home")


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


@in_loop
async def test_a_replayed_edit_state_block_sees_the_data_its_first_run_saw() -> None:
    # in-process the tool runs inline: the replay comes from a wait instead
    class EditThenWait(Workflow):
        @step
        async def go(self, ctx: Context[Tally], ev: StartEvent) -> StopEvent:
            async with ctx.store.edit_state() as state:
                state.n += 1
                mine = state.n
            await ctx.wait_for_event(Answer)
            return StopEvent(result={"mine": mine, "n": await ctx.store.get("n")})

    handler = EditThenWait().run()
    await _until(lambda: bool(handler.run.waiters))
    handler.ctx.send_event(Answer(response="go"))
    assert await handler == {"mine": 1, "n": 1}
    assert await EditThenCall().run() == {"mine": 1, "echoed": "1", "n": 1}


@in_loop
async def test_a_replay_does_not_apply_a_store_write_again() -> None:
    class ClearThenWait(Workflow):
        @step
        async def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await ctx.store.clear()
            await ctx.wait_for_event(Answer)
            return StopEvent(result=await ctx.store.get("kept", default="cleared again"))

    handler = ClearThenWait().run()
    await _until(lambda: bool(handler.run.waiters))
    await handler.ctx.store.set("kept", "kept")  # written while the step waits
    handler.ctx.send_event(Answer(response="go"))
    assert await handler == "kept"


@in_loop
async def test_to_dict_saves_steps_still_running_beside_a_wait_and_they_finish_after_restore() -> (
    None
):
    class Both(Workflow):
        @step
        async def fork(self, ctx: Context, ev: StartEvent) -> Slow | Fork:
            ctx.send_event(Fork())
            return Slow()

        @step
        async def slow(self, ctx: Context, ev: Slow) -> StopEvent | None:
            await asyncio.sleep(0.05)
            await ctx.store.set("slow", "done")
            return None

        @step
        async def ask(self, ctx: Context, ev: Fork) -> StopEvent:
            answer = await ctx.wait_for_event(Answer, waiter_event=Question(prompt="again"))
            while not await ctx.store.get("slow", default=None):
                await asyncio.sleep(0.01)
            return StopEvent(result=f"{answer.response} {await ctx.store.get('slow')}")

    handler = Both().run()
    await _until(lambda: bool(handler.run.waiters))
    saved = json.loads(json.dumps(handler.ctx.to_dict()))
    await handler.cancel_run()
    assert [r["step"] for r in saved["paused"]["running"]] == ["slow"]
    restored = Both(timeout=10).run(ctx=Context.from_dict(Both(), saved))
    restored.ctx.send_event(Answer(response="Ada"))
    assert await restored == "Ada done"


def test_a_context_serves_runs_on_successive_event_loops() -> None:
    wf = Concurrent()
    ctx = Context(wf)
    for _ in range(2):  # a chat loop running each turn with asyncio.run
        assert asyncio.run(_run_with(wf, ctx)).count >= 3


async def _run_with(wf: Workflow, ctx: Context[Any]) -> Any:
    return await wf.run(ctx=ctx, width=3)


@in_loop
async def test_models_with_aliases_urls_and_paths_and_dotted_writes_into_models() -> None:
    class Profiles(Workflow):
        @step
        async def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
            profile = Profile.model_validate({"from": "ada"})
            profile.addr.site = HttpUrl("https://example.com/")
            await ctx.store.set("prof", profile)
            await ctx.store.set("prof.addr.city", "Paris")
            return StopEvent(result=await ctx.store.get("prof"))

    profile = await Profiles().run()
    assert isinstance(profile, Profile)
    assert (profile.sender, profile.addr.city, profile.home) == ("ada", "Paris", Path("/home"))
    assert str(profile.addr.site) == "https://example.com/"


@in_loop
async def test_dict_state_keys_named_like_model_methods_and_deleted_keys() -> None:
    class Keys(Workflow):
        @step
        async def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await ctx.store.set("schema", "s")
            await ctx.store.set("tmp", 1)
            async with ctx.store.edit_state() as state:
                state["json"] = state["schema"] + "!"
                del state["tmp"]
            return StopEvent(
                result=(state.get("schema"), await ctx.store.get("json"), ctx.is_running)
            )

    handler = Keys().run()
    assert await handler == ("s", "s!", True)
    assert await handler.ctx.store.get("tmp", default="gone") == "gone"


@in_loop
async def test_a_paused_context_resumes_without_a_new_start_event() -> None:
    handler = Asker().run()
    await _until(lambda: bool(handler.run.waiters))
    saved = handler.ctx.to_dict()
    await handler.cancel_run()
    with pytest.raises(InvalidInputError, match="resumes it, without a start event"):
        Asker().run(ctx=Context.from_dict(Asker(), saved), topic="x")


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not met")


class Nudge(Event):
    pass


@in_loop
async def test_a_step_sending_to_a_step_that_is_missing_or_does_not_take_the_event_fails() -> None:
    class Targets(Workflow):
        @step
        async def go(self, ctx: Context, ev: StartEvent) -> Nudge | StopEvent:
            ctx.send_event(Nudge(), step=str(ev.get("target")))
            return StopEvent(result="sent")

        @step
        async def takes(self, ev: Nudge) -> None:
            return None

    assert await Targets().run(target="takes") == "sent"
    for target, cause in (
        ("nope", "WorkflowStepDoesNotExistError"),
        ("go", "WorkflowRuntimeError"),
    ):
        with pytest.raises(StepFailedError) as caught:
            await Targets().run(target=target)
        assert caught.value.cause_type == cause


@in_loop
async def test_a_restored_paused_run_asks_again_on_its_stream_and_keeps_store_edits() -> None:
    handler = Asker().run()
    async for event in handler.stream_events():
        if isinstance(event, Question):
            saved = handler.ctx.to_dict()
            break
    await handler.cancel_run()
    restored = Context.from_dict(Asker(), saved)
    await restored.store.set("asked", "edited after restore")
    handler = Asker(timeout=10).run(ctx=restored)
    async for event in handler.stream_events():  # the usual loop, on the new handler
        if isinstance(event, Question):
            handler.ctx.send_event(Answer(response="Bob"))
    assert await handler == "hello Bob, asked=edited after restore"


class PairAsk(Workflow):
    @step
    async def both(self, ctx: Context, ev: StartEvent) -> Fork:
        await asyncio.gather(
            ctx.wait_for_event(Answer, requirements={"response": "a"}),
            ctx.wait_for_event(Answer, requirements={"response": "b"}),
        )
        return Fork()

    @step
    async def after(self, ctx: Context, ev: Fork) -> StopEvent:
        answer = await ctx.wait_for_event(Answer, requirements={"response": "c"})
        return StopEvent(result=answer.response)


@in_loop
async def test_a_step_replayed_between_two_answers_waits_once_for_the_other() -> None:
    handler = PairAsk(timeout=10).run()
    for response in ("a", "b", "c"):
        await _until(
            lambda r=response: any(  # type: ignore[misc]
                w.requirements.get("response") == r for w in handler.run.waiters
            )
        )
        waits = [(w.inv.id, w.call_id) for w in handler.run.waiters]
        assert len(set(waits)) == len(waits)  # never a second waiter for the same wait
        handler.ctx.send_event(Answer(response=response))
    assert await handler == "c"

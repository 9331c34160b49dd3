"""Routing by exact event type, as in LlamaIndex: a step taking ``Note`` does not receive a
``Memo(Note)`` unless it says ``@step(accept_event_subclasses=True)``; the graph checks, the
start event and waiting steps follow the same rule."""

from __future__ import annotations

import asyncio

import pytest

from workflows import (
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    InvalidInputError,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowTimeoutError,
    WorkflowValidationError,
    step,
)
from workflows._engine.core import route

from .helpers import run_sync, scratch_registry


class Note(Event):
    text: str = ""


class Memo(Note):
    """A subclass of Note."""


class Brief(StartEvent):
    topic: str = ""


class Report(StopEvent):
    summary: str = ""


class Reply(HumanResponseEvent):
    """A subclass of HumanResponseEvent."""


def _emit(ev: StartEvent) -> Note:
    return Memo(text="m") if ev.get("memo") else Note(text="n")


class ExactOnly(Workflow):
    @step
    async def start(self, ev: StartEvent) -> Note:
        return _emit(ev)

    @step
    async def read(self, ev: Note) -> StopEvent:
        return StopEvent(result=type(ev).__name__)


class SubclassAware(Workflow):
    @step
    async def start(self, ev: StartEvent) -> Note:
        return _emit(ev)

    @step(accept_event_subclasses=True)
    async def read(self, ev: Note) -> StopEvent:
        return StopEvent(result=type(ev).__name__)


def _names(wf: type[Workflow], event_type: type[Event]) -> list[str]:
    return [s.name for s in wf.spec.steps_for(event_type)]


def test_a_step_receives_only_its_exact_event_type_by_default() -> None:
    assert _names(ExactOnly, Note) == ["read"]
    assert _names(ExactOnly, Memo) == []
    assert route(ExactOnly.spec, "p", [(Memo(), None)], batch=False) == []


def test_a_step_accepting_subclasses_receives_them() -> None:
    assert _names(SubclassAware, Memo) == ["read"]
    assert run_sync(SubclassAware(), memo=True) == "Memo"
    assert run_sync(SubclassAware()) == "Note"


def test_a_subclass_no_step_takes_exactly_is_dropped_and_the_run_never_ends() -> None:
    assert run_sync(ExactOnly()) == "Note"
    with pytest.raises(WorkflowTimeoutError):
        run_sync(ExactOnly(timeout=0.3), memo=True)


def test_routing_is_memoized_per_event_type() -> None:
    assert SubclassAware.spec.steps_for(Memo) is SubclassAware.spec.steps_for(Memo)


def test_the_graph_checks_use_the_same_rule() -> None:
    with scratch_registry():

        class EmitsMemo(Workflow):
            @step
            async def start(self, ev: StartEvent) -> Memo:
                return Memo()

            @step
            async def read(self, ev: Note) -> StopEvent:
                return StopEvent()

        class EmitsMemoToAWideStep(EmitsMemo):
            @step(accept_event_subclasses=True)
            async def read(self, ev: Note) -> StopEvent:
                return StopEvent()

        with pytest.raises(WorkflowValidationError) as info:
            EmitsMemo.validate()
        assert EmitsMemoToAWideStep.validate() is False

    assert info.value.problems == [
        "EmitsMemo.start: emits Memo, which no step accepts",
        "EmitsMemo.read: unreachable from StartEvent",
        "EmitsMemo: no path from StartEvent to a StopEvent",
    ]


def test_a_batch_step_accepting_subclasses_gets_subclass_members() -> None:
    with scratch_registry():

        class Batches(Workflow):
            @step
            async def start(self, ev: StartEvent) -> list[Note]:
                return [Note(text="a"), Memo(text="b")]

            @step(accept_event_subclasses=True)
            async def gather(self, ev: list[Note]) -> StopEvent:
                return StopEvent(result=[type(e).__name__ for e in ev])

        assert run_sync(Batches()) == ["Note", "Memo"]


# --- start, stop and external events ------------------------------------------------------


class StartsPlain(Workflow):
    @step
    async def start(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=type(ev).__name__)


class StartsWide(Workflow):
    @step(accept_event_subclasses=True)
    async def start(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=type(ev).__name__)


def test_a_start_event_subclass_is_refused_up_front_unless_the_start_step_accepts_it() -> None:
    # LlamaIndex accepts it and the run times out: no step takes it
    with pytest.raises(InvalidInputError, match="StartsPlain starts with StartEvent, not Brief"):
        StartsPlain().run(Brief(topic="x"))
    assert run_sync(StartsWide(), Brief(topic="x")) == "Brief"
    assert run_sync(StartsWide()) == "StartEvent"


class RunsAChild(Workflow):
    @step
    async def call(self, ctx: Context, ev: StartEvent) -> StopEvent:
        return StopEvent(result=await ctx.run_workflow(StartsPlain, Brief(topic="x")))


def test_a_child_run_with_a_start_event_its_start_step_does_not_take_fails_the_step() -> None:
    with pytest.raises(Exception, match="StartsPlain starts with StartEvent, not Brief"):
        run_sync(RunsAChild())


class Spy(Workflow):
    @step
    async def start(self, ev: StartEvent) -> StopEvent:
        return Report(summary="done")

    @step(accept_event_subclasses=True)
    async def spy(self, ev: Event) -> None:
        return None


def test_a_stop_event_of_any_type_ends_the_run_and_is_never_routed() -> None:
    assert _names(Spy, Memo) == ["spy"]
    assert _names(Spy, StopEvent) == [] and _names(Spy, Report) == []
    result = run_sync(Spy())
    assert isinstance(result, Report) and result.summary == "done"


class Asks(Workflow):
    @step
    async def ask(self, ev: StartEvent) -> InputRequiredEvent:
        return InputRequiredEvent()

    @step
    async def answered(self, ev: HumanResponseEvent) -> StopEvent:
        return StopEvent(result=type(ev).__name__)


def test_an_input_request_needs_no_consumer_and_a_response_subclass_is_not_routed() -> None:
    assert Asks.validate() is True
    assert _names(Asks, HumanResponseEvent) == ["answered"]
    assert _names(Asks, Reply) == []


class Waits(Workflow):
    @step
    async def wait(self, ctx: Context, ev: StartEvent) -> StopEvent:
        answer = await ctx.wait_for_event(HumanResponseEvent, waiter_event=InputRequiredEvent())
        return StopEvent(result=type(answer).__name__)


def test_a_waiting_step_is_answered_by_its_exact_event_type_only() -> None:
    async def scenario() -> object:
        handler = Waits().run()
        async for event in handler.stream_events():
            if isinstance(event, InputRequiredEvent):
                await handler.send_event(Reply())  # not the type waited for: dropped
                await handler.send_event(HumanResponseEvent())
        return await handler

    assert asyncio.run(scenario()) == "HumanResponseEvent"

"""A step is checked when its workflow is defined, the graph when the workflow is first used,
and bad run input never runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from workflows import (
    Context,
    Event,
    InvalidInputError,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowValidationError,
    step,
)
from workflows.workflow import get_workflow

from .helpers import run_sync, scratch_registry


class BadStart(StartEvent):
    fn: Callable[[], int]


class Orphan(Event):
    pass


class Lonely(Event):
    pass


def test_a_step_signature_problem_is_rejected_at_class_definition() -> None:
    with pytest.raises(WorkflowValidationError) as info:

        class BrokenStep(Workflow):
            @step
            async def start(self, ev: StartEvent) -> StopEvent:
                return StopEvent()

            @step
            async def broken(self, ev) -> None:  # type: ignore[no-untyped-def]
                return None

    assert info.value.problems == [
        "BrokenStep.broken: no parameter is annotated with an Event type",
    ]
    assert get_workflow("BrokenStep") is None


def test_an_invalid_graph_is_rejected_at_first_use_with_every_problem_named() -> None:
    with scratch_registry():

        class BrokenGraph(Workflow):  # defining it is fine: a subclass might complete it
            @step
            async def start(self, ev: BadStart) -> Orphan:
                return Orphan()

            @step
            async def island(self, ev: Lonely) -> StopEvent:
                return StopEvent()

        with pytest.raises(WorkflowValidationError) as info:
            BrokenGraph.validate()
        with pytest.raises(WorkflowValidationError) as at_run:
            run_sync(BrokenGraph(), fn=len)

    assert info.value.problems == [
        "BrokenGraph.start: emits Orphan, which no step accepts",
        "BrokenGraph.island: unreachable from BadStart",
        "BrokenGraph: no path from BadStart to a StopEvent",
        "BrokenGraph.start: event BadStart field 'fn' is not JSON-serializable "
        "(collections.abc.Callable[[], int])",
    ]
    assert "BrokenGraph.island: unreachable from BadStart" in str(info.value)
    assert at_run.value.problems == info.value.problems


def test_a_workflow_without_a_start_step_is_rejected_when_validated() -> None:
    with scratch_registry():

        class NoStart(Workflow):
            @step
            async def only(self, ev: Lonely) -> StopEvent:
                return StopEvent()

        with pytest.raises(WorkflowValidationError) as info:
            NoStart().validate()

    assert info.value.problems == ["NoStart: no step accepts a StartEvent"]


class Greeting(StartEvent):
    name: str
    times: int = 1


class Greeter(Workflow):
    def __init__(self) -> None:
        super().__init__()
        self.started = 0

    @step
    async def greet(self, ev: Greeting) -> StopEvent:
        self.started += 1
        return StopEvent(result=" ".join([f"hello {ev.name}"] * ev.times))


def test_bad_run_input_raises_invalid_input_naming_the_field_and_nothing_runs() -> None:
    wf = Greeter()

    async def scenario() -> None:
        with pytest.raises(InvalidInputError, match="times") as info:
            wf.run(name="ada", times="often")
        assert "invalid input for Greeter" in str(info.value)
        with pytest.raises(InvalidInputError, match="name"):
            wf.run(times=2)

    asyncio.run(scenario())
    assert wf.started == 0


def test_a_start_event_of_another_type_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="Greeter starts with Greeting, not StartEvent"):
        Greeter().run(StartEvent())


def test_valid_input_runs_with_typed_fields() -> None:
    assert run_sync(Greeter(), name="ada", times=2) == "hello ada hello ada"


class PlainInput(Workflow):
    @step
    async def echo(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result={"a": ev.get("a"), "b": ev.get("b"), "c": ev.get("c", "none")})


def test_plain_start_event_takes_any_keyword_fields() -> None:
    assert run_sync(PlainInput(), a=1, b="x") == {"a": 1, "b": "x", "c": "none"}


class Middle1(Event):
    value: int


class NoContextSteps(Workflow):
    @step
    async def first(self, ev: StartEvent) -> Middle1:
        return Middle1(value=int(ev.get("n")) * 2)

    @step
    async def second(self, ev: Middle1) -> StopEvent:
        return StopEvent(result=ev.value + 1)


def test_steps_without_a_context_parameter_run() -> None:
    assert run_sync(NoContextSteps(), n=20) == 41


class ContextByName(Workflow):
    @step
    async def only(self, ctx, ev: StartEvent) -> StopEvent:  # type: ignore[no-untyped-def]
        return StopEvent(result={"has_run_id": bool(ctx.run_id), "attempt": ctx.attempt})


class ContextTyped(Workflow):
    @step
    async def only(self, context: Context, ev: StartEvent) -> StopEvent:
        return StopEvent(result=context.attempt)


def test_a_step_gets_the_context_by_annotation_or_by_the_name_ctx() -> None:
    assert run_sync(ContextByName()) == {"has_run_id": True, "attempt": 1}
    assert run_sync(ContextTyped()) == 1


class ContextLast(Workflow):
    @step
    async def only(self, ev: StartEvent, ctx: Context) -> StopEvent:
        return StopEvent(result={"attempt": ctx.attempt, "x": ev.get("x")})


def test_a_step_may_take_the_context_after_the_event() -> None:
    assert run_sync(ContextLast(), x=7) == {"attempt": 1, "x": 7}


def test_a_step_parameter_that_is_neither_context_nor_event_is_rejected() -> None:
    with pytest.raises(WorkflowValidationError) as info:

        class ExtraParam(Workflow):
            @step
            async def only(self, ev: StartEvent, llm: str) -> StopEvent:
                return StopEvent(result=llm)

    assert info.value.problems == [
        "ExtraParam.only: parameter 'llm' is not a Context, an Event or a resource "
        "(Annotated[T, Resource(factory)])"
    ]

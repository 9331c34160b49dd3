"""Workflow factories: a workflow whose ``__init__`` needs arguments is built by the factory
registered for it, once per process; a factory that cannot build it is a clear error."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from workflows import (
    ConfigurationError,
    Context,
    Retry,
    StartEvent,
    StepFailedError,
    StopEvent,
    Workflow,
    WorkflowDefinitionError,
    register_factory,
    step,
)
from workflows.factories import has_factory, workflow_instance
from workflows.workflow import require_constructible


class FacGreeter(Workflow):
    """Needs a greeting: a worker cannot build it with no arguments."""

    def __init__(self, greeting: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.greeting = greeting

    @step
    async def greet(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=f"{self.greeting}, {ev.get('name', 'you')}")


def run_within(workflow: Workflow, seconds: float = 5.0, **kwargs: Any) -> Any:
    async def go() -> Any:
        return await asyncio.wait_for(workflow.run(**kwargs), seconds)

    return asyncio.run(go())


def test_a_factory_builds_the_workflow_once_per_process_and_the_instance_is_reused() -> None:
    class FacCounted(FacGreeter):
        pass

    built: list[FacCounted] = []

    def build() -> FacCounted:
        built.append(FacCounted(greeting="hi"))
        return built[-1]

    register_factory(FacCounted, build)
    assert has_factory(FacCounted)
    first, second = workflow_instance(FacCounted), workflow_instance(FacCounted)
    assert first is second is built[0]
    assert len(built) == 1


def test_threads_that_need_the_workflow_at_once_share_one_build() -> None:
    class FacShared(FacGreeter):
        pass

    calls: list[int] = []
    gate = threading.Barrier(8)

    def build() -> FacShared:
        calls.append(1)
        return FacShared(greeting="hi")

    register_factory(FacShared, build)
    got: list[Workflow] = []

    def use() -> None:
        gate.wait()
        got.append(workflow_instance(FacShared))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(w) for w in got}) == 1


def test_register_factory_is_also_a_decorator_that_returns_the_function() -> None:
    class FacDecorated(FacGreeter):
        pass

    @register_factory(FacDecorated)
    def build() -> FacDecorated:
        return FacDecorated(greeting="hey")

    assert build().greeting == "hey"
    assert workflow_instance(FacDecorated).greeting == "hey"


def test_registering_again_replaces_the_factory_and_its_instance() -> None:
    class FacReplaced(FacGreeter):
        pass

    register_factory(FacReplaced, lambda: FacReplaced(greeting="old"))
    assert workflow_instance(FacReplaced).greeting == "old"
    register_factory(FacReplaced, lambda: FacReplaced(greeting="new"))
    assert workflow_instance(FacReplaced).greeting == "new"


def test_a_workflow_without_a_factory_is_built_afresh_with_no_arguments() -> None:
    class FacPlain(Workflow):
        @step
        async def go(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    assert not has_factory(FacPlain)
    assert workflow_instance(FacPlain) is not workflow_instance(FacPlain)


def test_a_class_needing_arguments_is_accepted_for_distributed_runs_once_it_has_a_factory() -> None:
    class FacSubmitted(FacGreeter):
        pass

    with pytest.raises(ConfigurationError, match="requires: greeting"):
        require_constructible(FacSubmitted)
    register_factory(FacSubmitted, lambda: FacSubmitted(greeting="hi"))
    require_constructible(FacSubmitted)


def test_a_subclass_is_not_built_by_its_base_classes_factory() -> None:
    class FacBase(FacGreeter):
        pass

    class FacDerived(FacBase):
        pass

    register_factory(FacBase, lambda: FacBase(greeting="base"))
    assert not has_factory(FacDerived)
    with pytest.raises(ConfigurationError, match="FacDerived"):
        require_constructible(FacDerived)


def test_a_factory_that_raises_is_a_configuration_error_naming_the_workflow_and_the_cause() -> None:
    class FacFlaky(FacGreeter):
        pass

    answers: list[Exception | None] = [RuntimeError("no API key"), None]

    def build() -> FacFlaky:
        error = answers.pop(0)
        if error is not None:
            raise error
        return FacFlaky(greeting="hi")

    register_factory(FacFlaky, build)
    with pytest.raises(ConfigurationError) as info:
        workflow_instance(FacFlaky)
    assert str(info.value) == (
        "workflow FacFlaky: its factory test_a_factory_that_raises_is_a_configuration_error_naming"
        "_the_workflow_and_the_cause.<locals>.build raised RuntimeError: no API key"
    )
    assert info.value.retryable  # what raised may pass: a step retry policy may retry it
    assert workflow_instance(FacFlaky).greeting == "hi"  # a failure is not kept: tried again


def test_a_factory_raising_a_baton_error_that_is_not_retryable_is_not_retryable() -> None:
    class FacFatal(FacGreeter):
        pass

    def build() -> FacFatal:
        raise ConfigurationError("LLM_URL is not a URL")

    register_factory(FacFatal, build)
    with pytest.raises(ConfigurationError, match="raised ConfigurationError: LLM_URL") as info:
        workflow_instance(FacFatal)
    assert not info.value.retryable


def test_a_factory_that_returns_something_else_is_a_configuration_error() -> None:
    class FacWrong(FacGreeter):
        pass

    register_factory(FacWrong, lambda: FacGreeter(greeting="hi"))  # type: ignore[arg-type, return-value]
    with pytest.raises(ConfigurationError, match="returned FacGreeter, not a FacWrong") as info:
        workflow_instance(FacWrong)
    assert not info.value.retryable  # another try builds the same wrong thing


def test_what_could_never_build_the_workflow_is_refused_at_registration() -> None:
    class FacTarget(FacGreeter):
        pass

    def needs(greeting: str) -> FacTarget:
        return FacTarget(greeting)

    with pytest.raises(WorkflowDefinitionError, match="not a Workflow subclass"):
        register_factory(object, lambda: object())  # type: ignore[type-var]
    with pytest.raises(WorkflowDefinitionError, match="not a Workflow subclass"):
        register_factory(int)  # type: ignore[type-var]  # the decorator form: checked at once
    with pytest.raises(WorkflowDefinitionError, match="callable with no arguments"):
        register_factory(FacTarget, needs)  # type: ignore[arg-type]
    with pytest.raises(WorkflowDefinitionError, match="must be callable"):
        register_factory(FacTarget, "FacTarget")  # type: ignore[call-overload]
    assert not has_factory(FacTarget)


def test_a_child_workflow_run_in_process_is_built_by_its_factory() -> None:
    class FacChild(FacGreeter):
        pass

    register_factory(FacChild, lambda: FacChild(greeting="hello"))

    class FacParent(Workflow):
        @step
        async def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
            return StopEvent(result=await ctx.run_workflow(FacChild, name="child"))

    assert run_within(FacParent()) == "hello, child"


def test_a_child_whose_factory_raises_fails_the_parents_step_saying_why() -> None:
    class FacUnbuildable(FacGreeter):
        pass

    def build() -> FacUnbuildable:
        raise KeyError("LLM_URL")

    register_factory(FacUnbuildable, build)

    class FacCaller(Workflow):
        @step
        async def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
            return StopEvent(result=await ctx.run_workflow(FacUnbuildable))

    with pytest.raises(StepFailedError) as info:
        run_within(FacCaller())
    message = str(info.value)
    assert (
        "FacCaller.go failed after 1 attempt(s): ConfigurationError: workflow FacUnbuildable"
        in message
    )
    assert "raised KeyError: 'LLM_URL'" in message


def test_a_child_whose_factory_raises_is_retried_under_the_parents_step_policy() -> None:
    class FacRecovering(FacGreeter):
        pass

    calls: list[int] = []

    def build() -> FacRecovering:
        calls.append(len(calls) + 1)
        if len(calls) == 1:
            raise ConnectionError("model server down")
        return FacRecovering(greeting="back")

    register_factory(FacRecovering, build)

    class FacPatient(Workflow):
        @step(retry=Retry(max_attempts=2))
        async def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
            return StopEvent(result=await ctx.run_workflow(FacRecovering, name="child"))

    assert run_within(FacPatient()) == "back, child"
    assert calls == [1, 2]


def test_an_instance_built_by_hand_still_runs_in_process_as_usual() -> None:
    assert run_within(FacGreeter(greeting="bonjour"), name="Ada") == "bonjour, Ada"

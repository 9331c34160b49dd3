"""Resources (``Annotated[T, Resource(factory)]``), written the way LlamaIndex users write them:
built by their factory once per process, or per step invocation with ``cache=False``."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import pytest

from tests.unit.helpers import run_sync, scratch_registry
from workflows import (
    Context,
    Event,
    Retry,
    StartEvent,
    StepFailedError,
    StopEvent,
    Workflow,
    WorkflowValidationError,
    step,
)
from workflows._engine.executor import branch_path
from workflows.resource import Resource, ResourceManager


class Memory:
    """What a resource typically is: a client or a store, built once, used by many steps."""

    def __init__(self) -> None:
        self.lines: list[str] = []


# --- built once per process, shared by steps, runs and workflow instances -------------------

SHARED_BUILDS: list[Memory] = []


def shared_memory() -> Memory:
    SHARED_BUILDS.append(Memory())
    return SHARED_BUILDS[-1]


class Said(Event):
    text: str


class ResChat(Workflow):
    @step
    async def hear(
        self, ev: StartEvent, memory: Annotated[Memory, Resource(shared_memory)]
    ) -> Said:
        memory.lines.append(f"heard {ev.get('text')}")
        return Said(text=ev.get("text"))

    @step
    async def say(self, ev: Said, memory: Annotated[Memory, Resource(shared_memory)]) -> StopEvent:
        memory.lines.append(f"said {ev.text}")
        return StopEvent(result=len(memory.lines))


def test_a_resource_is_built_once_and_shared_by_steps_runs_and_workflow_instances() -> None:
    assert run_sync(ResChat(), text="a") == 2
    assert run_sync(ResChat(), text="b") == 4
    assert len(SHARED_BUILDS) == 1
    assert SHARED_BUILDS[0].lines == ["heard a", "said a", "heard b", "said b"]


# --- cache=False: one per step invocation, shared by that invocation's parameters ------------

FRESH_BUILDS: list[Memory] = []


def fresh_memory() -> Memory:
    FRESH_BUILDS.append(Memory())
    return FRESH_BUILDS[-1]


class ResScratch(Workflow):
    @step
    async def first(
        self,
        ev: StartEvent,
        a: Annotated[Memory, Resource(fresh_memory, cache=False)],
        b: Annotated[Memory, Resource(fresh_memory, cache=False)],
    ) -> Said:
        a.lines.append("first")
        return Said(text=str(a is b))

    @step
    async def second(
        self, ev: Said, c: Annotated[Memory, Resource(fresh_memory, cache=False)]
    ) -> StopEvent:
        return StopEvent(result={"same_in_step": ev.text, "fresh": c.lines == []})


def test_an_uncached_resource_is_built_for_each_step_invocation() -> None:
    assert run_sync(ResScratch()) == {"same_in_step": "True", "fresh": True}
    assert len(FRESH_BUILDS) == 2


# --- async factories, and factories taking other resources -----------------------------------


class Settings:
    model = "small"


def settings() -> Settings:
    return Settings()


class LLM:
    def __init__(self, model: str) -> None:
        self.model = model


async def llm(config: Annotated[Settings, Resource(settings)]) -> LLM:
    await asyncio.sleep(0)
    return LLM(config.model)


class ResUsesLLM(Workflow):
    @step
    async def ask(
        self,
        ev: StartEvent,
        model: Annotated[LLM, Resource(llm)],
        config: Annotated[Settings, Resource(settings)],
    ) -> StopEvent:
        return StopEvent(result=[type(model).__name__, model.model, config.model])


def test_an_async_factory_is_awaited_and_a_factory_may_take_other_resources() -> None:
    assert run_sync(ResUsesLLM()) == ["LLM", "small", "small"]


# --- a factory that raises fails the step like the step itself -------------------------------

FLAKY_CALLS: list[int] = []


def flaky_client() -> Memory:
    FLAKY_CALLS.append(1)
    if len(FLAKY_CALLS) < 3:
        raise ConnectionError(f"connect failed ({len(FLAKY_CALLS)})")
    return Memory()


class ResFlaky(Workflow):
    @step(retry=Retry(max_attempts=3))
    async def go(
        self, ctx: Context, ev: StartEvent, client: Annotated[Memory, Resource(flaky_client)]
    ) -> StopEvent:
        return StopEvent(result=ctx.attempt)


def broken_client() -> Memory:
    raise ConnectionError("no route to host")


class ResBroken(Workflow):
    @step
    async def go(
        self, ev: StartEvent, client: Annotated[Memory, Resource(broken_client)]
    ) -> StopEvent:
        return StopEvent(result="unreachable")


def test_a_factory_that_raises_fails_the_step_and_the_retry_builds_it_again() -> None:
    assert run_sync(ResFlaky()) == 3
    assert len(FLAKY_CALLS) == 3


def test_a_factory_error_without_retries_fails_the_run_naming_the_step() -> None:
    with pytest.raises(StepFailedError, match=r"ResBroken\.go") as info:
        run_sync(ResBroken())
    assert isinstance(info.value.__cause__, ConnectionError)


# --- steps that start at once share one build ------------------------------------------------

SLOW_BUILDS: list[int] = []


async def slow_pool() -> Memory:
    SLOW_BUILDS.append(1)
    await asyncio.sleep(0.05)
    return Memory()


class Item(Event):
    n: int


class Done(Event):
    pool: int


class ResCrowd(Workflow):
    @step
    async def fan(self, ctx: Context, ev: StartEvent) -> Item | None:
        for n in range(5):
            ctx.send_event(Item(n=n))
        return None

    @step(num_workers=5)
    async def work(self, ev: Item, pool: Annotated[Memory, Resource(slow_pool)]) -> Done:
        return Done(pool=id(pool))

    @step
    async def join(self, ctx: Context, ev: Done) -> StopEvent | None:
        got = ctx.collect_events(ev, [Done] * 5)
        return (
            None
            if got is None
            else StopEvent(result=len({d.pool for d in got if isinstance(d, Done)}))
        )


def test_steps_needing_a_resource_at_once_share_one_build() -> None:
    assert run_sync(ResCrowd()) == 1
    assert len(SLOW_BUILDS) == 1


# --- a factory's own tasks are no branches of the step ---------------------------------------


async def gathered() -> Memory:
    await asyncio.gather(asyncio.sleep(0), asyncio.sleep(0))  # two tasks, built under the step
    return Memory()


class ResBranches(Workflow):
    @step
    async def go(self, ev: StartEvent, m: Annotated[Memory, Resource(gathered)]) -> StopEvent:
        async def where() -> str:
            return branch_path()

        return StopEvent(result=await asyncio.gather(where(), where()))


def test_a_factory_creating_tasks_does_not_shift_the_steps_branch_numbering() -> None:
    # the first run builds the resource, the second finds it cached: both number alike, so a
    # replay of the step maps its journaled answers to the same awaits
    assert run_sync(ResBranches()) == ["0", "1"]
    assert run_sync(ResBranches()) == ["0", "1"]


# --- Workflow(resource_manager=...) -----------------------------------------------------------

OWN_BUILDS: list[Memory] = []


def own_memory() -> Memory:
    OWN_BUILDS.append(Memory())
    return OWN_BUILDS[-1]


class ResNotes(Workflow):
    @step
    async def note(
        self, ev: StartEvent, memory: Annotated[Memory, Resource(own_memory)]
    ) -> StopEvent:
        memory.lines.append("note")
        return StopEvent(result=len(memory.lines))


def test_a_workflow_given_a_resource_manager_caches_in_it() -> None:
    manager = ResourceManager()
    assert run_sync(ResNotes(resource_manager=manager)) == 1
    assert run_sync(ResNotes(resource_manager=manager)) == 2
    assert run_sync(ResNotes(resource_manager=ResourceManager())) == 1
    assert len(OWN_BUILDS) == 2
    assert list(manager.get_all()) == ["own_memory"]


def test_a_value_set_on_the_manager_replaces_the_factory_by_name() -> None:
    fake = Memory()
    fake.lines = ["fake", "fake"]
    manager = ResourceManager()
    asyncio.run(manager.set("own_memory", fake))
    assert run_sync(ResNotes(resource_manager=manager)) == 3
    assert fake.lines == ["fake", "fake", "note"]


def test_a_manager_resolves_a_resource_directly() -> None:
    async def go() -> Any:
        manager = ResourceManager()
        first = await manager.get(Resource(llm))
        return first, await manager.get(Resource(llm)), await manager.get(Resource(llm, False))

    first, again, uncached = asyncio.run(go())
    assert first is again
    assert uncached is not first


# --- definition errors -----------------------------------------------------------------------


def needs_a_key(api_key: str) -> Memory:
    return Memory()


def test_a_factory_parameter_that_is_not_a_resource_is_rejected_with_the_class() -> None:
    with scratch_registry(), pytest.raises(WorkflowValidationError) as info:

        class NeedsKey(Workflow):
            @step
            async def go(
                self, ev: StartEvent, m: Annotated[Memory, Resource(needs_a_key)]
            ) -> StopEvent:
                return StopEvent()

    assert info.value.problems == [
        "NeedsKey.go: resource factory needs_a_key takes 'api_key', which is neither a "
        "Resource nor has a default (a factory gets only other resources)"
    ]


def chicken(egg: Annotated[Memory, Resource(egg)]) -> Memory:
    return egg


def egg(chicken: Annotated[Memory, Resource(chicken)]) -> Memory:
    return chicken


def test_factories_that_depend_on_each_other_are_rejected_with_the_class() -> None:
    with scratch_registry(), pytest.raises(WorkflowValidationError) as info:

        class Cycle(Workflow):
            @step
            async def go(
                self, ev: StartEvent, m: Annotated[Memory, Resource(chicken)]
            ) -> StopEvent:
                return StopEvent()

    assert info.value.problems == [
        "Cycle.go: resource factories depend on each other: chicken -> egg -> chicken"
    ]

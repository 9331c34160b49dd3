"""Resources (``Annotated[T, Resource(factory)]``), written the way LlamaIndex users write them:
built by their factory once per process and event loop, or per step invocation with
``cache=False``."""

from __future__ import annotations

import asyncio
import gc
import weakref
from concurrent.futures import ThreadPoolExecutor
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


# --- built once per process and loop, shared by steps, runs and workflow instances ----------

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
    async def two_runs() -> list[Any]:  # on one loop, as every run of a worker process is
        return [await ResChat().run(text="a"), await ResChat().run(text="b")]

    assert asyncio.run(two_runs()) == [2, 4]
    assert len(SHARED_BUILDS) == 1
    assert SHARED_BUILDS[0].lines == ["heard a", "said a", "heard b", "said b"]


# --- a cached value never reaches another event loop -----------------------------------------


class Mailbox:
    """Bound to the loop it is built on, as an async client's connections are."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[str] = asyncio.Queue()


MAILBOXES: list[Mailbox] = []


async def mailbox() -> Mailbox:
    MAILBOXES.append(Mailbox())
    return MAILBOXES[-1]


class ResMail(Workflow):
    @step
    async def post(self, ev: StartEvent, box: Annotated[Mailbox, Resource(mailbox)]) -> StopEvent:
        waiter = asyncio.ensure_future(box.queue.get())  # binds the queue to this loop
        await asyncio.sleep(0)
        box.queue.put_nowait("hello")
        return StopEvent(result=[await waiter, box.loop is asyncio.get_running_loop()])


def test_each_asyncio_run_gets_a_cached_resource_built_on_its_own_loop() -> None:
    # a second asyncio.run (a new test, a script) used to get the first loop's value:
    # "bound to a different event loop", or "Event loop is closed" with a Redis client
    assert run_sync(ResMail()) == ["hello", True]
    assert run_sync(ResMail()) == ["hello", True]
    assert len(MAILBOXES) == 2
    assert MAILBOXES[0].loop is not MAILBOXES[1].loop


def test_the_runs_of_one_loop_still_share_one_build_of_a_loop_bound_resource() -> None:
    async def three_runs() -> list[Any]:
        return [await ResMail().run() for _ in range(3)]

    before = len(MAILBOXES)
    assert asyncio.run(three_runs()) == [["hello", True]] * 3
    assert len(MAILBOXES) == before + 1


def bound() -> Mailbox:
    return Mailbox()


def test_the_values_of_closed_loops_are_released_not_piled_up() -> None:
    manager = ResourceManager()
    built = [weakref.ref(asyncio.run(manager.get(Resource(bound)))) for _ in range(5)]
    gc.collect()
    # each new loop drops what closed loops built (though each value holds its loop); only
    # the last loop's, not yet followed by another, is still held
    assert [ref() is None for ref in built] == [True] * 4 + [False]


def test_threads_each_running_a_loop_get_one_value_each() -> None:
    # as a threads pool's tasks do: each thread runs its own loop
    manager = ResourceManager()

    async def twice() -> tuple[Mailbox, Mailbox]:
        return await manager.get(Resource(bound)), await manager.get(Resource(bound))

    with ThreadPoolExecutor(4) as pool:
        pairs = list(pool.map(lambda _: asyncio.run(twice()), range(4)))
    assert all(first is again for first, again in pairs)
    assert len({id(first) for first, _ in pairs}) == 4


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
    async def two_runs() -> list[Any]:
        return [await ResBranches().run(), await ResBranches().run()]

    assert asyncio.run(two_runs()) == [["0", "1"], ["0", "1"]]


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

    async def runs() -> list[Any]:
        return [
            await ResNotes(resource_manager=manager).run(),
            await ResNotes(resource_manager=manager).run(),
            await ResNotes(resource_manager=ResourceManager()).run(),
            list(manager.get_all()),
        ]

    assert asyncio.run(runs()) == [1, 2, 1, ["own_memory"]]
    assert len(OWN_BUILDS) == 2


def test_a_given_resource_manager_also_builds_afresh_on_another_loop() -> None:
    manager = ResourceManager()
    assert run_sync(ResNotes(resource_manager=manager)) == 1
    assert run_sync(ResNotes(resource_manager=manager)) == 1


def test_a_value_set_on_the_manager_replaces_the_factory_by_name_on_every_loop() -> None:
    fake = Memory()
    fake.lines = ["fake", "fake"]
    manager = ResourceManager()
    asyncio.run(manager.set("own_memory", fake))
    assert run_sync(ResNotes(resource_manager=manager)) == 3
    assert run_sync(ResNotes(resource_manager=manager)) == 4
    assert fake.lines == ["fake", "fake", "note", "note"]


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

"""Workflows whose ``__init__`` needs arguments, built on workers by the factories registered
next to them (imported by the client and by the worker of ``test_factories_distributed``, on
a queue of their own)."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from workflows import (
    Context,
    Event,
    Retry,
    StartEvent,
    StopEvent,
    Workflow,
    register_factory,
    step,
)

QUEUE = "factories"
BUILDS: Counter[str] = Counter()  # factory calls in this process, per workflow
FLAKY_CALLS: Counter[str] = Counter()  # calls of the factories that fail at first


class EchoLlm:
    """Stands in for an LLM client: what a workflow is given, not what it makes."""

    def __init__(self, model: str) -> None:
        self.model = model

    def complete(self, prompt: str) -> str:
        return f"{self.model}: {prompt}"


class Text(StartEvent):
    text: str


class Drafted(Event):
    text: str
    instance: int


class FactoryShout(Workflow):
    queue = QUEUE

    def __init__(self, suffix: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.suffix = suffix

    @step
    async def shout(self, ev: Text) -> StopEvent:
        return StopEvent(result=ev.text.upper() + self.suffix)


class FactorySummary(Workflow):
    """Two steps on one instance, a child run in-process and one distributed: every instance
    comes from a factory."""

    queue = QUEUE

    def __init__(self, llm: EchoLlm, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.llm = llm

    @step
    async def draft(self, ev: Text) -> Drafted:
        return Drafted(text=self.llm.complete(ev.text), instance=id(self))

    @step
    async def finish(self, ctx: Context, ev: Drafted) -> StopEvent:
        inline = await ctx.run_workflow(FactoryShout, Text(text="inline"), mode="inprocess")
        distributed = await ctx.run_workflow(FactoryShout, Text(text="distributed"))
        return StopEvent(
            result={
                "text": ev.text,
                "inline": inline,
                "distributed": distributed,
                "same_instance": ev.instance == id(self),
                "pid": os.getpid(),
                "builds": dict(BUILDS),
            }
        )


class FactoryBroken(Workflow):
    queue = QUEUE

    def __init__(self, llm: EchoLlm, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.llm = llm

    @step
    async def never(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result="unreachable")


class FactoryFlaky(Workflow):
    """Its factory fails twice (a model server briefly down); its step retries."""

    queue = QUEUE

    def __init__(self, llm: EchoLlm, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.llm = llm

    @step(retry=Retry(max_attempts=3))
    async def answer(self, ctx: Context, ev: StartEvent) -> StopEvent:
        return StopEvent(result={"text": self.llm.complete("up"), "attempt": ctx.attempt})


class FactoryDown(Workflow):
    """Its factory always fails; its step retries once, then the run fails."""

    queue = QUEUE

    def __init__(self, llm: EchoLlm, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.llm = llm

    @step(retry=Retry(max_attempts=2))
    async def never(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result="unreachable")


@register_factory(FactorySummary)
def build_summary() -> FactorySummary:
    BUILDS["FactorySummary"] += 1
    return FactorySummary(llm=EchoLlm(os.environ.get("FACTORY_MODEL", "echo")))


@register_factory(FactoryShout)
def build_shout() -> FactoryShout:
    BUILDS["FactoryShout"] += 1
    return FactoryShout(suffix="!")


@register_factory(FactoryBroken)
def build_broken() -> FactoryBroken:
    raise RuntimeError("no credentials for the LLM")


@register_factory(FactoryFlaky)
def build_flaky() -> FactoryFlaky:
    FLAKY_CALLS["FactoryFlaky"] += 1
    if FLAKY_CALLS["FactoryFlaky"] <= 2:
        raise ConnectionError(f"model server down (call {FLAKY_CALLS['FactoryFlaky']})")
    return FactoryFlaky(llm=EchoLlm("back"))


@register_factory(FactoryDown)
def build_down() -> FactoryDown:
    FLAKY_CALLS["FactoryDown"] += 1
    raise ConnectionError(f"model server down (call {FLAKY_CALLS['FactoryDown']})")

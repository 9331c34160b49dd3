"""Workflows whose steps raise their own exceptions (imported by the test workers and the
client): the client rebuilds each as a StepFailedError that is also the step exception."""

from __future__ import annotations

from typing import Any

from workflows import (
    ChildWorkflowError,
    Context,
    InvalidInputError,
    StartEvent,
    StepFailedError,
    StopEvent,
    Workflow,
    step,
)
from workflows.step import Mode


class QuotaExceeded(Exception):
    """A user exception whose ``__init__`` requires arguments and keeps them as attributes."""

    def __init__(self, tenant: str, limit: int) -> None:
        super().__init__(f"{tenant} is over its quota of {limit}")
        self.tenant = tenant
        self.limit = limit
        self.detail = {"plan": "free", "resets": ["daily"]}


def _local_error() -> type[Exception]:
    class LocalError(Exception):
        pass

    return LocalError


LocalError = _local_error()  # defined in a function: the client cannot name it


def raised(case: str) -> BaseException:
    """The exception a step raises for ``case``."""
    return {
        "key": KeyError("k"),
        "oserror": OSError(2, "No such file or directory", "data.csv"),
        "quota": QuotaExceeded("acme", 3),
        "local": LocalError("from a function"),
        "baton": InvalidInputError("bad input"),
        "value": ValueError("child broke", 7),
    }[case]


class ErrCase(StartEvent):
    case: str


class ChildCase(StartEvent):
    case: str
    mode: str = "distributed"


class ErrRaiser(Workflow):
    queue = "itest"

    @step
    async def explode(self, ev: ErrCase) -> StopEvent:
        raise raised(ev.case)


class ErrCatchesChild(Workflow):
    """Catches its child's ValueError the LlamaIndex way, from ``ctx.run_workflow``."""

    queue = "itest"

    @step
    async def call(self, ctx: Context, ev: ChildCase) -> StopEvent:
        mode: Mode = "distributed" if ev.mode == "distributed" else "inprocess"
        try:
            await ctx.run_workflow(ErrRaiser, ErrCase(case="value"), mode=mode)
        except ValueError as exc:
            return StopEvent(result=_seen(exc))
        return StopEvent(result="not caught")


class ErrAwaitsChild(Workflow):
    """Catches the ValueError of a run it awaits itself, inside its step."""

    queue = "itest"

    @step
    async def call(self, ev: StartEvent) -> StopEvent:
        try:
            await ErrRaiser().run(ErrCase(case="value"))
        except ValueError as exc:
            return StopEvent(result=_seen(exc))
        return StopEvent(result="not caught")


class ErrLetsChildFail(Workflow):
    queue = "itest"

    @step
    async def call(self, ctx: Context, ev: StartEvent) -> StopEvent:
        return StopEvent(result=await ctx.run_workflow(ErrRaiser, ErrCase(case="value")))


def _seen(exc: BaseException) -> dict[str, Any]:
    return {
        "args": list(exc.args),
        "class": type(exc).__name__,
        "child_workflow_error": isinstance(exc, ChildWorkflowError),
        "step_failed_error": isinstance(exc, StepFailedError),
    }

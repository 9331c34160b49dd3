"""Workflows whose tools raise their own exceptions (imported by the test workers and the
client): each step catches them by their class around ``ctx.call_tool``, as LlamaIndex code
does around the plain function the tool was."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from workflows import (
    Context,
    InvalidInputError,
    Retry,
    StartEvent,
    StopEvent,
    ToolError,
    ToolTimeout,
    Workflow,
    step,
    tool,
)

ORDERS = {"A100": "kettle"}


class OrderNotFound(LookupError):
    """A user exception whose ``__init__`` requires an argument and keeps attributes."""

    def __init__(self, order_id: str) -> None:
        super().__init__(f"no order {order_id}")
        self.order_id = order_id
        self.searched = ["orders", "archive"]


def _local_error() -> type[Exception]:
    class LocalError(Exception):
        pass

    return LocalError


LocalError = _local_error()  # defined in a function: data cannot name it

RAISED: dict[str, Callable[[], Exception]] = {
    "local": lambda: LocalError("from a function"),
    "baton": lambda: InvalidInputError("bad order id"),
    "own_timeout": lambda: TimeoutError("upstream took too long"),
}


@tool(queue="itest")
def tef_lookup(order_id: str) -> str:
    """Sync: on a prefork worker it runs on the task's own thread."""
    return ORDERS[order_id]


@tool(queue="itest")
async def tef_lookup_async(order_id: str) -> str:
    return ORDERS[order_id]


@tool(mode="inprocess")
def tef_lookup_here(order_id: str) -> str:
    """Runs inside the calling step, on the step's worker."""
    return ORDERS[order_id]


@tool(queue="itest", retry=Retry(max_attempts=2))
def tef_lookup_retried(order_id: str) -> str:
    return ORDERS[order_id]


@tool(queue="itest")
def tef_find(order_id: str) -> str:
    raise OrderNotFound(order_id)


@tool(mode="inprocess")
def tef_find_here(order_id: str) -> str:
    raise OrderNotFound(order_id)


@tool(queue="itest")
def tef_raise(case: str) -> str:
    raise RAISED[case]()


@tool(mode="inprocess")
def tef_raise_here(case: str) -> str:
    raise RAISED[case]()


@tool(queue="itest", timeout=0.5)
def tef_stall() -> str:
    time.sleep(2)  # a worker's soft time limit stops it; in-process its thread runs on
    return "late"


@tool(queue="itest")
def tef_add(a: int, b: int) -> int:
    return a + b


class ToolCase(StartEvent):
    tool: str
    params: dict[str, Any] = {}


class OrderDesk(Workflow):
    """A missing order is a KeyError; after catching it the step calls one more tool, so a
    distributed step is replayed and catches the error again, rebuilt from its journal."""

    queue = "itest"

    @step
    async def answer(self, ctx: Context, ev: ToolCase) -> StopEvent:
        try:
            item = await ctx.call_tool(ev.tool, **ev.params)
        except KeyError as exc:
            then = await ctx.call_tool("tef_add", a=1, b=1)
            return StopEvent(result={"missing": exc.args[0], **facts(exc), "then": then})
        return StopEvent(result={"item": item})


class OrderFinder(Workflow):
    queue = "itest"

    @step
    async def answer(self, ctx: Context, ev: ToolCase) -> StopEvent:
        try:
            await ctx.call_tool(ev.tool, **ev.params)
        except OrderNotFound as exc:
            found = {"order_id": exc.order_id, "searched": exc.searched, "args": list(exc.args)}
            return StopEvent(result={**found, **facts(exc)})
        return StopEvent(result="not caught")


class Upstream(Workflow):
    """Tells the tool's deadline (ToolTimeout) from a TimeoutError the tool raised itself."""

    queue = "itest"

    @step
    async def answer(self, ctx: Context, ev: ToolCase) -> StopEvent:
        try:
            await ctx.call_tool(ev.tool, **ev.params)
        except ToolTimeout as exc:
            return StopEvent(result={"caught": "ToolTimeout", **facts(exc)})
        except TimeoutError as exc:
            return StopEvent(result={"caught": "TimeoutError", **facts(exc)})
        return StopEvent(result="not caught")


class Fallback(Workflow):
    queue = "itest"

    @step
    async def answer(self, ctx: Context, ev: ToolCase) -> StopEvent:
        try:
            await ctx.call_tool(ev.tool, **ev.params)
        except LocalError as exc:
            return StopEvent(result={"caught": "LocalError", **facts(exc)})
        except InvalidInputError as exc:
            return StopEvent(result={"caught": "InvalidInputError", **facts(exc)})
        except ToolError as exc:
            return StopEvent(result={"caught": "ToolError", **facts(exc)})
        return StopEvent(result="not caught")


class LetsToolFail(Workflow):
    queue = "itest"

    @step
    async def answer(self, ctx: Context, ev: ToolCase) -> StopEvent:
        return StopEvent(result=await ctx.call_tool(ev.tool, **ev.params))


class TriesTool(Workflow):
    queue = "itest"

    @step
    async def answer(self, ctx: Context, ev: ToolCase) -> StopEvent:
        result = await ctx.try_tool(ev.tool, **ev.params)
        return StopEvent(result=result.model_dump(mode="json"))


def facts(exc: BaseException) -> dict[str, Any]:
    """What a step can read off the error ``ctx.call_tool`` raised."""
    return {
        "tool_error": isinstance(exc, ToolError),
        "tool": getattr(exc, "tool", None),
        "type": getattr(exc, "type", None),
        "attempts": getattr(exc, "attempts", None),
        "retryable": getattr(exc, "retryable", None),
    }

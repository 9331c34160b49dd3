"""A tool's own exception reaches the calling step as itself *and* as a ToolError.

Ported LlamaIndex code awaits a plain async function and writes ``except KeyError`` around it;
made a ``@tool`` and called with ``ctx.call_tool``, the same ``except`` must still work. These
tests run in-process, and rebuild the error from its journaled data exactly as a worker's replay
of the step does (``tool_error_from_info``); the distributed runs are in
``tests/integration/test_tool_original_exceptions_distributed.py``.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from workflows import (
    BatonError,
    Context,
    ErrorInfo,
    HumanResponseEvent,
    InputRequiredEvent,
    InvalidInputError,
    Retry,
    StartEvent,
    StepFailedError,
    StopEvent,
    ToolError,
    ToolResult,
    ToolTimeout,
    Workflow,
    step,
    tool,
)
from workflows._engine.backend import Invocation, call_tool_inline
from workflows._engine.records import JournalEntry
from workflows.errors import error_from_info
from workflows.tools import get_tool, tool_error_from_info

from .helpers import run_sync

ORDERS = {"A100": "kettle"}
CALLS: list[str] = []  # every tool execution, to tell a replay from a second call


class OrderNotFound(LookupError):
    """A user exception whose ``__init__`` requires an argument and keeps attributes."""

    def __init__(self, order_id: str) -> None:
        super().__init__(f"no order {order_id}")
        self.order_id = order_id
        self.searched = ["orders", "archive"]
        self.connection = object()  # cannot travel as JSON


class Picky(Exception):
    """Refuses to be subclassed: no combined class can be made."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        raise TypeError("Picky takes no subclasses")


def _local_error() -> type[Exception]:
    class LocalError(Exception):
        pass

    return LocalError


LocalError = _local_error()  # qualname `_local_error.<locals>.LocalError`: data cannot name it

RAISED: dict[str, Callable[[], BaseException]] = {
    "local": lambda: LocalError("from a function"),
    "picky": lambda: Picky("picky"),
    "baton": lambda: InvalidInputError("bad order id"),
    "own_timeout": lambda: TimeoutError("upstream took too long"),
}


@tool
async def tox_lookup(order_id: str) -> str:
    """The plain async function of a LlamaIndex agent, now a tool."""
    CALLS.append("tox_lookup")
    return ORDERS[order_id]


@tool
def tox_lookup_sync(order_id: str) -> str:
    return ORDERS[order_id]


@tool(retry=Retry(max_attempts=2))
async def tox_lookup_retried(order_id: str) -> str:
    return ORDERS[order_id]


@tool
async def tox_find(order_id: str) -> str:
    raise OrderNotFound(order_id)


@tool
async def tox_raise(case: str) -> str:
    CALLS.append(f"tox_raise:{case}")
    raise RAISED[case]()


@tool
def tox_raise_sync(case: str) -> str:
    raise RAISED[case]()


@tool(timeout=5.0)
async def tox_raise_bounded(case: str) -> str:
    raise RAISED[case]()


@tool(timeout=0.05)
async def tox_stall() -> str:
    await asyncio.sleep(5)
    return "late"


class Lookup(StartEvent):
    order_id: str
    tool: str = "tox_lookup"


class Probe(StartEvent):
    tool: str
    params: dict[str, Any] = {}


class OrderAgent(Workflow):
    """A step as LlamaIndex users write it: a missing order is a KeyError."""

    @step
    async def answer(self, ctx: Context, ev: Lookup) -> StopEvent:
        try:
            item = await ctx.call_tool(ev.tool, order_id=ev.order_id)
        except KeyError as exc:
            return StopEvent(result=f"no such order: {exc.args[0]}")
        return StopEvent(result=f"order {ev.order_id}: {item}")


class Catcher(Workflow):
    """Keeps what ``ctx.call_tool`` raised, for the test to look at."""

    def __init__(self) -> None:
        super().__init__()
        self.caught: list[Exception] = []

    @step
    async def call(self, ctx: Context, ev: Probe) -> StopEvent:
        try:
            await ctx.call_tool(ev.tool, **ev.params)
        except Exception as exc:
            self.caught.append(exc)
        return StopEvent(result=None)


class LetsInlineToolFail(Workflow):
    """Does not catch its tool's KeyError."""

    @step
    async def answer(self, ctx: Context, ev: Lookup) -> StopEvent:
        return StopEvent(result=await ctx.call_tool(ev.tool, order_id=ev.order_id))


class Question(InputRequiredEvent):
    prompt: str


class Reply(HumanResponseEvent):
    text: str


class AsksAfterToolFailure(Workflow):
    """Catches a tool's exception, then asks a human: the answer replays the step."""

    @step
    async def ask(self, ctx: Context, ev: Probe) -> StopEvent:
        try:
            await ctx.call_tool(ev.tool, **ev.params)
        except LocalError as exc:
            reply = await ctx.wait_for_event(Reply, waiter_event=Question(prompt=str(exc)))
            return StopEvent(result=reply.text)
        return StopEvent(result="not caught")


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body in a fresh event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def caught(tool_name: str, **params: Any) -> Exception:
    """What ``ctx.call_tool(tool_name, **params)`` raised in an in-process step."""
    wf = Catcher()
    run_sync(wf, Probe(tool=tool_name, params=params))
    assert len(wf.caught) == 1
    return wf.caught[0]


def replayed(err: BaseException) -> ToolError:
    """The error a worker's replay of the step raises: rebuilt from the journal's JSON."""
    assert isinstance(err, ToolError)
    entry = JournalEntry.error(err.to_info(err.attempts))
    wire = json.loads(entry.to_json())
    return tool_error_from_info(ErrorInfo.model_validate(wire["error"]))


# --- the step catches the tool's exception by its class ------------------------------------


@pytest.mark.parametrize("tool_name", ["tox_lookup", "tox_lookup_sync", "tox_lookup_retried"])
def test_except_key_error_around_call_tool_catches_a_tools_key_error_as_in_llamaindex(
    tool_name: str,
) -> None:
    assert run_sync(OrderAgent(), order_id="A100", tool=tool_name) == "order A100: kettle"
    result = run_sync(OrderAgent(), order_id="Z999", tool=tool_name)
    assert result == "no such order: Z999"


@pytest.mark.parametrize("source", [caught, replayed], ids=["in-process", "from the journal"])
def test_the_key_error_is_still_a_tool_error_with_its_type_tool_and_attempts(
    source: Callable[..., BaseException],
) -> None:
    err = caught("tox_lookup_retried", order_id="Z999")
    if source is replayed:
        err = replayed(err)
    assert isinstance(err, KeyError) and isinstance(err, ToolError)
    assert err.args == ("Z999",) and str(err) == "'Z999'"
    assert (err.type, err.tool, err.attempts, err.retryable) == (
        "KeyError",
        "tox_lookup_retried",
        2,
        True,
    )
    assert err.message == "'Z999'"
    assert err.__notes__ == ["raised by tool tox_lookup_retried"]  # tracebacks name the tool
    assert err.original is not None and err.original.type == "builtins:KeyError"


def test_in_process_the_tools_own_exception_is_the_cause() -> None:
    err = caught("tox_lookup", order_id="Z999")
    assert type(err.__cause__) is KeyError and err.__cause__.args == ("Z999",)


def test_a_user_exception_keeps_its_args_and_attributes() -> None:
    err = caught("tox_find", order_id="Z999")
    assert isinstance(err, OrderNotFound) and isinstance(err, LookupError)
    assert isinstance(err, ToolError) and err.type == "OrderNotFound"
    assert err.args == ("no order Z999",) and str(err) == "no order Z999"
    assert (err.order_id, err.searched) == ("Z999", ["orders", "archive"])
    assert isinstance(err.connection, object)  # in-process: even what JSON cannot hold


def test_from_the_journal_a_user_exception_keeps_its_json_attributes_only() -> None:
    err = replayed(caught("tox_find", order_id="Z999"))
    assert isinstance(err, OrderNotFound) and isinstance(err, ToolError)
    assert err.args == ("no order Z999",)
    assert (err.order_id, err.searched) == ("Z999", ["orders", "archive"])
    assert not hasattr(err, "connection")


def test_the_journal_keeps_the_tools_exception_as_json_data() -> None:
    err = caught("tox_find", order_id="Z999")
    assert isinstance(err, ToolError)
    wire = json.loads(JournalEntry.error(err.to_info()).to_json())
    assert wire["error"]["type"] == "ToolError"
    assert wire["error"]["details"]["original"] == {
        "type": f"{__name__}:OrderNotFound",
        "args": ["no order Z999"],
        "attrs": {"order_id": "Z999", "searched": ["orders", "archive"]},
    }


@in_loop
async def test_try_tool_still_returns_the_failure_as_data() -> None:
    class TryLookup(Workflow):
        @step
        async def answer(self, ctx: Context, ev: Lookup) -> StopEvent:
            return StopEvent(result=await ctx.try_tool("tox_lookup", order_id=ev.order_id))

    result = await TryLookup().run(order_id="Z999")
    assert isinstance(result, ToolResult) and not result.ok and result.error is not None
    assert (result.error.type, result.error.message, result.error.attempts) == (
        "ToolError",
        "'Z999'",
        1,
    )
    assert result.error.details["type"] == "KeyError"
    assert result.error.details["tool"] == "tox_lookup"
    assert result.error.details["original"] == {
        "type": "builtins:KeyError",
        "args": ["Z999"],
        "attrs": {},
    }


# --- where the class cannot, or should not, be rebuilt: a plain ToolError ------------------


def test_a_baton_error_raised_by_a_tool_stays_a_plain_tool_error_keeping_retryable() -> None:
    for err in (caught("tox_raise", case="baton"), replayed(caught("tox_raise", case="baton"))):
        assert type(err) is ToolError and not isinstance(err, InvalidInputError)
        assert (err.type, err.retryable, err.original) == ("InvalidInputError", False, None)


def test_a_class_no_subclass_can_be_made_of_gives_a_plain_tool_error_with_the_data() -> None:
    err = caught("tox_raise", case="picky")
    assert type(err) is ToolError and err.type == "Picky"
    assert err.original is not None and err.original.type == f"{__name__}:Picky"
    assert type(replayed(err)) is ToolError


def test_a_class_defined_in_a_function_is_caught_in_process_and_plain_from_data() -> None:
    err = caught("tox_raise", case="local")
    assert isinstance(err, LocalError) and isinstance(err, ToolError)
    from_data = replayed(err)
    assert type(from_data) is ToolError and from_data.type == "LocalError"
    assert from_data.original is not None and "<locals>" in from_data.original.type


@pytest.mark.parametrize(
    "original",
    [
        pytest.param({"type": "__main__:KeyError", "args": ["k"]}, id="another program's main"),
        pytest.param({"type": "no.such.module:Oops"}, id="a module not imported here"),
        pytest.param({"type": "json:dumps"}, id="not an exception class"),
        pytest.param({"args": "not a list"}, id="malformed"),
    ],
)
def test_data_naming_no_usable_class_gives_a_plain_tool_error(original: dict[str, Any]) -> None:
    info = ErrorInfo(
        type="ToolError",
        message="'k'",
        details={"tool": "t", "type": "KeyError", "original": original},
    )
    err = tool_error_from_info(info)
    assert type(err) is ToolError and (err.tool, err.type, err.message) == ("t", "KeyError", "'k'")


def test_journal_data_from_before_originals_still_gives_a_tool_error() -> None:
    info = ErrorInfo(type="ToolError", message="m", details={"tool": "t", "type": "KeyError"})
    err = tool_error_from_info(info)
    assert type(err) is ToolError and err.original is None


# --- timeouts ----------------------------------------------------------------------------


def test_a_tool_past_its_timeout_is_a_tool_timeout_not_a_timeout_error() -> None:
    err = caught("tox_stall")
    assert type(err) is ToolTimeout and isinstance(err, ToolError)
    assert not isinstance(err, TimeoutError)
    assert (err.type, err.original) == ("ToolTimeout", None)
    assert type(replayed(err)) is ToolTimeout


@pytest.mark.parametrize("tool_name", ["tox_raise", "tox_raise_sync", "tox_raise_bounded"])
def test_a_timeout_error_the_tool_raises_itself_is_its_exception_not_a_tool_timeout(
    tool_name: str,
) -> None:
    for err in (
        caught(tool_name, case="own_timeout"),
        replayed(caught(tool_name, case="own_timeout")),
    ):
        assert isinstance(err, TimeoutError) and isinstance(err, ToolError)
        assert not isinstance(err, ToolTimeout)
        assert (err.type, err.args) == ("TimeoutError", ("upstream took too long",))


# --- an exception the step lets through: the run's error ----------------------------------


@in_loop
async def test_except_key_error_around_run_catches_a_tools_key_error_the_step_let_through() -> None:
    try:
        await LetsInlineToolFail().run(order_id="Z999")
    except KeyError as exc:
        err: BaseException = exc
    else:
        raise AssertionError("no KeyError")
    assert isinstance(err, StepFailedError) and err.args == ("Z999",)
    assert (err.step, err.cause_type) == ("LetsInlineToolFail.answer", "ToolError")
    assert (
        err.message == "step LetsInlineToolFail.answer failed after 1 attempt(s): ToolError: 'Z999'"
    )
    assert err.__notes__ == ["raised by tool tox_lookup", err.message]
    cause = err.__cause__
    assert isinstance(cause, ToolError) and isinstance(cause, KeyError)
    assert (cause.tool, cause.type) == ("tox_lookup", "KeyError")


def test_a_client_rebuilds_that_run_error_as_a_key_error_from_data() -> None:
    with pytest.raises(StepFailedError) as info:
        run_sync(LetsInlineToolFail(), order_id="Z999")
    err = error_from_info(info.value.to_info())  # what a client does with the run's error data
    assert isinstance(err, StepFailedError) and isinstance(err, KeyError)
    assert err.args == ("Z999",) and err.cause_type == "ToolError"
    assert not isinstance(err, ToolError)
    assert isinstance(err, BatonError)


# --- a replay in this process raises the error as it was first raised -----------------------


@in_loop
async def test_a_step_replayed_after_a_wait_catches_its_tools_exception_again() -> None:
    CALLS.clear()
    handler = AsksAfterToolFailure().run(Probe(tool="tox_raise", params={"case": "local"}))
    async for ev in handler.stream_events():
        if isinstance(ev, Question):
            assert ev.prompt == "from a function"
            handler.ctx.send_event(Reply(text="carry on"))
    assert await handler == "carry on"
    assert CALLS == ["tox_raise:local"]  # the replay answered the call from its journal


@in_loop
async def test_on_a_worker_an_inline_tool_raises_at_once_what_a_replay_will_raise() -> None:
    # A worker's replay may run on another process, with only the journal: the first execution
    # raises the error that data rebuilds, so both take the same path through the step.
    inv = Invocation("inv", "W.s", StartEvent())
    with pytest.raises(ToolError) as info:
        await call_tool_inline(
            inv, "c1", get_tool("tox_raise"), {"case": "local"}, from_journal=True
        )
    assert type(info.value) is ToolError and info.value.type == "LocalError"
    assert isinstance(info.value.__cause__, LocalError)
    assert inv.journal["c1"].failed and not inv.raised

"""A tool's own exception reaches the calling step as itself and as a ToolError, in both
runtimes: in-process, and on workers, where a distributed tool's failure comes back to the
replayed step as data in the journal (no pickle crosses) and an in-process-mode tool's failure
is raised as that data rebuilds it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.client import Client
from tests.harness import Worker
from tests.integration.tool_error_flows import (
    Fallback,
    LetsToolFail,
    OrderDesk,
    OrderFinder,
    TriesTool,
    Upstream,
)
from workflows import StepFailedError, ToolError, Workflow

RUNTIMES = ["inprocess", "distributed"]


def run(runtime: str, client: Client, workflow: type[Workflow], **kwargs: Any) -> Any:
    """``await workflow().run(...)`` in this process, or the same run on the workers."""
    if runtime == "inprocess":

        async def go() -> Any:
            return await workflow().run(**kwargs)

        return asyncio.run(go())
    return client.submit(workflow, **kwargs).result(timeout=60)


def tool_facts(tool: str, type_: str, attempts: int = 1, retryable: bool = True) -> dict[str, Any]:
    return {
        "tool_error": True,
        "tool": tool,
        "type": type_,
        "attempts": attempts,
        "retryable": retryable,
    }


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize(
    ("tool", "attempts"),
    [
        pytest.param("tef_lookup", 1, id="a sync tool task"),
        pytest.param("tef_lookup_async", 1, id="an async tool task"),
        pytest.param("tef_lookup_here", 1, id="an in-process-mode tool"),
        pytest.param("tef_lookup_retried", 2, id="a tool retried once"),
    ],
)
def test_except_key_error_around_call_tool_catches_a_tools_key_error(
    client: Client, workers: Worker, runtime: str, tool: str, attempts: int
) -> None:
    found = run(runtime, client, OrderDesk, tool=tool, params={"order_id": "A100"})
    assert found == {"item": "kettle"}
    missing = run(runtime, client, OrderDesk, tool=tool, params={"order_id": "Z999"})
    assert missing == {"missing": "Z999", **tool_facts(tool, "KeyError", attempts), "then": 2}


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("tool", ["tef_find", "tef_find_here"])
def test_a_tools_own_exception_class_comes_back_with_its_args_and_json_attributes(
    client: Client, workers: Worker, runtime: str, tool: str
) -> None:
    result = run(runtime, client, OrderFinder, tool=tool, params={"order_id": "Z999"})
    assert result == {
        "order_id": "Z999",
        "searched": ["orders", "archive"],
        "args": ["no order Z999"],
        **tool_facts(tool, "OrderNotFound"),
    }


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize(
    ("tool", "params", "caught", "type_"),
    [
        pytest.param("tef_stall", {}, "ToolTimeout", "ToolTimeout", id="past its timeout"),
        pytest.param(
            "tef_raise", {"case": "own_timeout"}, "TimeoutError", "TimeoutError", id="its own"
        ),
        pytest.param(
            "tef_raise_here",
            {"case": "own_timeout"},
            "TimeoutError",
            "TimeoutError",
            id="its own, in-process-mode",
        ),
    ],
)
def test_a_tool_timeout_is_a_tool_timeout_and_a_tools_own_timeout_error_a_timeout_error(
    client: Client,
    workers: Worker,
    runtime: str,
    tool: str,
    params: dict[str, Any],
    caught: str,
    type_: str,
) -> None:
    result = run(runtime, client, Upstream, tool=tool, params=params)
    assert result == {"caught": caught, **tool_facts(tool, type_)}


@pytest.mark.parametrize(
    ("runtime", "tool", "caught"),
    [
        pytest.param("inprocess", "tef_raise", "LocalError", id="in-process: the live class"),
        pytest.param("distributed", "tef_raise", "ToolError", id="a tool task"),
        pytest.param("distributed", "tef_raise_here", "ToolError", id="in-process-mode, worker"),
    ],
)
def test_a_class_the_data_cannot_name_is_a_plain_tool_error_on_workers(
    client: Client, workers: Worker, runtime: str, tool: str, caught: str
) -> None:
    result = run(runtime, client, Fallback, tool=tool, params={"case": "local"})
    assert result == {"caught": caught, **tool_facts(tool, "LocalError")}


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("tool", ["tef_raise", "tef_raise_here"])
def test_a_baton_error_raised_by_a_tool_is_a_plain_tool_error_keeping_retryable(
    client: Client, workers: Worker, runtime: str, tool: str
) -> None:
    result = run(runtime, client, Fallback, tool=tool, params={"case": "baton"})
    assert result == {"caught": "ToolError", **tool_facts(tool, "InvalidInputError", 1, False)}


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("tool", ["tef_lookup", "tef_lookup_here"])
def test_except_key_error_around_the_run_catches_a_tools_key_error_the_step_let_through(
    client: Client, workers: Worker, runtime: str, tool: str
) -> None:
    try:
        run(runtime, client, LetsToolFail, tool=tool, params={"order_id": "Z999"})
    except KeyError as exc:
        err: BaseException = exc
    else:
        raise AssertionError("no KeyError")
    assert isinstance(err, StepFailedError) and not isinstance(err, ToolError)
    assert err.args == ("Z999",) and str(err) == "'Z999'"
    assert (err.step, err.cause_type) == ("LetsToolFail.answer", "ToolError")
    assert err.message == "step LetsToolFail.answer failed after 1 attempt(s): ToolError: 'Z999'"
    assert f"raised by tool {tool}" in err.__notes__
    assert err.cause is not None and err.cause.details["tool"] == tool


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("tool", ["tef_lookup", "tef_lookup_here"])
def test_try_tool_returns_the_failure_as_data_with_the_original_exception(
    client: Client, workers: Worker, runtime: str, tool: str
) -> None:
    result = run(runtime, client, TriesTool, tool=tool, params={"order_id": "Z999"})
    traceback = result["error"]["details"].pop("traceback")  # issue #10: named, then pinned
    assert f"in {tool}" in traceback and traceback.rstrip().endswith("KeyError: 'Z999'")
    assert result == {
        "ok": False,
        "value": None,
        "error": {
            "type": "ToolError",
            "message": "'Z999'",
            "attempts": 1,
            "retryable": True,
            "details": {
                "tool": tool,
                "type": "KeyError",
                "attempts": 1,
                "retryable": True,
                "original": {"type": "builtins:KeyError", "args": ["Z999"], "attrs": {}},
            },
        },
    }

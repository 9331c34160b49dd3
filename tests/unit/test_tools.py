"""Tools: validated arguments, exported schemas, timeouts, bounded retries, errors as data."""

from __future__ import annotations

import time
from typing import Any

import pytest

import examples.tools  # noqa: F401  (registers add, slow, flaky, always_fails, ...)
from workflows import (
    Context,
    Event,
    Retry,
    StartEvent,
    StepFailedError,
    StopEvent,
    ToolError,
    ToolTimeout,
    UnknownToolError,
    Workflow,
    step,
)
from workflows.errors import type_name
from workflows.tools import get_tool

from .helpers import run_sync


class ToolProbe(StartEvent):
    tool: str
    params: dict[str, Any] = {}


class Called(Event):
    outcome: dict[str, Any]


class ToolCaller(Workflow):
    """Calls a tool, turns a ToolError into data, and carries on to a second step."""

    @step
    async def call(self, ctx: Context, ev: ToolProbe) -> Called:
        try:
            value = await ctx.call_tool(ev.tool, **ev.params)
        except ToolError as exc:
            error = {
                "class": type_name(exc),  # Baton's class (it is also a RuntimeError, ...)
                "type": exc.type,
                "message": exc.message,
                "attempts": exc.attempts,
            }
            return Called(outcome={"error": error})
        return Called(outcome={"value": value})

    @step
    async def after(self, ev: Called) -> StopEvent:
        return StopEvent(result={**ev.outcome, "continued": True})


def probe(tool: str, **params: Any) -> Any:
    return run_sync(ToolCaller(), tool=tool, params=params)


def test_a_tool_returns_its_value_to_the_step() -> None:
    assert probe("add", a=2, b=40) == {"value": 42, "continued": True}


def test_failing_tool_raises_tool_error_in_the_step_and_the_run_continues() -> None:
    assert probe("always_fails") == {
        "error": {
            "class": "ToolError",
            "type": "RuntimeError",
            "message": "always_fails failed on purpose",
            "attempts": 3,
        },
        "continued": True,
    }


def test_tool_past_its_timeout_raises_tool_timeout_within_a_small_margin() -> None:
    began = time.monotonic()
    result = probe("slow", seconds=30.0)
    elapsed = time.monotonic() - began
    assert result["error"] == {
        "class": "ToolTimeout",
        "type": "ToolTimeout",
        "message": "tool slow timed out after 1.0s",
        "attempts": 1,
    }
    assert 1.0 <= elapsed < 3.0
    assert issubclass(ToolTimeout, ToolError)


def test_flaky_tool_is_retried_and_succeeds_on_attempt_3() -> None:
    assert probe("flaky", key="k", fail_times=2) == {
        "value": {"key": "k", "attempts": 3},
        "continued": True,
    }


def test_retries_stop_at_max_attempts_and_the_error_says_how_many() -> None:
    result = probe("flaky", key="k", fail_times=100)
    assert result["error"] == {
        "class": "ToolError",
        "type": "RuntimeError",
        "message": "flaky k: attempt 3 failed on purpose",
        "attempts": 3,
    }
    assert get_tool("flaky").retry.max_attempts == 3


def test_invalid_tool_arguments_are_a_tool_error_of_type_invalid_arguments_not_retried() -> None:
    error = probe("flaky", key="k", fail_times="many")["error"]
    assert (error["class"], error["type"], error["attempts"]) == (
        "ToolError",
        "InvalidArguments",
        1,
    )
    assert "fail_times" in error["message"]
    unexpected = probe("add", a=1, b=2, c=3)["error"]
    assert (unexpected["type"], "c\n  Extra inputs are not permitted" in unexpected["message"]) == (
        "InvalidArguments",
        True,
    )


def test_unknown_tool_name_is_an_unknown_tool_error() -> None:
    with pytest.raises(UnknownToolError, match=r"no tool named 'nope' \(registered: .*add"):
        get_tool("nope")


class CallsUnknownTool(Workflow):
    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[int] = []

    @step(retry=Retry(max_attempts=3))
    async def call(self, ctx: Context, ev: StartEvent) -> StopEvent:
        self.attempts.append(ctx.attempt)
        return StopEvent(result=await ctx.call_tool("nope"))


def test_calling_an_unknown_tool_fails_the_step_at_once_with_unknown_tool_error() -> None:
    wf = CallsUnknownTool()
    with pytest.raises(StepFailedError) as info:
        run_sync(wf)
    assert isinstance(info.value.__cause__, UnknownToolError)
    assert (info.value.cause_type, info.value.step) == ("UnknownToolError", "CallsUnknownTool.call")
    assert wf.attempts == [1]


def test_a_tool_exports_its_json_schema() -> None:
    assert get_tool("add").json_schema() == {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "additionalProperties": False,
            "properties": {
                "a": {"title": "A", "type": "integer"},
                "b": {"title": "B", "type": "integer"},
            },
            "required": ["a", "b"],
            "title": "add_args",
            "type": "object",
        },
    }


def test_the_tool_context_parameter_is_not_part_of_the_schema() -> None:
    params = get_tool("flaky").json_schema()["parameters"]
    assert list(params["properties"]) == ["key", "fail_times"]
    assert params["required"] == ["key", "fail_times"]

"""A failed step's or tool's error carries its formatted traceback, size-capped (issue #10, 2).

In-process: the run's StepFailedError and a tool's ToolError keep the traceback of the
exception that was raised in ``details["traceback"]`` — JSON text that names the raising
function — without changing the error's type, message or the combined original class.
"""

from __future__ import annotations

import json

import pytest

from workflows import (
    Context,
    StartEvent,
    StepFailedError,
    StopEvent,
    ToolError,
    Workflow,
    step,
    tool,
)
from workflows._error_root import MAX_TRACEBACK_CHARS, traceback_text
from workflows.errors import error_from_info

from .helpers import run_sync


class TbCase(StartEvent):
    depth: int = 0


def tb_innermost_raiser(depth: int) -> None:
    if depth > 0:
        tb_pong(depth - 1)  # alternating frames: Python folds only a repeated one
        return
    raise KeyError("tb-missing")


def tb_pong(depth: int) -> None:
    tb_innermost_raiser(depth)


class TbRaiser(Workflow):
    @step
    async def explode(self, ev: TbCase) -> StopEvent:
        tb_innermost_raiser(ev.depth)
        return StopEvent(result="unreachable")


@tool
def tb_failing_tool(order_id: str) -> str:
    raise LookupError(f"no order {order_id}")


class TbTriesTool(Workflow):
    @step
    async def answer(self, ctx: Context, ev: TbCase) -> StopEvent:
        result = await ctx.try_tool("tb_failing_tool", order_id="Z1")
        return StopEvent(result=result)


class TbLetsToolFail(Workflow):
    @step
    async def answer(self, ctx: Context, ev: TbCase) -> StopEvent:
        return StopEvent(result=await ctx.call_tool("tb_failing_tool", order_id="Z2"))


def step_failure(depth: int = 0) -> StepFailedError:
    with pytest.raises(StepFailedError) as info:
        run_sync(TbRaiser(), depth=depth)
    return info.value


def test_a_failed_steps_error_details_carry_a_traceback_naming_the_raising_function() -> None:
    err = step_failure()
    text = err.details["traceback"]
    assert text.startswith("Traceback (most recent call last):")
    assert "in tb_innermost_raiser" in text and "in explode" in text
    assert text.rstrip().endswith("KeyError: 'tb-missing'")


def test_the_traceback_travels_as_json_and_survives_a_rebuild_from_data() -> None:
    info = step_failure().to_info()
    wire = json.loads(json.dumps(info.model_dump(mode="json")))
    rebuilt = error_from_info(type(info).model_validate(wire))
    assert isinstance(rebuilt, StepFailedError)
    assert rebuilt.details["traceback"] == info.details["traceback"]
    assert "in tb_innermost_raiser" in rebuilt.details["traceback"]


def test_the_traceback_changes_neither_type_message_nor_the_original_class() -> None:
    err = step_failure()
    assert isinstance(err, KeyError)  # still the step's own exception class too
    assert err.args == ("tb-missing",)
    info = err.to_info()
    assert info.type == "StepFailedError"
    assert info.message == "step TbRaiser.explode failed after 1 attempt(s): KeyError: 'tb-missing'"
    assert info.details["original"]["type"] == "builtins:KeyError"


def test_a_huge_traceback_is_capped_keeping_its_innermost_frames_and_a_cut_marker() -> None:
    text = step_failure(depth=400).details["traceback"]
    assert len(text) <= MAX_TRACEBACK_CHARS
    assert text.startswith("... traceback cut: ")
    assert "in tb_innermost_raiser" in text and "in explode" not in text  # the outer cut
    assert text.rstrip().endswith("KeyError: 'tb-missing'")
    assert text.splitlines()[1].startswith("  File ")  # the kept part starts at a whole line


def test_a_short_traceback_is_kept_whole() -> None:
    try:
        tb_innermost_raiser(0)
    except KeyError as exc:
        text = traceback_text(exc)
    assert "cut" not in text and text.startswith("Traceback")
    assert len(traceback_text(ValueError("never raised"))) < 100


def test_a_failed_tool_calls_error_carries_the_tools_traceback() -> None:
    result = run_sync(TbTriesTool())
    assert result.error is not None
    assert (result.error.type, result.error.message) == ("ToolError", "no order Z1")
    text = result.error.details["traceback"]
    assert "in tb_failing_tool" in text and "LookupError: no order Z1" in text


def test_a_tool_error_a_step_lets_through_keeps_the_tools_traceback_as_its_cause() -> None:
    with pytest.raises(StepFailedError) as info:
        run_sync(TbLetsToolFail())
    details = info.value.to_info().details
    assert "in answer" in details["traceback"]  # the step's frame, where call_tool raised
    assert "in tb_failing_tool" in details["cause"]["details"]["traceback"]
    assert isinstance(info.value, LookupError) and isinstance(info.value, StepFailedError)


def test_a_tool_error_rebuilt_from_data_keeps_the_traceback() -> None:
    err = ToolError("x", tool="t", traceback="Traceback ...\nValueError: x\n")
    rebuilt = error_from_info(err.to_info())
    assert isinstance(rebuilt, ToolError)
    assert rebuilt.traceback == "Traceback ...\nValueError: x\n"

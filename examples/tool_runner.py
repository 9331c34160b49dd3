"""Run any registered tool by name and get its outcome as data: the seed "tool workflow".

``ToolRunner`` takes ``ToolRequest(tool=..., params={...})`` and never fails because of the
tool: its result is ``{"tool", "ok": True, "result"}`` or ``{"tool", "ok": False, "error":
{"type", "message", "attempts"}}`` — the way an agent loop wants tool failures reported.
"""

from __future__ import annotations

from typing import Any

from workflows import Context, StartEvent, StopEvent, UnknownToolError, Workflow, step


class ToolRequest(StartEvent):
    """Which tool to call, with which arguments."""

    tool: str
    params: dict[str, Any] = {}


class ToolRunner(Workflow):
    """Call one tool and return its result or its error as JSON data."""

    @step
    async def call(self, ctx: Context, ev: ToolRequest) -> StopEvent:
        try:
            outcome = await ctx.try_tool(ev.tool, **ev.params)
        except UnknownToolError as exc:
            error = {"type": type(exc).__name__, "message": exc.message, "attempts": 0}
            return StopEvent(result={"tool": ev.tool, "ok": False, "error": error})
        if outcome.ok:
            return StopEvent(result={"tool": ev.tool, "ok": True, "result": outcome.value})
        assert outcome.error is not None
        error = {
            "type": outcome.error.details.get("type", outcome.error.type),
            "message": outcome.error.message,
            "attempts": outcome.error.attempts,
        }
        return StopEvent(result={"tool": ev.tool, "ok": False, "error": error})

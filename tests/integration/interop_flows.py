"""Test-only tools and a workflow for Celery interop: shop tasks with short timeouts, retries
and in-process placement, and a probe that reports a tool call's value or its error as data."""

from __future__ import annotations

from typing import Any

from app.interop import tool_from_task
from examples.celery_shop.tasks import charge, price
from workflows import Context, Retry, StartEvent, StopEvent, ToolError, ToolTimeout, Workflow, step

tool_from_task(charge, name="shop_charge_quick", timeout=1.5)
tool_from_task(charge, name="shop_charge_twice", timeout=20, retry=Retry(max_attempts=2))
tool_from_task(charge, name="shop_charge_patient", timeout=40)
tool_from_task(price, name="shop_price_here", mode="inprocess", timeout=5)


class Probe(StartEvent):
    tool: str
    args: dict[str, Any]


class CallProbe(Workflow):
    """One tool call: its value, or its error as data."""

    queue = "baton"

    @step
    async def call(self, ctx: Context, ev: Probe) -> StopEvent:
        try:
            value = await ctx.call_tool(ev.tool, **ev.args)
        except ToolError as err:
            error = {
                "type": err.type,
                "message": err.message,
                "attempts": err.attempts,
                "timeout": isinstance(err, ToolTimeout),
                "traceback": bool(err.traceback),
            }
            return StopEvent(result={"error": error})
        return StopEvent(result={"ok": value})

"""A workflow that does work, then pauses for an answer: imported by the snapshot tests and
by the process that resumes the run."""

from __future__ import annotations

import os
from pathlib import Path

from workflows import (
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    ToolContext,
    Workflow,
    step,
    tool,
)


@tool
def unit_reserve(item: str, ctx: ToolContext) -> str:
    """Reserve an item; every execution appends a line to $UNIT_EFFECTS_FILE."""
    with Path(os.environ["UNIT_EFFECTS_FILE"]).open("a") as fh:
        fh.write(f"{item} {os.getpid()}\n")
    return f"R-{item}"


class CheckoutInput(StartEvent):
    item: str


class Reserved(Event):
    reservation: str


class PaymentRequested(InputRequiredEvent):
    reservation: str


class Payment(HumanResponseEvent):
    paid: bool
    by: str


class CartCheckout(Workflow):
    @step
    async def reserve(self, ctx: Context, ev: CheckoutInput) -> Reserved:
        await ctx.store.set("order.item", ev.item)
        return Reserved(reservation=await ctx.call_tool("unit_reserve", item=ev.item))

    @step
    async def pay(self, ctx: Context, ev: Reserved) -> StopEvent:
        receipt = await ctx.call_tool("unit_reserve", item="receipt")
        answer = await ctx.wait_for_event(
            Payment, waiter_event=PaymentRequested(reservation=ev.reservation)
        )
        return StopEvent(
            result={
                "item": await ctx.store.get("order.item"),
                "reservation": ev.reservation,
                "receipt": receipt,
                "paid": answer.paid,
                "by": answer.by,
            }
        )

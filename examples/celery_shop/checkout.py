"""Baton's side of the shop: two shop tasks as tools, and a workflow that calls them.

Imported by Baton's workers (``BATON_IMPORTS=examples.celery_shop.checkout``) and by whoever
submits ``Checkout``. Prices are looked up in parallel, then the customer is charged; each call
is a shop task's own message on the ``shop`` queue, answered through its callbacks.
"""

from __future__ import annotations

import asyncio
from typing import Any

from app.interop import tool_from_task
from examples.celery_shop.tasks import charge, price
from workflows import Context, Retry, StartEvent, StopEvent, Workflow, step

price_tool = tool_from_task(price, name="shop_price", timeout=10, retry=Retry(max_attempts=2))
charge_tool = tool_from_task(charge, name="shop_charge", timeout=30)


class Order(StartEvent):
    customer: str
    items: list[str]
    hold: float = 0.0  # how long the payment gateway takes, seconds


class Checkout(Workflow):
    """Price an order's items (in parallel), charge the customer the total."""

    queue = "baton"

    @step
    async def bill(self, ctx: Context, ev: Order) -> StopEvent:
        prices = await asyncio.gather(*(ctx.call_tool("shop_price", item=i) for i in ev.items))
        total = round(sum(prices), 2)
        charged: dict[str, Any] = await ctx.call_tool(
            "shop_charge", customer=ev.customer, amount=total, hold=ev.hold
        )
        return StopEvent(
            result={"customer": ev.customer, "total": total, "charge": charged["charge"]}
        )

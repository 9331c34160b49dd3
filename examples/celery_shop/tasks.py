"""The shop's tasks: plain Celery tasks, as they were before Baton.

``charge`` is the one with an effect: it records each charge in a ledger once per idempotency
key (the key a caller passes, else the ``baton_call_id`` header Baton sends, else the task id),
so a call delivered twice charges once. It acks late: a worker killed mid-charge gets its
message back.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from celery import Task

from examples.celery_shop.app import shop

CATALOGUE = {"apple": 0.5, "pear": 0.75, "melon": 2.0, "kiwi": 0.25}
ORDERS = {
    "o1": {"customer": "alice", "items": ["apple", "pear", "melon"]},
    "o2": {"customer": "bob", "items": ["kiwi", "kiwi"]},
    "o-declined": {"customer": "mallory", "items": ["melon"]},
}
BLOCKED = {"mallory"}
LEDGER = "shop:ledger"  # idempotency key -> the charge (JSON)
ATTEMPTS = "shop:attempts"  # idempotency key -> how many times the charge ran


class CardDeclined(Exception):
    """The customer's card was declined."""


class UnknownItem(Exception):
    """No such item in the catalogue."""


def _ledger() -> Any:
    # the shop keeps its books in its result backend's Redis (its broker may be RabbitMQ)
    return redis.Redis.from_url(shop.conf.result_backend, decode_responses=True)


@shop.task(name="shop.fetch_order")
def fetch_order(order_id: str) -> dict[str, Any]:
    """An order's customer and items."""
    return dict(ORDERS[order_id])


@shop.task(name="shop.price")
def price(item: str, quantity: int = 1) -> float:
    """The price of ``quantity`` units of ``item``."""
    if item not in CATALOGUE:
        raise UnknownItem(f"no item {item!r} in the catalogue")
    return round(CATALOGUE[item] * quantity, 2)


@shop.task(name="shop.charge", bind=True, acks_late=True, reject_on_worker_lost=True)
def charge(
    self: Task,  # type: ignore[type-arg]
    customer: str,
    amount: float,
    hold: float = 0.0,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Charge ``customer`` ``amount``; ``hold``: seconds the payment gateway takes."""
    key = idempotency_key or self.request.get("baton_call_id") or self.request.id
    ledger = _ledger()
    ledger.hincrby(ATTEMPTS, key, 1)
    if hold:
        time.sleep(hold)
    if customer in BLOCKED:
        raise CardDeclined(f"card of {customer} declined")
    record = {"customer": customer, "amount": amount, "charge": f"ch-{key}"}
    ledger.hsetnx(LEDGER, key, json.dumps(record))  # once per key, however often it runs
    header = self.request.get("baton_call_id")
    return {**json.loads(ledger.hget(LEDGER, key)), "key": key, "call_header": header}


@shop.task(name="shop.receipt")
def receipt(checkout: dict[str, Any]) -> str:
    """A receipt line for a checkout's result."""
    return f"{checkout['customer']} paid {checkout['total']:.2f} ({checkout['charge']})"


@shop.task(name="shop.summarize")
def summarize(checkouts: list[dict[str, Any]]) -> dict[str, Any]:
    """A day's checkouts summed up (a chord's callback)."""
    return {
        "orders": len(checkouts),
        "revenue": round(sum(c["total"] for c in checkouts), 2),
        "customers": sorted(c["customer"] for c in checkouts),
    }

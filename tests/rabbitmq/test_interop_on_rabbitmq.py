"""Celery interop with RabbitMQ as the broker of Baton and of the plain app: a task-backed
tool's message and its callbacks pass Baton's outbox and RabbitMQ, and a Baton run in a chain
continues it through the plain app's own publishing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery, chain

from app.celery_app import create_app
from app.client import Client
from app.interop import baton_run
from config import Settings
from examples.celery_shop.app import configure
from tests.harness import RedisServer, Worker, worker_env
from tests.integration.test_celery_interop import IMPORTS
from tests.rabbit import RabbitServer

pytestmark = pytest.mark.integration


# sends the shop's tasks by name: the shop app of this process may already be bound to
# another broker and backend (Celery keeps its connections and backend once used)
SENDER = Celery("shop", set_as_current=False)  # named as the app the workers know


@pytest.fixture(scope="module")
def rabbit_shop(
    rabbit: RabbitServer, rabbit_redis: RedisServer, rabbit_dir: Path
) -> Iterator[Client]:
    prefix = f"rci{uuid.uuid4().hex[:6]}"
    configure(rabbit.url, f"{prefix}:q:", backend=rabbit_redis.url, app=SENDER)
    settings = Settings(
        redis_url=rabbit_redis.url, broker_url=rabbit.url, key_prefix=prefix, imports=IMPORTS
    )
    client = Client(runtime=create_app(settings)[1])
    env = worker_env(
        rabbit_redis.url,
        rabbit_dir,
        BATON_BROKER_URL=rabbit.url,
        BATON_KEY_PREFIX=prefix,
        BATON_IMPORTS=json.dumps(IMPORTS),
        SHOP_BROKER_URL=rabbit.url,
        SHOP_RESULT_BACKEND=rabbit_redis.url,
    )
    baton = Worker(env, ["baton"], 3, name=f"baton-{prefix}@test").start()
    shop = Worker(env, ["shop"], 2, name=f"shop-{prefix}@test")
    shop.start_app = "examples.celery_shop.app:shop"
    shop.start()
    yield client
    shop.stop()
    baton.stop()


def test_checkout_calls_plain_tasks_through_rabbitmq(rabbit_shop: Client) -> None:
    handle = rabbit_shop.submit("Checkout", customer="alice", items=["apple", "pear"])
    result = handle.result(timeout=60)
    assert result["customer"] == "alice" and result["total"] == 1.25
    charges = [s for s in handle.spans() if s.name == "shop_charge"]
    assert [(s.queue, s.outcome.value) for s in charges] == [("shop", "completed")]
    assert result["charge"] == f"ch-{charges[0].call}"
    rt = rabbit_shop.runtime
    assert rt.redis.llen(rt.keys.outbox()) == 0


def test_a_chain_through_a_baton_run_on_rabbitmq(rabbit_shop: Client) -> None:
    line = chain(
        SENDER.signature("shop.fetch_order", args=("o1",)),
        baton_run("Checkout", app=SENDER),
        SENDER.signature("shop.receipt"),
    )
    result = line.apply_async()
    assert result.get(timeout=90).startswith("alice paid 3.25 (ch-")

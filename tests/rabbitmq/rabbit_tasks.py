"""A plain Celery app on RabbitMQ for the harness tests, and the tasks its workers run.

Workers load it with ``-A tests.rabbitmq.rabbit_tasks:app``; it reads its broker, Redis and
queue from ``RABBIT_TEST_*`` variables. Tasks report what they did by pushing onto Redis lists,
so tests count executions instead of trusting results.
"""

from __future__ import annotations

import json
import os
import signal
import time
from functools import cache
from typing import Any

import redis
from celery import Celery, Task
from kombu import Exchange, Queue


def task_queue(name: str, arguments: dict[str, Any] | None = None) -> Queue:
    """The queue as both sides declare it (a mismatch would be a PRECONDITION_FAILED)."""
    return Queue(
        name,
        Exchange(name, "direct", durable=True),
        routing_key=name,
        durable=True,
        queue_arguments=arguments or None,
    )


def make_app(broker: str, backend: str, queue: str, arguments: dict[str, Any] | None) -> Celery:
    """Late acks, prefetch 1, JSON only, publisher confirms, results in Redis."""
    app = Celery("rabbit_harness", broker=broker, backend=backend)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_transport_options={"confirm_publish": True},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        task_queues=[task_queue(queue, arguments)],
        task_default_queue=queue,
        worker_hijack_root_logger=False,
    )
    return app


def app_from_env() -> Celery:
    args = os.environ.get("RABBIT_TEST_QUEUE_ARGS")
    return make_app(
        os.environ["RABBIT_TEST_BROKER"],
        os.environ["RABBIT_TEST_REDIS"],
        os.environ["RABBIT_TEST_QUEUE"],
        json.loads(args) if args else None,
    )


@cache
def store() -> redis.Redis:
    return redis.Redis.from_url(os.environ["RABBIT_TEST_REDIS"])


app = app_from_env() if "RABBIT_TEST_BROKER" in os.environ else Celery("rabbit_harness")


@app.task(name="rabbit.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(bind=True, name="rabbit.record", ignore_result=True)
def record(self: Task[Any, Any], key: str, token: str) -> None:
    """Push ``token`` (and whether the broker flagged it redelivered) onto list ``key``."""
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    store().rpush(key, json.dumps({"token": token, "redelivered": redelivered}))


@app.task(bind=True, name="rabbit.gated", ignore_result=True)
def gated(self: Task[Any, Any], key: str) -> None:
    """Note the start, wait until the test sets ``<key>:gate``, note the end.

    The gate is a key read, not a BLPOP: a killed worker's blocked BLPOP could take the value."""
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    store().rpush(f"{key}:started", json.dumps({"redelivered": redelivered}))
    deadline = time.monotonic() + 60
    while not store().exists(f"{key}:gate") and time.monotonic() < deadline:
        time.sleep(0.05)
    store().rpush(f"{key}:done", "1")


@app.task(name="rabbit.crash", ignore_result=True)
def crash(key: str) -> None:
    """A poison message: note the delivery, then SIGKILL the whole worker (its process group)."""
    store().rpush(f"{key}:started", "1")
    os.killpg(os.getpgid(0), signal.SIGKILL)

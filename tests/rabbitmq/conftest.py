"""Fixtures: a private RabbitMQ node and redis-server for the session, and worker starters.

Every test module under ``tests/rabbitmq/`` gets them (``rabbit``, ``rabbit_dir``,
``rabbit_redis``, ``rabbit_workers``); code elsewhere starts a node with ``tests.rabbit``'s
``RabbitServer`` directly. A start takes about 2.5-5 s here, a restart the same, kill -9 < 0.1 s.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ROOT, RedisServer, Worker, running_redis
from tests.rabbit import RabbitServer, running_rabbit

StartRabbitWorker = Callable[..., Worker]  # start(queue, arguments=None) -> a ready worker


@pytest.fixture(scope="session")
def rabbit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rabbit")


@pytest.fixture(scope="session")
def rabbit(rabbit_dir: Path) -> Iterator[RabbitServer]:
    """A RabbitMQ node of our own (tests may kill -9 and restart it); nothing survives it."""
    with running_rabbit(rabbit_dir / "node") as server:
        yield server


@pytest.fixture(scope="session")
def rabbit_redis(rabbit_dir: Path) -> Iterator[RedisServer]:
    """The result backend and the tasks' tally lists."""
    with running_redis(rabbit_dir / "redis", appendfsync="everysec") as server:
        yield server


@pytest.fixture
def queue_name() -> str:
    return f"rq-{uuid.uuid4().hex[:10]}"


def rabbit_worker_env(
    rabbit: RabbitServer, redis_url: str, testdir: Path, queue: str, arguments: Any
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATON_", "RABBIT_TEST_"))}
    env.update(
        {
            "BATON_TEST_DIR": str(testdir),
            "PYTHONPATH": str(ROOT),
            "RABBIT_TEST_BROKER": rabbit.url,
            "RABBIT_TEST_REDIS": redis_url,
            "RABBIT_TEST_QUEUE": queue,
        }
    )
    if arguments:
        env["RABBIT_TEST_QUEUE_ARGS"] = json.dumps(arguments)
    return env


@pytest.fixture
def rabbit_workers(
    rabbit: RabbitServer, rabbit_redis: RedisServer, rabbit_dir: Path
) -> Iterator[StartRabbitWorker]:
    """``start(queue, arguments=None)``: a prefork worker (1 process) of the plain
    app in ``rabbit_tasks``; every one is stopped after the test."""
    started: list[Worker] = []

    def start(queue: str, arguments: dict[str, Any] | None = None) -> Worker:
        env = rabbit_worker_env(rabbit, rabbit_redis.url, rabbit_dir, queue, arguments)
        worker = Worker(env, [queue], concurrency=1, name=f"{queue}-{uuid.uuid4().hex[:6]}@test")
        worker.start_app = "tests.rabbitmq.rabbit_tasks:app"
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()

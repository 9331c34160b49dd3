"""Fixtures: one private redis-server and one worker pool for the session, and helpers."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.celery_app import create_app
from app.client import Client
from config import Settings
from tests.harness import (
    TEST_IMPORTS,
    RedisServer,
    StartWorker,
    Worker,
    private_client,
    running_redis,
    worker_env,
)

for _module in TEST_IMPORTS:  # the workflows and tools the workers import, registered here too
    importlib.import_module(_module)

ALL_QUEUES = ["baton", "tools", "analysis", "itest", "llm"]


@pytest.fixture(scope="session")
def testdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("baton")


@pytest.fixture(scope="session")
def redis_server(testdir: Path) -> Iterator[RedisServer]:
    with running_redis(testdir / "redis") as server:
        yield server


@pytest.fixture(scope="session")
def settings(redis_server: RedisServer) -> Settings:
    return Settings(redis_url=redis_server.url, imports=TEST_IMPORTS)


@pytest.fixture(scope="session")
def client(settings: Settings) -> Client:
    _, runtime = create_app(settings)
    return Client(runtime=runtime)


@pytest.fixture(scope="session")
def workers(redis_server: RedisServer, testdir: Path) -> Iterator[Worker]:
    """The shared pool: every queue, prefork, 4 processes."""
    worker = Worker(worker_env(redis_server.url, testdir), ALL_QUEUES, concurrency=4).start()
    yield worker
    worker.stop()


# A prefix of its own, short time limits: for tests that start their own workers (and may kill
# them) without touching the session's pool. ``isolated_workers(queue)`` starts a worker.
ISOLATED_LIMITS = {"BATON_MAX_TIME_LIMIT": 5, "BATON_VISIBILITY_TIMEOUT": 8}


@pytest.fixture
def isolated_prefix() -> str:
    return f"iso{uuid.uuid4().hex[:8]}"


@pytest.fixture
def isolated_client(redis_server: RedisServer, isolated_prefix: str) -> Client:
    return private_client(
        redis_server.url, isolated_prefix, max_time_limit=5, visibility_timeout_override=8
    )


@pytest.fixture
def isolated_workers(
    redis_server: RedisServer, testdir: Path, isolated_prefix: str
) -> Iterator[StartWorker]:
    """``start(queue, name, concurrency=1)``: a worker under the isolated prefix; all stop after
    the test."""
    started: list[Worker] = []

    def start(queue: str, name: str, concurrency: int = 1) -> Worker:
        env = worker_env(
            redis_server.url, testdir, BATON_KEY_PREFIX=isolated_prefix, **ISOLATED_LIMITS
        )
        worker = Worker(env, [queue], concurrency, name=f"{name}-{isolated_prefix}@test")
        started.append(worker.start())
        return worker

    yield start
    for worker in started:
        worker.stop()

"""Fixtures: one private redis-server and one worker pool for the session, and helpers."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.celery_app import create_app
from app.client import Client
from config import Settings
from tests.harness import TEST_IMPORTS, RedisServer, Worker, worker_env

for _module in TEST_IMPORTS:  # the workflows and tools the workers import, registered here too
    importlib.import_module(_module)

ALL_QUEUES = ["baton", "tools", "analysis", "itest", "llm"]


@pytest.fixture(scope="session")
def testdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("baton")


@pytest.fixture(scope="session")
def redis_server(testdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(testdir / "redis")
    server.dir.mkdir()
    server.start()
    yield server
    server.stop()


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

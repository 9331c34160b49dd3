"""Submit is all-or-nothing and bounded in time: a Redis that is frozen or gone makes it fail
with StoreUnavailableError within the submit timeout, writes nothing once Redis comes back, and
a retry with the same idempotency key works. A Redis of its own: these tests freeze it."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.celery_app import create_app
from app.client import Client
from config import Settings
from tests.harness import RedisServer, Worker, eventually, worker_env
from workflows import StoreUnavailableError

pytestmark = pytest.mark.integration
SUBMIT_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def frozen_redis(testdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(testdir / "redis-freeze")
    server.dir.mkdir()
    server.start()
    yield server
    if server.proc is not None:
        server.proc.send_signal(signal.SIGCONT)
    server.stop()


@pytest.fixture(scope="module")
def freeze_client(frozen_redis: RedisServer) -> Client:
    settings = Settings(
        redis_url=frozen_redis.url,
        imports=["examples", "tests.integration.flows"],
        submit_timeout=SUBMIT_TIMEOUT,
    )
    return Client(runtime=create_app(settings)[1])


def _freeze(server: RedisServer) -> None:
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)


def _thaw(server: RedisServer) -> None:
    assert server.proc is not None
    server.proc.send_signal(signal.SIGCONT)


def _submit_frozen(client: Client, **kwargs: object) -> float:
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as caught:
        client.submit("AddTwice", a=1, b=2, **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)
    return time.monotonic() - started


def test_a_submit_while_redis_is_frozen_fails_in_bounded_time_and_leaves_no_phantom(
    freeze_client: Client, frozen_redis: RedisServer, testdir: Path
) -> None:
    rt = freeze_client.runtime
    freeze_client.submit("AddTwice", a=0, b=0)  # connection and clock offset are warm
    before = set(rt.redis.keys("*"))
    _freeze(frozen_redis)
    try:
        elapsed = _submit_frozen(freeze_client, idempotency_key="frozen-1")
        elapsed_no_key = _submit_frozen(freeze_client)
    finally:
        _thaw(frozen_redis)
    assert elapsed < 4 * SUBMIT_TIMEOUT
    assert elapsed_no_key < 4 * SUBMIT_TIMEOUT
    # the commands that were on the wire reach Redis now: they must write nothing
    eventually(lambda: rt.redis.ping(), what="redis answers again")
    assert rt.redis.get(rt.keys.idempotency("frozen-1")) is None
    assert set(rt.redis.keys("*")) == before
    env = worker_env(frozen_redis.url, testdir)
    worker = Worker(env, ["itest"], concurrency=1, name="freeze@test").start()
    try:
        handle = freeze_client.submit("AddTwice", a=1, b=2, idempotency_key="frozen-1")
        assert handle.result(timeout=30) == 6
        again = freeze_client.submit("AddTwice", a=1, b=2, idempotency_key="frozen-1")
        assert again.run_id == handle.run_id
    finally:
        worker.stop()


def test_a_submit_while_redis_is_down_fails_at_once_with_store_unavailable(
    freeze_client: Client, frozen_redis: RedisServer
) -> None:
    frozen_redis.stop(signal.SIGKILL)
    try:
        elapsed = _submit_frozen(freeze_client, idempotency_key="down-1")
    finally:
        frozen_redis.start()
    assert elapsed < 4 * SUBMIT_TIMEOUT
    rt = freeze_client.runtime
    assert rt.redis.get(rt.keys.idempotency("down-1")) is None

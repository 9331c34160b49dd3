"""Anything pushed onto a queue list is either served or kept as a dead letter: no stray
producer can stop a worker. Private key prefix: these tests kill nothing, but a worker that
dies here must not take the shared one with it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.client import Client
from tasks import queries
from tests.harness import RedisServer, Worker, eventually, private_client, worker_env

pytestmark = pytest.mark.integration
PREFIX = "poison"


@pytest.fixture(scope="module")
def poison_client(redis_server: RedisServer) -> Client:
    return private_client(redis_server.url, PREFIX)


@pytest.fixture(scope="module")
def poison_worker(redis_server: RedisServer, testdir: Path) -> Iterator[Worker]:
    env = worker_env(redis_server.url, testdir, BATON_KEY_PREFIX=PREFIX)
    worker = Worker(env, ["itest"], concurrency=2, name="poison@test").start()
    yield worker
    worker.stop()


POISON = [
    "not json at all",
    '{"a": 1}',
    "42",
    '["a", "list"]',
    json.dumps({"body": "%%%not-base64", "properties": {"body_encoding": "base64"}}),
    json.dumps(
        {
            "body": "e30=",
            "content-type": "application/json",
            "headers": {},
            "properties": {"body_encoding": "base64", "delivery_tag": "x"},
        }
    ),
]


@pytest.mark.parametrize("item", POISON, ids=[f"poison{i}" for i in range(len(POISON))])
def test_a_queue_item_that_is_not_a_message_is_kept_as_a_dead_letter_and_the_worker_serves_on(
    poison_client: Client, poison_worker: Worker, item: str
) -> None:
    rt = poison_client.runtime
    before, _ = queries.dead_letters(rt, 0)
    rt.redis.lpush(rt.keys.queue("itest"), item)
    total, kept = eventually(
        lambda: (lambda got: got if got[0] > before else None)(queries.dead_letters(rt, 1)),
        what="the item kept as a dead letter",
    )
    assert total == before + 1
    assert item[:100] in kept[0].body
    assert kept[0].reason.startswith("undecodable")
    assert poison_worker.proc is not None and poison_worker.proc.poll() is None
    assert poison_client.submit("AddTwice", a=2, b=3).result(timeout=30) == 10
    assert rt.redis.llen(rt.keys.queue("itest")) == 0

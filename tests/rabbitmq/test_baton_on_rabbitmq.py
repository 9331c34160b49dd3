"""Baton with RabbitMQ as its broker and Redis as its state store (``BATON_BROKER_URL``).

Every message goes through the outbox in Redis and a relay publishes it (``tasks.relay``):
the shipped examples give the same results and events as in-process, a worker killed with -9
mid-run and a broker killed with -9 and restarted lose and repeat nothing, and a relay that
dies holding entries has them put back and published by another."""

from __future__ import annotations

import os
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Queue

from app.celery_app import create_app
from app.client import Client
from config import Settings
from tasks.protocol import OutboxEntry
from tasks.relay import ALIVE_TTL
from tests.flower import Flower
from tests.harness import TEST_IMPORTS, RedisServer, Worker, eventually, running_redis, worker_env
from tests.integration.test_examples_both_runtimes import (
    CASES,
    _plain,
    assert_same_as_in_process,
    run_inprocess,
)
from tests.rabbit import RabbitServer

pytestmark = pytest.mark.integration
QUEUES = ["baton", "tools", "analysis", "itest", "llm"]


@pytest.fixture(scope="module")
def state(rabbit_dir: Path) -> Iterator[RedisServer]:
    with running_redis(rabbit_dir / f"state-{uuid.uuid4().hex[:6]}") as server:
        yield server


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"rmq{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def rabbit_client(rabbit: RabbitServer, state: RedisServer, prefix: str) -> Client:
    settings = Settings(
        redis_url=state.url, broker_url=rabbit.url, key_prefix=prefix, imports=TEST_IMPORTS
    )
    return Client(runtime=create_app(settings)[1])


def _env(rabbit: RabbitServer, state: RedisServer, testdir: Path, prefix: str) -> dict[str, str]:
    return worker_env(
        state.url,
        testdir,
        BATON_BROKER_URL=rabbit.url,
        BATON_KEY_PREFIX=prefix,
        BATON_MAX_TIME_LIMIT=5,
        BATON_VISIBILITY_TIMEOUT=8,
    )


@pytest.fixture(scope="module")
def rabbit_baton_workers(
    rabbit: RabbitServer, state: RedisServer, rabbit_dir: Path, prefix: str
) -> Iterator[Worker]:
    worker = Worker(_env(rabbit, state, rabbit_dir, prefix), QUEUES, concurrency=4)
    worker.start()
    yield worker
    worker.stop()


@pytest.mark.parametrize(("name", "kwargs", "answer"), CASES, ids=[c[0] for c in CASES])
def test_examples_give_the_in_process_results_and_events_on_rabbitmq(
    rabbit_client: Client,
    rabbit_baton_workers: Worker,
    name: str,
    kwargs: dict[str, Any],
    answer: bool,
) -> None:
    assert_same_as_in_process(rabbit_client, name, kwargs, answer)
    rt = rabbit_client.runtime
    assert rt.redis.llen(rt.keys.outbox()) == 0  # every message went through the relay
    assert not rt.redis.exists(rt.keys.queue("baton"))  # and none onto a Redis queue list


def test_a_relay_that_dies_holding_entries_has_them_published_by_another(
    rabbit_client: Client, rabbit_baton_workers: Worker
) -> None:
    rt = rabbit_client.runtime
    # a run submitted while no relay takes its message: move the entry onto a dead relay's
    # list, as a relay killed between taking and publishing it leaves it
    rabbit_baton_workers.stop()
    try:
        handle = rabbit_client.submit("Outer", x=3)
        dead = rt.keys.relaying("dead-relay")
        moved = rt.redis.lmove(rt.keys.outbox(), dead, "RIGHT", "LEFT")
        assert moved is not None and rt.redis.llen(rt.keys.outbox()) == 0
        rt.redis.sadd(rt.keys.relays(), "dead-relay")  # checked in once, never again
    finally:
        rabbit_baton_workers.start()
    expected = run_inprocess("Outer", {"x": 3}, False)[0]
    assert _plain(handle.result(timeout=ALIVE_TTL + 30)) == _plain(expected)
    assert not rt.redis.exists(dead)


def test_a_worker_killed_mid_run_and_a_broker_restart_lose_and_repeat_nothing(
    rabbit: RabbitServer,
    state: RedisServer,
    rabbit_dir: Path,
    prefix: str,
    rabbit_client: Client,
    rabbit_baton_workers: Worker,
) -> None:
    topics = [f"t{i}" for i in range(6)]
    handles = {t: rabbit_client.submit("Research", topic=t, n_docs=5) for t in topics}
    doomed = Worker(_env(rabbit, state, rabbit_dir, prefix), QUEUES, concurrency=2).start()
    assert doomed.proc is not None
    os.killpg(doomed.proc.pid, signal.SIGKILL)  # whatever it had taken comes back
    doomed.stop()
    rabbit.kill()
    later = [f"u{i}" for i in range(4)]  # submitted while the broker is down: they wait
    handles |= {t: rabbit_client.submit("Research", topic=t, n_docs=5) for t in later}
    rabbit.restart()
    for topic, handle in handles.items():
        expected = run_inprocess("Research", {"topic": topic, "n_docs": 5}, False)[0]
        assert _plain(handle.result(timeout=120)) == _plain(expected)
    for handle in handles.values():  # every step invocation completed exactly once
        completed = Counter(
            s.inv
            for s in handle.spans()
            if s.kind.value == "step" and s.outcome.value == "completed"
        )
        assert completed and set(completed.values()) == {1}, completed
    rt = rabbit_client.runtime
    eventually(lambda: rt.redis.llen(rt.keys.outbox()) == 0, timeout=10, what="outbox empty")


def test_quorum_queues_serve_baton_and_dead_letter_to_a_queue_of_their_own(
    rabbit: RabbitServer, state: RedisServer, rabbit_dir: Path
) -> None:
    vhost = f"q{uuid.uuid4().hex[:6]}"  # quorum and classic queues of one name cannot coexist
    rabbit.ctl("add_vhost", vhost)
    rabbit.ctl("set_permissions", "-p", vhost, rabbit.user, ".*", ".*", ".*")
    broker = rabbit.url.removesuffix("//") + f"/{vhost}"
    prefix = f"rq{uuid.uuid4().hex[:6]}"
    env = _env(rabbit, state, rabbit_dir, prefix)
    env.update(BATON_BROKER_URL=broker, BATON_QUORUM_QUEUES="true")
    worker = Worker(env, QUEUES, concurrency=2).start()
    try:
        settings = Settings(
            redis_url=state.url,
            broker_url=broker,
            key_prefix=prefix,
            imports=TEST_IMPORTS,
            quorum_queues=True,
        )
        client = Client(runtime=create_app(settings)[1])
        for name, kwargs, answer in CASES[:4]:
            assert_same_as_in_process(client, name, kwargs, answer)
        listed = rabbit.ctl("list_queues", "-p", vhost, "name", "type", "arguments")
        types = dict(line.split("\t")[:2] for line in listed.splitlines() if "\t" in line)
        assert types["baton"] == "quorum" and types["tools"] == "quorum", listed
        assert f"{prefix}.dead" in types, listed  # declared by the worker, to dead-letter to
    finally:
        worker.stop()


def test_flower_shows_the_steps_of_a_run_on_rabbitmq(
    rabbit: RabbitServer,
    state: RedisServer,
    rabbit_dir: Path,
    prefix: str,
    rabbit_client: Client,
    rabbit_baton_workers: Worker,
) -> None:
    env = _env(rabbit, state, rabbit_dir, prefix)
    flower = Flower(env, rabbit_dir / f"flower-{uuid.uuid4().hex[:6]}.log").start()
    try:
        eventually(  # Flower knows only the tasks whose events it received
            lambda: flower.api("/api/workers?status=1").get(rabbit_baton_workers.name),
            timeout=40,
            interval=0.2,
            what="Flower sees the worker",
        )
        handle = rabbit_client.submit("Outer", x=3)
        handle.result(timeout=30)

        def seen() -> set[str]:
            tasks = flower.api("/api/tasks?state=SUCCESS").values()
            return {str(t["name"]) for t in tasks if handle.run_id in str(t)}

        names = eventually(seen, timeout=20, what="the run's tasks in Flower")
        assert "Outer.start" in names, names
    finally:
        flower.stop()


def test_an_entry_the_broker_refuses_is_dead_lettered_and_blocks_nothing(
    rabbit: RabbitServer, rabbit_client: Client, rabbit_baton_workers: Worker
) -> None:
    rt = rabbit_client.runtime
    conflict = f"conflict-{uuid.uuid4().hex[:6]}"
    with rt.app.connection_for_write() as conn:  # a queue of that name, declared otherwise
        Queue(conflict, durable=True, queue_arguments={"x-queue-type": "quorum"})(
            conn.default_channel
        ).declare()
    victim = rabbit_client.submit("Outer", x=1)
    victim.result(timeout=30)
    run_id = victim.run_id
    rt.redis.hset(rt.keys.run(run_id), "status", "running")  # as if it still waited on it
    entry = OutboxEntry(conflict, f"t-{uuid.uuid4().hex}", [[run_id, "i", {}, 1], {}, {}], {}, {})
    rt.redis.lpush(rt.keys.outbox(), entry.to_json())
    later = rabbit_client.submit("Outer", x=2)  # behind the refused entry
    assert later.result(timeout=60) is not None
    eventually(
        lambda: any(entry.task_id in d for d in rt.redis.lrange(rt.keys.dead_letters(), 0, -1)),
        timeout=30,
        what="the refused entry kept as a dead letter",
    )
    assert rt.redis.hget(rt.keys.run(run_id), "status") == "failed"
    assert "BrokerRefused" in (rt.redis.hget(rt.keys.run(run_id), "error") or "")


def test_deliveries_while_the_state_redis_is_down_come_back_from_rabbitmq(
    state: RedisServer, rabbit_client: Client, rabbit_baton_workers: Worker
) -> None:
    """RabbitMQ keeps delivering while the state Redis is down: each delivery that cannot
    reach Redis is rejected back onto its queue, not acked away (it would be lost: its
    in-flight record says it waits in the broker), and every run completes once Redis is
    back. (A Redis frozen past a step's time limit is that step's timeout instead.)"""
    handles = [rabbit_client.submit("Research", topic=f"down{i}", n_docs=5) for i in range(3)]
    state.stop(signal.SIGKILL)  # the same port and data (AOF) come back below
    try:
        eventually(
            lambda: "the state store is away" in rabbit_baton_workers.log.read_text(),
            timeout=40,
            what="a delivery rejected back while Redis is down",
        )
    finally:
        state.start()
    for i, handle in enumerate(handles):
        expected = run_inprocess("Research", {"topic": f"down{i}", "n_docs": 5}, False)[0]
        # long before the reaper would take them for lost (10 visibility timeouts, 80 s)
        assert _plain(handle.result(timeout=40)) == _plain(expected)

"""Redis stays bounded: every key Baton writes expires or is trimmed once retention passed.

A private key prefix and a worker with a three-second retention: after a mix of runs ends
(fan-out, children, human input, retries, failures, cancellation, duplicate messages), nothing
of Baton's is left under the prefix but kombu's fixed queue bindings."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.celery_app import create_app
from app.client import Client, RunHandle
from config import Settings
from tasks import reaper, runs
from tasks.deadletters import keep
from tasks.protocol import CallAddress, DeadLetter, Message, RunStatus, StepArgs
from tests.harness import RedisServer, Worker, eventually, worker_env
from tests.integration.flows import Answer, Ask, Numbers
from workflows import RunCancelledError, StepFailedError

pytestmark = pytest.mark.integration
PREFIX = "ret"
RETENTION = 3


def _settings(url: str, **extra: object) -> Settings:
    return Settings(
        redis_url=url,
        key_prefix=PREFIX,
        imports=["examples", "tests.integration.flows"],
        retention_seconds=RETENTION,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def ret_client(redis_server: RedisServer) -> Client:
    return Client(runtime=create_app(_settings(redis_server.url))[1])


@pytest.fixture(scope="module")
def ret_worker(redis_server: RedisServer, testdir: Path) -> Iterator[Worker]:
    env = worker_env(
        redis_server.url, testdir, BATON_KEY_PREFIX=PREFIX, BATON_RETENTION_SECONDS=RETENTION
    )
    worker = Worker(env, ["itest", "single"], concurrency=3, name="ret@test").start()
    yield worker
    worker.stop()


def _leftover(client: Client) -> list[str]:
    """Keys under the prefix, but for kombu's queue bindings (one set per queue, fixed) and
    the live worker's registry record (it leaves with the worker) and the metrics counters
    (bounded by names x outcomes x buckets)."""
    rt = client.runtime
    keys = rt.redis.scan_iter(match=f"{PREFIX}:*", count=1000)
    live = {rt.keys.workers(), rt.keys.worker("ret@test"), rt.keys.metrics()}
    return sorted(k for k in keys if "_kombu.binding" not in k and k not in live)


def test_every_key_of_finished_runs_is_gone_after_retention(
    ret_client: Client, ret_worker: Worker
) -> None:
    c = ret_client
    handles: list[RunHandle] = [
        c.submit("AddTwice", a=1, b=2, idempotency_key=uuid.uuid4().hex),
        c.submit("FanIn", n=5),
        c.submit("ItOuter", x=1),
        c.submit("StepRetries", label=uuid.uuid4().hex),
        c.submit("ToolFailures", label=uuid.uuid4().hex, seconds=1.5),
    ]
    boom = c.submit("Boom", label="ret")
    asking = c.submit("ApproveParent", label="ret")
    asked = next(iter(asking.stream_events(timeout=30)))
    assert isinstance(asked, Ask)
    asking.send_event(Answer(approved=True))
    cancelled = c.submit("SlowStep", seconds=30)
    assert cancelled.cancel()
    for h in handles:
        h.result(timeout=60)
    assert asking.result(timeout=30) == {"child": {"label": "ret", "approved": True}}
    with pytest.raises(StepFailedError):
        boom.result(timeout=30)
    with pytest.raises(RunCancelledError):
        cancelled.result(timeout=30)
    # a duplicate of a finished run's message, delivered after its keys expired
    rt = c.runtime
    done = handles[0].run_id
    eventually(lambda: not rt.redis.exists(rt.keys.run(done)), timeout=30, what="run expired")
    rt.send([Message("AddTwice.second", StepArgs(done, "late", {}), "itest")])
    keep(rt, "a test dead letter", "body")
    try:
        eventually(lambda: not _leftover(c), timeout=30, what="no keys left")
    except AssertionError:
        assert _leftover(c) == []  # shows what leaks
        raise


def test_the_dead_letter_list_keeps_the_newest_and_expires(redis_server: RedisServer) -> None:
    settings = _settings(redis_server.url, dead_letters_max=3).model_copy(
        update={"key_prefix": f"dl{uuid.uuid4().hex[:6]}", "retention_seconds": 600}
    )
    rt = create_app(settings)[1]
    for i in range(5):
        keep(rt, f"reason {i}", f"body {i}")
    key = rt.keys.dead_letters()
    reasons = [DeadLetter.from_json(x).reason for x in rt.redis.lrange(key, 0, -1)]
    assert reasons == ["reason 4", "reason 3", "reason 2"]
    assert 0 < rt.redis.ttl(key) <= 600


def test_the_runs_index_is_trimmed_to_retention_and_expires(redis_server: RedisServer) -> None:
    settings = _settings(redis_server.url).model_copy(
        update={"key_prefix": f"ix{uuid.uuid4().hex[:6]}", "retention_seconds": 1}
    )
    client = Client(runtime=create_app(settings)[1])
    rt = client.runtime
    first = client.submit("AddTwice", a=1, b=1).run_id  # no worker: it only needs indexing
    assert rt.redis.zscore(rt.keys.runs(), first) is not None
    assert 0 < rt.redis.ttl(rt.keys.runs()) <= 1

    def trimmed() -> bool:
        client.submit("AddTwice", a=1, b=1)
        return rt.redis.zscore(rt.keys.runs(), first) is None

    eventually(trimmed, timeout=10, interval=0.2, what="the first run trimmed from the index")
    assert rt.redis.zcard(rt.keys.runs()) <= 10


def test_an_ended_run_whose_follow_up_was_cut_short_is_settled_by_the_reaper(
    redis_server: RedisServer,
) -> None:
    """The run's end was written, then Redis went away before its keys got their expiry and
    its parent its answer: the reaper finds it ended yet live, and finishes the job."""
    settings = _settings(redis_server.url).model_copy(
        update={"key_prefix": f"st{uuid.uuid4().hex[:6]}", "retention_seconds": 600}
    )
    rt = create_app(settings)[1]
    k = rt.keys
    parent_id, child_id = uuid.uuid4().hex, uuid.uuid4().hex
    runs.create_run(rt, "AddTwice", parent_id, Numbers(a=1, b=1))
    address = CallAddress(parent_id, "inv", "call-1")
    rt.redis.hset(k.journal(parent_id, "inv"), "other", '{"ok": 1}')  # the parked step's
    runs.create_run(rt, "AddTwice", child_id, Numbers(a=2, b=2), parent=address)
    runs._finish(rt, child_id, RunStatus.FAILED, '"x"', "error", '{"type":"E","message":"m"}', None)
    assert rt.redis.ttl(k.run(child_id)) == -1 and rt.redis.sismember(k.live(), child_id)
    reaper.sweep(rt, 60.0, reaper.Suspects(1.0))
    assert 0 < rt.redis.ttl(k.run(child_id)) <= 600
    assert not rt.redis.sismember(k.live(), child_id)
    answer = rt.redis.hget(k.journal(parent_id, "inv"), "call-1")
    assert answer is not None and '"E"' in answer

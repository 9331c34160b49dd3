"""The reaper tells a message waiting in a queue from a message the broker lost.

A backlog must cost no re-sends (re-sending a waiting message only lengthens the queue: an
overload would feed itself), while a message that vanished from Redis must still come back.
Each test uses a key prefix of its own, so its queues and unacked hash are its alone. This
module is also imported by the backlog test's worker (``BATON_IMPORTS``) for its workflow.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.celery_app import create_app
from app.client import Client
from config import Settings
from tasks.protocol import InflightRecord, Message, RunStatus, ToolArgs
from tasks.reaper import Reaper
from tasks.runtime import Runtime
from tests.harness import RedisServer, Worker, eventually, worker_env
from workflows import Context, StartEvent, StopEvent, Workflow, step, tool

pytestmark = pytest.mark.integration

IMPORTS = ["examples", "tests.integration.flows", "tests.integration.test_reaper"]
BACKLOG_QUEUE = "reaper_backlog"


@tool(queue=BACKLOG_QUEUE)
def reaper_nap(x: int, seconds: float) -> int:
    """Slow enough that a one-slot worker builds a backlog of several visibility timeouts."""
    time.sleep(seconds)
    return x * x


class Naps(StartEvent):
    base: int
    calls: int = 4
    seconds: float = 0.1


class NapGather(Workflow):
    """One step awaiting ``calls`` tool calls together: each run queues them all at once."""

    queue = BACKLOG_QUEUE

    @step
    async def main(self, ctx: Context, ev: Naps) -> StopEvent:
        got = await asyncio.gather(
            *[
                ctx.call_tool("reaper_nap", x=ev.base + k, seconds=ev.seconds)
                for k in range(ev.calls)
            ]
        )
        return StopEvent(result=sum(got))


def _prefix() -> str:
    return f"reap{uuid.uuid4().hex[:8]}"


def _runtime(url: str, prefix: str) -> Runtime:
    settings = Settings(
        redis_url=url,
        key_prefix=prefix,
        imports=IMPORTS,
        max_time_limit=2,
        visibility_timeout_override=3,
    )
    return create_app(settings)[1]


@dataclass
class Backlog:
    client: Client
    worker: Worker


@pytest.fixture
def backlog(redis_server: RedisServer, testdir: Path) -> Iterator[Backlog]:
    """A one-slot worker with a 3 s visibility timeout (the reaper sweeps every second)."""
    prefix = _prefix()
    env = worker_env(
        redis_server.url,
        testdir,
        BATON_KEY_PREFIX=prefix,
        BATON_MAX_TIME_LIMIT=2,
        BATON_VISIBILITY_TIMEOUT=3,
        BATON_IMPORTS=json.dumps(IMPORTS),
    )
    worker = Worker(env, [BACKLOG_QUEUE], concurrency=1, name=f"{prefix}@test").start()
    try:
        yield Backlog(Client(runtime=_runtime(redis_server.url, prefix)), worker)
    finally:
        worker.stop()


def _resent(log: str) -> int:
    return sum(int(n) for n in re.findall(r"resending (\d+) lost message", log))


def _queued(rt: Runtime) -> int:
    """Messages still in the prefix's queue lists."""
    r = rt.redis
    lists = [key for key in r.scan_iter(f"{rt.keys.broker_prefix()}*") if r.type(key) == "list"]
    return sum(int(r.llen(key)) for key in lists)


@pytest.mark.long  # slow (a TTL, a backlog, a whole stack): bash scripts/long.sh
def test_a_backlog_with_no_crash_is_never_resent(backlog: Backlog) -> None:
    # 40 runs x 4 calls of 0.1 s on one slot: the last calls wait ~20 s, several timeouts
    handles = [backlog.client.submit("NapGather", base=i) for i in range(40)]
    for i, handle in enumerate(handles):
        expected = sum((i + k) ** 2 for k in range(4))
        assert handle.result(timeout=90) == expected
    rt = backlog.client.runtime
    left = _queued(rt)  # every run ended: anything still queued is a duplicate
    log = backlog.worker.log.read_text()
    resent = _resent(log)
    assert (resent, left) == (0, 0), f"{resent} re-sends, {left} duplicates left queued"
    assert f"queue {BACKLOG_QUEUE}: " in log  # the reaper did find overdue messages waiting
    eventually(lambda: rt.redis.hlen(rt.keys.unacked()) == 0, timeout=10, what="all acked")


# --- presence detection against a real Redis, no worker ---------------------------------------

LOST_AFTER = 3.0
INTERVAL = 0.3


@pytest.fixture
def rt(redis_server: RedisServer) -> Runtime:
    return _runtime(redis_server.url, _prefix())


def _overdue(rt: Runtime, started: bool = False) -> Message:
    """A running run with one message in flight, long overdue (and started, if asked)."""
    run_id = uuid.uuid4().hex
    m = Message("tool.reaper_nap", ToolArgs(run_id, "inv", "0", {"x": 1, "seconds": 0}), "q1")
    r, k = rt.redis, rt.keys
    r.hset(k.run(run_id), mapping={"status": RunStatus.RUNNING, "workflow": "NapGather"})
    r.sadd(k.live(), run_id)
    r.hset(k.inflight(run_id), m.task_id, InflightRecord(time.time() - 60, m).to_json())
    if started:
        r.hset(k.deliveries(run_id), m.task_id, 1)
    return m


def _copies(rt: Runtime, m: Message) -> int:
    """How many envelopes of ``m`` its queue holds."""
    raws = rt.redis.lrange(rt.keys.queue(m.queue), 0, -1)
    return sum(json.loads(raw)["headers"]["id"] == m.task_id for raw in raws)


def _due(rt: Runtime, m: Message) -> float:
    return InflightRecord.from_json(rt.redis.hget(rt.keys.inflight(m.run_id), m.task_id)).due


def _wait_in_unacked(rt: Runtime, m: Message) -> None:
    """What kombu writes when a worker takes ``m``: ``[envelope, exchange, routing key]``."""
    _, payload = rt.publisher.frame(m)
    value = json.dumps([json.loads(payload), m.queue, m.queue])  # kombu's spacing: '"id": "…"'
    rt.redis.hset(rt.keys.unacked(), uuid.uuid4().hex, value)


@pytest.mark.parametrize("started", [False, True])
def test_a_message_waiting_in_its_queue_is_not_lost(rt: Runtime, started: bool) -> None:
    m = _overdue(rt, started)
    absent = _overdue(rt)  # same queue, not in it: only a suspect after one sweep
    key, payload = rt.publisher.frame(m)
    rt.redis.lpush(key, payload)
    reaper = Reaper(rt, INTERVAL, LOST_AFTER)
    reaper.sweep_once()
    assert _copies(rt, m) == 1
    assert _due(rt, m) > time.time() - 5  # checked again a visibility timeout from now
    assert _due(rt, absent) < time.time() - 30 and _copies(rt, absent) == 0


@pytest.mark.parametrize("started", [False, True])
def test_a_message_held_unacked_by_a_worker_is_not_lost(rt: Runtime, started: bool) -> None:
    m = _overdue(rt, started)
    _wait_in_unacked(rt, m)
    reaper = Reaper(rt, 0.0, LOST_AFTER)  # no interval: a second absence would resend at once
    for _ in range(3):
        reaper.sweep_once()
    assert _copies(rt, m) == 0


def test_a_message_absent_once_is_only_suspect_and_absent_twice_is_resent(rt: Runtime) -> None:
    m = _overdue(rt)
    other = Message("tool.reaper_nap", m.args, m.queue)
    key, payload = rt.publisher.frame(other)
    envelope = json.loads(payload)
    envelope["headers"].update(root_id=m.task_id, parent_id=m.task_id)
    rt.redis.lpush(key, json.dumps(envelope))  # names m only as root and parent: not m
    reaper = Reaper(rt, INTERVAL, LOST_AFTER)
    reaper.sweep_once()
    assert _copies(rt, m) == 0  # in transit from the list to a worker looks just like this

    def resent() -> bool:
        reaper.sweep_once()
        return _copies(rt, m) == 1

    eventually(resent, timeout=10, interval=INTERVAL / 3, what="the lost message resent")
    assert _copies(rt, m) == 1

"""Durable timers: retries with backoff and ``ctx.sleep`` wait in Redis's timer set, not in a
worker or the broker; a sleeping step holds no worker, and wakes exactly once across a Redis
restart and a worker killed with -9."""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from app.client import Client, RunState
from tasks import reaper
from tasks.protocol import Message, StepArgs, TimerAnswer, TimerEntry, parse_timer
from tests.harness import RedisServer, StartWorker, eventually
from tests.integration.timer_flows import QUEUE

pytestmark = pytest.mark.integration


@pytest.fixture
def timer_client(isolated_client: Client) -> Client:
    return isolated_client


@pytest.fixture
def worker_factory(isolated_workers: StartWorker) -> StartWorker:
    return partial(isolated_workers, QUEUE)


def _lines(testdir: Path, name: str) -> list[str]:
    path = testdir / "timer_effects" / name
    return path.read_text().splitlines() if path.exists() else []


def _timers(client: Client) -> list[TimerEntry | TimerAnswer]:
    r = client.runtime.redis
    return [parse_timer(m) for m in r.zrange(client.runtime.keys.timers(), 0, -1)]


def test_a_retry_with_backoff_waits_in_the_timer_set_and_runs_once_when_due(
    timer_client: Client, worker_factory: Any, testdir: Path
) -> None:
    worker = worker_factory("retry")
    label = f"flaky{uuid.uuid4().hex[:6]}"
    handle = timer_client.submit("Flaky", label=label)
    entries = eventually(lambda: _timers(timer_client), timeout=10, what="the retry's timer")
    rt = timer_client.runtime
    # held in Redis: not on the queue list, not in any worker's memory (no ETA message)
    assert [e.queue_key for e in entries if isinstance(e, TimerEntry)] == [rt.keys.queue(QUEUE)]
    assert rt.redis.llen(rt.keys.queue(QUEUE)) == 0
    inspect = rt.app.control.inspect(destination=[worker.name], timeout=1.0)
    scheduled = inspect.scheduled()
    assert scheduled is not None and scheduled.get(worker.name) == []
    assert _lines(testdir, f"{label}.attempts") and len(_lines(testdir, f"{label}.attempts")) == 1
    assert handle.result(timeout=15) == 2
    attempts = [line.split() for line in _lines(testdir, f"{label}.attempts")]
    assert [a[0] for a in attempts] == ["1", "2"]  # the retry ran once
    assert float(attempts[1][1]) - float(attempts[0][1]) >= 3.0
    assert _timers(timer_client) == []


def test_a_sleeping_step_frees_its_worker_and_resumes_after_its_sleep(
    timer_client: Client, worker_factory: Any
) -> None:
    worker_factory("solo", concurrency=1)
    sleeper = timer_client.submit("Nap", seconds=2.0)
    eventually(lambda: _timers(timer_client), timeout=10, what="the sleep's timer")

    def sleeping() -> RunState | None:
        state = sleeper.state()
        return state if state.state == "sleeping" else None

    state = eventually(sleeping, timeout=5, what="sleeping")
    assert state.until is not None and time.time() < state.until < time.time() + 2.5
    assert state.describe().startswith("sleeping until ")
    quick = timer_client.submit("Quick")  # the one slot is free while the other run sleeps
    quick_done = quick.result(timeout=10)
    slept = sleeper.result(timeout=15)
    assert quick_done < slept["woke"]  # ran during the sleep, on the only slot
    assert slept["woke"] - slept["t0"] >= 2.0
    assert sleeper.state().state == "completed"


def test_sleeping_runs_wake_exactly_once_across_a_redis_restart_and_a_worker_kill(
    timer_client: Client, worker_factory: Any, redis_server: RedisServer, testdir: Path
) -> None:
    worker = worker_factory("crashy", concurrency=2)
    labels = [f"wake{uuid.uuid4().hex[:6]}" for _ in range(3)]
    handles = [timer_client.submit("Nap", label=lb, seconds=3.0) for lb in labels]
    eventually(lambda: len(_timers(timer_client)) == 3, timeout=10, what="three timers")
    assert worker.proc is not None
    os.killpg(worker.proc.pid, signal.SIGKILL)  # kill -9: main process, its pump, its pool
    worker.proc.wait()
    redis_server.restart()  # appendfsync always: the timer set survives
    eventually(lambda: len(_timers(timer_client)) == 3, timeout=10, what="timers after restart")
    worker_factory("crashy-again", concurrency=2)
    results = [h.result(timeout=20) for h in handles]
    for lb, res in zip(labels, results, strict=True):
        assert res["woke"] - res["t0"] >= 3.0
        assert len(_lines(testdir, f"{lb}.woke")) == 1, lb
    assert _timers(timer_client) == []


def test_a_sleep_gathered_with_a_tool_call_resumes_once_both_are_in(
    timer_client: Client, worker_factory: Any, testdir: Path
) -> None:
    worker_factory("gather", concurrency=2)
    label = f"both{uuid.uuid4().hex[:6]}"
    assert timer_client.submit("SleepAndCall", label=label).result(timeout=15) == label
    assert len(_lines(testdir, f"{label}.tool")) == 1
    assert len(_lines(testdir, f"{label}.woke")) == 1
    assert _timers(timer_client) == []


def test_the_reaper_never_resends_a_message_held_by_a_timer(
    timer_client: Client, isolated_prefix: str
) -> None:
    """Even past its due time plus the visibility timeout (no pump ran: every worker down),
    a message still in the timer set is not taken for lost."""
    rt = timer_client.runtime
    run_id = f"r{uuid.uuid4().hex[:8]}"
    rt.redis.hset(rt.keys.run(run_id), mapping={"status": "running", "workflow": "Nap"})
    rt.redis.sadd(rt.keys.live(), run_id)
    message = Message("Nap.nap", StepArgs(run_id, "i1", {}), QUEUE).delayed(30.0)
    rt.send([message])
    assert len(_timers(timer_client)) == 1 and rt.redis.llen(rt.keys.queue(QUEUE)) == 0
    suspects = reaper.Suspects(gap=0.0)
    for _ in range(3):  # overdue by any measure: lost_after far in the past
        assert reaper.sweep(rt, -1000.0, suspects) == 0
    assert len(_timers(timer_client)) == 1 and rt.redis.llen(rt.keys.queue(QUEUE)) == 0
    rt.redis.delete(rt.keys.run(run_id), rt.keys.inflight(run_id), rt.keys.timers())
    rt.redis.srem(rt.keys.live(), run_id)


def test_several_pumps_release_each_timer_once(timer_client: Client) -> None:
    from tasks.timers import TimerPump

    rt = timer_client.runtime
    key = rt.keys.queue(f"pump{uuid.uuid4().hex[:6]}")
    due = rt.server_time() - 1
    rt.redis.zadd(rt.keys.timers(), {TimerEntry(key, f"m{i}").dump(): due for i in range(1200)})
    rt.redis.zadd(rt.keys.timers(), {TimerEntry(key, "later").dump(): due + 3600})
    pumps = [TimerPump(rt, batch=100) for _ in range(4)]
    released = 0
    for _ in range(20):
        released += sum(p.release_once() for p in pumps)
    assert released == 1200
    items = rt.redis.lrange(key, 0, -1)
    assert sorted(items) == sorted(f"m{i}" for i in range(1200))
    assert _timers(timer_client) == [TimerEntry(key, "later")]
    rt.redis.delete(key, rt.keys.timers())


def test_a_big_fleet_of_pumps_polls_redis_a_bounded_number_of_times_per_second(
    timer_client: Client,
) -> None:
    from tasks.timers import INTERVAL, POLLERS, TimerPump

    rt = timer_client.runtime
    pump = TimerPump(rt)
    fleet = rt.keys.workers()
    rt.redis.zadd(fleet, {f"fake-{i}": time.time() for i in range(400)})  # as beats are
    try:
        assert pump.fleet_size() >= 400  # and the live workers of this test session
    finally:
        rt.redis.zrem(fleet, *[f"fake-{i}" for i in range(400)])
    ceiling = POLLERS / INTERVAL  # polls per second of the whole fleet
    for size in (1, 4, 40, 1000):
        pauses = [pump.pause(size) for _ in range(4000)]
        mean = sum(pauses) / len(pauses)
        assert size / mean <= ceiling * 1.1
        assert max(pauses) <= 1.5 * INTERVAL * max(1, size / POLLERS)
    lone = [pump.pause(1) for _ in range(4000)]
    assert abs(sum(lone) / len(lone) - INTERVAL) < INTERVAL * 0.1  # one worker: every INTERVAL


def test_the_pump_logs_and_keeps_going_while_redis_is_away(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from app.celery_app import create_app
    from config import Settings
    from tasks.timers import TimerPump
    from tests.harness import free_port

    rt = create_app(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))[1]
    pump = TimerPump(rt)
    with caplog.at_level(logging.WARNING, logger="baton.timers"):
        pump.start()
        try:
            eventually(
                lambda: "cannot release due timers" in caplog.text, timeout=10, what="a warning"
            )
            assert pump.is_alive()
        finally:
            pump.stop()
            pump.join(timeout=5)
    assert caplog.text.count("cannot release due timers") == 1  # once per outage, not per poll

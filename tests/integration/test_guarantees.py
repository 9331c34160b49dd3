"""Guarantees that are proven by breaking things on purpose: kills, restarts, one-slot pools."""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from app.client import Client, RunHandle
from tasks.protocol import SpanKind, SpanOutcome
from tests.harness import RedisServer, StartWorker, Worker, eventually, worker_env

EXPECTED_CRASH_SUM = sum(i * 10 + k for i in range(4) for k in range(3))


@pytest.fixture
def crash_worker(redis_server: RedisServer, testdir: Path) -> Iterator[Worker]:
    # short limits so a message stranded by a crash comes back within seconds
    env = worker_env(redis_server.url, testdir, BATON_MAX_TIME_LIMIT=5, BATON_VISIBILITY_TIMEOUT=8)
    worker = Worker(env, ["crash"], concurrency=2, name="crash@test").start()
    yield worker
    worker.stop()


def test_three_level_nesting_with_parallel_calls_completes_on_one_single_slot_worker(
    client: Client, redis_server: RedisServer, testdir: Path
) -> None:
    worker = Worker(
        worker_env(redis_server.url, testdir), ["single"], concurrency=1, name="single@test"
    ).start()
    try:
        handle = client.submit("ItOuter", x=1)
        result = handle.result(timeout=60)
    finally:
        worker.stop()
    inner = [(1 + 1) + (1 + 2), (11 + 1) + (11 + 2)]
    assert result == {"middle": [*inner, 101], "sum": inner[0] + inner[1]}


def test_a_run_completes_when_worker_processes_are_killed_mid_step(
    client: Client, crash_worker: Worker, testdir: Path
) -> None:
    handles = [client.submit("CrashChain", label=f"kill{i}") for i in range(3)]
    rng = random.Random(7)
    kills = 0
    deadline = time.monotonic() + 60
    while kills < 4 and time.monotonic() < deadline:
        busy = _busy_children(client, crash_worker)
        if busy:
            try:
                os.kill(rng.choice(busy), signal.SIGKILL)
            except ProcessLookupError:  # it finished and was replaced meanwhile
                continue
            kills += 1
            eventually(
                lambda: len(crash_worker.children()) == 2,
                timeout=20,
                what="pool replaced the killed process",
            )
        else:
            time.sleep(0.05)  # polling for a busy process, not synchronising a result
    assert kills >= 2
    for handle in handles:
        assert handle.result(timeout=90) == EXPECTED_CRASH_SUM
    for i in range(3):
        _assert_each_call_applied_once_and_never_rerun_after_completion(testdir, f"kill{i}")


def test_runs_survive_a_redis_restart(
    client: Client, redis_server: RedisServer, crash_worker: Worker, testdir: Path
) -> None:
    handles = [client.submit("CrashChain", label=f"restart{i}") for i in range(2)]
    eventually(lambda: (testdir / "effects" / "restart0.exec").exists(), timeout=30)
    redis_server.restart()
    for handle in handles:
        status = eventually(partial(_final, handle), timeout=120, what="run ended")
        assert status == "completed"
        assert handle.result(timeout=5) == EXPECTED_CRASH_SUM


def _final(handle: RunHandle) -> str | None:
    status = handle.status()
    return status if status in ("completed", "failed", "cancelled") else None


def _busy_children(client: Client, worker: Worker) -> list[int]:
    active = client.runtime.app.control.inspect(destination=[worker.name], timeout=0.5).active()
    pids = [t.get("worker_pid") for tasks in (active or {}).values() for t in tasks]
    return [p for p in pids if p]


def _assert_each_call_applied_once_and_never_rerun_after_completion(
    testdir: Path, label: str
) -> None:
    base = testdir / "effects"
    applied = (base / f"{label}.effects").read_text().split()
    assert len(applied) == len(set(applied)) == 12
    finished: dict[str, float] = {}
    for line in (base / f"{label}.exec").read_text().splitlines():
        kind, call, ts = line.split()
        if kind == "done":
            finished.setdefault(call, float(ts))
        else:
            assert call not in finished, f"call {call} ran again after it completed"


def test_a_message_lost_by_the_broker_is_resent_by_the_reaper(
    client: Client, redis_server: RedisServer, testdir: Path
) -> None:
    rt = client.runtime
    handle = client.submit("CrashChain", label="lost", steps=1)
    queue = f"{rt.settings.key_prefix}:q:crash"
    assert rt.redis.delete(queue) == 1  # what a Redis crash between pop and unacked can do
    env = worker_env(redis_server.url, testdir, BATON_MAX_TIME_LIMIT=5, BATON_VISIBILITY_TIMEOUT=8)
    worker = Worker(env, ["crash"], concurrency=1, name="reaper@test").start()
    try:
        assert handle.result(timeout=60) == 0 + 1 + 2
    finally:
        worker.stop()
    assert "resending 1 lost message" in worker.log.read_text()


def test_a_store_error_under_a_steps_own_store_call_brings_the_step_back_not_a_failure(
    isolated_client: Client, isolated_workers: StartWorker, testdir: Path
) -> None:
    """Redis failing under Baton's own call from a step's code (here ``ctx.store.set`` finds
    its key of the wrong type) is the store failing, not the step: nothing is written, the
    message comes back, and the step runs again once the store answers."""
    worker = isolated_workers("itest", "storeerr")
    rt, label = isolated_client.runtime, f"se{uuid.uuid4().hex[:6]}"
    handle = isolated_client.submit("StoreOnSignal", label=label)
    eventually(lambda: (testdir / "effects" / f"{label}.waiting").exists(), timeout=30)
    store = rt.keys.store(handle.run_id)
    rt.redis.set(store, "not a hash")  # the step's HSET fails: WRONGTYPE
    (testdir / "effects" / f"{label}.go").touch()
    eventually(lambda: "WRONGTYPE" in worker.log.read_text(), timeout=30, what="the store error")
    rt.redis.delete(store)  # the store answers again
    assert handle.result(timeout=60) == label
    outcomes = [s.outcome for s in handle.spans() if s.kind is SpanKind.STEP]
    assert SpanOutcome.FAILED not in outcomes, outcomes

"""Global rate limits of tools: enforced across worker processes, per key, FIFO, and a call
waiting for its slot holds no worker (it waits in Redis's timer set)."""

from __future__ import annotations

import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from app.client import Client
from tasks.protocol import SpanOutcome
from tests.harness import StartWorker, eventually
from tests.integration.limit_flows import QUEUE, effects

pytestmark = pytest.mark.integration


@pytest.fixture
def limit_client(isolated_client: Client) -> Client:
    return isolated_client


@pytest.fixture
def worker_factory(isolated_workers: StartWorker) -> StartWorker:
    return partial(isolated_workers, QUEUE)


def _runs(testdir: Path, label: str) -> list[tuple[float, str, str]]:
    """Executions under ``label``: (time, call id, key), in time order."""
    path = effects(label, testdir)
    lines = path.read_text().splitlines() if path.exists() else []
    return sorted((float(t), call, key) for t, call, key in (line.split() for line in lines))


def _max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most executions in any ``window`` seconds (closed on both ends)."""
    return max(sum(1 for u in times if t <= u <= t + window) for t in times)


def _slots(client: Client, run_id: str) -> dict[str, float]:
    """Call id -> the slot ACQUIRE reserved for its first attempt."""
    r, k = client.runtime.redis, client.runtime.keys
    pattern = k.reservation(run_id, "*", 1)
    return {key.split(":")[-2]: float(r.get(key)) for key in r.scan_iter(match=pattern)}


def test_a_global_limit_holds_across_worker_processes_and_every_call_completes(
    limit_client: Client, worker_factory: Any, testdir: Path
) -> None:
    worker_factory("rla", concurrency=2)
    worker_factory("rlb", concurrency=2)
    label = f"a{uuid.uuid4().hex[:6]}"
    handle = limit_client.submit("LimitBurst", label=label, tool="limited_5", n=20)
    assert handle.result(timeout=15) == 20
    runs = _runs(testdir, label)
    times = [t for t, _, _ in runs]
    assert len(runs) == 20 and len({call for _, call, _ in runs}) == 20  # each call once
    assert _max_in_window(times) <= 6
    assert times[-1] - times[0] >= 3.0  # 20 calls at 5/s: 19 intervals of 0.2 s
    slots = _slots(limit_client, handle.run_id)
    assert all(t >= slots[call] - 0.01 for t, call, _ in runs)  # none ran before its slot
    limited = [s for s in handle.spans() if s.outcome is SpanOutcome.LIMITED]
    assert limited and all(
        "waiting for rate limit 5/s of tool limited_5" in s.error for s in limited
    )


def test_b_limits_per_key_are_independent(
    limit_client: Client, worker_factory: Any, testdir: Path
) -> None:
    worker_factory("rlk", concurrency=4)
    label = f"b{uuid.uuid4().hex[:6]}"
    handle = limit_client.submit(
        "LimitBurst", label=label, tool="limited_keyed", n=12, users=["ann", "bob"]
    )
    assert handle.result(timeout=15) == 12
    runs = _runs(testdir, label)
    for user in ("ann", "bob"):
        times = [t for t, _, key in runs if key == user]
        assert len(times) == 6
        assert _max_in_window(times) <= 3  # 2/s each (+1 at a window's closed ends)
        assert times[-1] - times[0] >= 2.0  # 5 intervals of 0.5 s
    # both keys at once: ~4/s overall, done in ~2.5 s, not the ~5.5 s one shared limit takes
    assert runs[-1][0] - runs[0][0] < 4.0
    spans = [s for s in handle.spans() if s.outcome is SpanOutcome.LIMITED]
    assert any("(key ann)" in s.error for s in spans) and any("(key bob)" in s.error for s in spans)


def test_c_waiting_calls_hold_no_worker_slot(
    limit_client: Client, worker_factory: Any, testdir: Path
) -> None:
    worker_factory("rlc", concurrency=1)
    label = f"c{uuid.uuid4().hex[:6]}"
    slow = limit_client.submit("LimitBurst", label=label, tool="limited_1", n=10)
    rt = limit_client.runtime
    eventually(lambda: rt.redis.zcard(rt.keys.timers()) >= 8, timeout=10, what="the calls waiting")
    started = time.time()
    quick = limit_client.submit("LimitQuick")
    quick.result(timeout=5)
    assert time.time() - started < 2.0
    assert len(_runs(testdir, label)) < 10  # the limited calls were still waiting meanwhile
    assert slow.result(timeout=15) == 10
    times = [t for t, _, _ in _runs(testdir, label)]
    assert times[-1] - times[0] >= 8.5 and _max_in_window(times) <= 2


def test_d_calls_of_one_key_run_in_the_order_they_were_first_delivered(
    limit_client: Client, worker_factory: Any, testdir: Path
) -> None:
    worker_factory("rld", concurrency=4)
    label = f"d{uuid.uuid4().hex[:6]}"
    handle = limit_client.submit("LimitBurst", label=label, tool="limited_5", n=10)
    assert handle.result(timeout=15) == 10
    slots = _slots(limit_client, handle.run_id)
    reserved = sorted(slots, key=lambda call: slots[call])  # the order ACQUIRE saw them
    assert [call for _, call, _ in _runs(testdir, label)] == reserved


def test_e_a_run_whose_only_work_waits_for_a_limit_says_so(
    limit_client: Client, worker_factory: Any, testdir: Path
) -> None:
    worker_factory("rle", concurrency=2)
    label = f"e{uuid.uuid4().hex[:6]}"
    handle = limit_client.submit("LimitBurst", label=label, tool="limited_1", n=3)
    eventually(
        lambda: handle.state().state == "waiting for a limit",
        timeout=5,
        what="the run waiting for the rate limit",
    )
    assert handle.result(timeout=10) == 3

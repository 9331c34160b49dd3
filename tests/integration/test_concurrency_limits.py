"""Concurrency limits of tools: at most N calls in flight across worker processes, per key; a
call over its limit waits in Redis (no worker slot), and a permit whose holder's worker was
SIGKILLed comes back within its lease."""

from __future__ import annotations

import os
import signal
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from app import metrics
from app.client import Client
from tasks import reaper
from tasks.protocol import SpanOutcome
from tasks.runtime import now
from tests.harness import StartWorker, eventually
from tests.integration.limit_flows import QUEUE, effects, held

pytestmark = pytest.mark.integration


@pytest.fixture
def worker_factory(isolated_workers: StartWorker) -> StartWorker:
    return partial(isolated_workers, QUEUE)


def _held(testdir: Path, label: str) -> list[tuple[float, float, str, str]]:
    """Finished executions under ``label``: (enter, exit, call id, key), by enter time."""
    path = held(label, testdir)
    lines = path.read_text().splitlines() if path.exists() else []
    return sorted((float(a), float(b), c, k) for a, b, c, k in (ln.split() for ln in lines))


def _max_overlap(spans: list[tuple[float, float, str, str]]) -> int:
    """The most executions in progress at one instant."""
    events = sorted([(a, 1) for a, *_ in spans] + [(b, -1) for _, b, *_ in spans])
    most = level = 0
    for _, step in events:  # at equal times an exit (-1) sorts before an enter (+1)
        level += step
        most = max(most, level)
    return most


def _metric(scrape: str, family: str, label_part: str) -> float:
    """The sum of ``family``'s samples whose labels contain ``label_part``."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in scrape.splitlines()
        if line.startswith(family + "{") and label_part in line.split("}", 1)[0]
    )


def _waiting(client: Client, tool: str, key: str = "") -> int:
    rt = client.runtime
    return int(rt.redis.llen(f"{rt.keys.concurrency(tool, key)}:waiting"))


def test_a_at_most_n_in_flight_across_worker_processes(
    isolated_client: Client, worker_factory: Any, testdir: Path
) -> None:
    worker_factory("cla", concurrency=4)
    worker_factory("clb", concurrency=4)
    label = f"a{uuid.uuid4().hex[:6]}"
    handle = isolated_client.submit("LimitBurst", label=label, tool="concurrent_2", n=10)
    assert handle.result(timeout=20) == 10
    spans = _held(testdir, label)
    assert len(spans) == 10 and len({c for *_, c, _ in spans}) == 10
    assert _max_overlap(spans) == 2
    limited = [s for s in handle.spans() if s.outcome is SpanOutcome.LIMITED]
    assert limited and all(
        "waiting for concurrency limit 2 of tool concurrent_2" in s.error for s in limited
    )
    eventually(  # every limited delivery counted (workers flush their counts every 2 s)
        lambda: (
            _metric(metrics.exposition(isolated_client.runtime), "baton_tool_limited_total", "")
            == len(limited)
        ),
        timeout=10,
        what="the limited deliveries counted",
    )
    rt = isolated_client.runtime
    eventually(
        lambda: (
            not rt.redis.hexists(
                rt.keys.concurrency_index(), rt.keys.concurrency("concurrent_2", "")
            )
        ),
        timeout=5,
        what="the limit's keys gone",
    )


def test_b_limits_per_key_are_independent(
    isolated_client: Client, worker_factory: Any, testdir: Path
) -> None:
    worker_factory("clk", concurrency=4)
    label = f"b{uuid.uuid4().hex[:6]}"
    handle = isolated_client.submit(
        "LimitBurst", label=label, tool="concurrent_keyed", n=6, users=["ann", "bob"]
    )
    assert handle.result(timeout=20) == 6
    spans = _held(testdir, label)
    for user in ("ann", "bob"):
        assert _max_overlap([s for s in spans if s[3] == user]) == 1
    assert _max_overlap(spans) == 2  # the two keys ran side by side
    errors = [s.error for s in handle.spans() if s.outcome is SpanOutcome.LIMITED]
    assert any("(key ann)" in e for e in errors) and any("(key bob)" in e for e in errors)


def test_c_a_permit_held_by_a_killed_worker_comes_back_within_its_lease(
    isolated_client: Client, worker_factory: Any, testdir: Path
) -> None:
    doomed = worker_factory("clx", concurrency=2)
    label = f"k{uuid.uuid4().hex[:6]}"
    handle = isolated_client.submit("LimitBurst", label=label, tool="concurrent_1", n=4)
    entered = effects(label, testdir).with_suffix(".entered")
    eventually(
        lambda: entered.exists() and _waiting(isolated_client, "concurrent_1") == 3,
        timeout=10,
        what="one call holding the permit, three waiting",
    )
    scrape = metrics.exposition(isolated_client.runtime)
    assert _metric(scrape, "baton_limit_permits_held", "tool:concurrent_1:") == 1
    assert _metric(scrape, "baton_limit_waiting", "tool:concurrent_1:") == 3
    assert doomed.proc is not None
    os.killpg(doomed.proc.pid, signal.SIGKILL)
    killed = time.time()
    worker_factory("cly", concurrency=2)
    # lease: the tool's hard time limit (its timeout 2 s + 5 s grace) + the 2 s margin
    lease = 9.0
    eventually(
        lambda: len(_held(testdir, label)) >= 3, timeout=lease + 6, what="the waiting calls run"
    )
    first_waiter = min(a for a, *_ in _held(testdir, label))
    assert first_waiter - killed < lease + 2.0
    assert handle.result(timeout=12) == 4
    spans = _held(testdir, label)
    assert _max_overlap(spans) == 1


def test_d_waiting_calls_hold_no_worker_slot(
    isolated_client: Client, worker_factory: Any, testdir: Path
) -> None:
    worker_factory("cld", concurrency=2)
    label = f"d{uuid.uuid4().hex[:6]}"
    slow = isolated_client.submit("LimitBurst", label=label, tool="concurrent_1", n=8)
    eventually(
        lambda: _waiting(isolated_client, "concurrent_1") >= 5, timeout=10, what="the calls waiting"
    )
    _the_reaper_finds_the_waiting_calls(isolated_client)
    started = time.time()
    quick = isolated_client.submit("LimitQuick")
    quick.result(timeout=5)
    assert time.time() - started < 1.5
    assert len(_held(testdir, label)) < 8  # the limited calls were still waiting meanwhile
    assert slow.result(timeout=15) == 8
    assert _max_overlap(_held(testdir, label)) == 1


def _the_reaper_finds_the_waiting_calls(client: Client) -> None:
    """Every waiting call's in-flight record, taken as overdue, is found present (in the
    waiting list) by the reaper, so it is never resent."""
    rt = client.runtime
    key = f"{rt.keys.concurrency('concurrent_1', '')}:waiting"
    waiting = {entry.split("\n", 1)[0] for entry in rt.redis.lrange(key, 0, -1)}
    records = reaper._live_inflight(rt, now(), now() + 60.0)  # all overdue
    candidates = [c for c in records if c.task_id in waiting]
    found = reaper._present(rt, records, candidates) & waiting
    assert len(waiting) >= 4 and len(found) >= len(waiting) - 1  # one may be moving meanwhile

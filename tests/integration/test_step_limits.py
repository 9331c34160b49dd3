"""Global rate and concurrency limits of steps: enforced across worker processes, charged once
per attempt (a resumed step is not charged again), a step over its limit waits in Redis (no
worker slot) and says so, and a permit whose holder's worker was SIGKILLed comes back within
its lease."""

from __future__ import annotations

import os
import signal
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from app.client import Client, RunHandle
from tasks import reaper
from tasks.protocol import Span, SpanKind, SpanOutcome
from tasks.runtime import now
from tests.harness import StartWorker, eventually
from tests.integration.limit_flows import QUEUE, StepRun, step_log

pytestmark = pytest.mark.integration

Line = tuple[float, float, str, str, str]  # enter, exit, run id, key, what


@pytest.fixture
def worker_factory(isolated_workers: StartWorker) -> StartWorker:
    return partial(isolated_workers, QUEUE)


def _lines(testdir: Path, label: str) -> list[Line]:
    """The step's noted executions under ``label``, by enter time."""
    path = step_log(label, testdir)
    rows = path.read_text().splitlines() if path.exists() else []
    return sorted((float(a), float(b), r, k, w) for a, b, r, k, w in (x.split() for x in rows))


def _max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most starts in any ``window`` seconds (closed on both ends)."""
    return max(sum(1 for u in times if t <= u <= t + window) for t in times)


def _max_overlap(lines: list[Line]) -> int:
    """The most executions in progress at one instant (an exit sorts before an enter)."""
    events = sorted([(a, 1) for a, *_ in lines] + [(b, -1) for _, b, *_ in lines])
    most = level = 0
    for _, step in events:
        level += step
        most = max(most, level)
    return most


def _submit(client: Client, workflow: str, label: str, users: list[str], **kw: Any) -> list[Any]:
    return [client.submit(workflow, StepRun(label=label, user=u, **kw)) for u in users]


def _step_spans(handles: list[RunHandle]) -> list[Span]:
    return [s for h in handles for s in h.spans() if s.kind is SpanKind.STEP]


def test_a_step_rate_limit_holds_across_worker_processes(
    isolated_client: Client, worker_factory: Any, testdir: Path
) -> None:
    worker_factory("sra", concurrency=2)
    worker_factory("srb", concurrency=2)
    label = f"a{uuid.uuid4().hex[:6]}"
    handles = _submit(isolated_client, "RatedStep", label, [""] * 15)
    assert sorted(h.result(timeout=20) for h in handles) == sorted(h.run_id for h in handles)
    starts = [a for a, *_ in _lines(testdir, label)]
    assert len(starts) == 15
    assert _max_in_window(starts) <= 6
    assert starts[-1] - starts[0] >= 2.7  # 15 starts at 5/s: 14 intervals of 0.2 s
    limited = [s for s in _step_spans(handles) if s.outcome is SpanOutcome.LIMITED]
    assert limited and all(
        "waiting for rate limit 5/s of step RatedStep.go until" in s.error for s in limited
    )


def test_b_a_step_concurrency_limit_holds_and_its_keys_are_independent(
    isolated_client: Client, worker_factory: Any, testdir: Path
) -> None:
    worker_factory("scl", concurrency=4)
    label = f"b{uuid.uuid4().hex[:6]}"
    handles = _submit(isolated_client, "BoundedStep", label, [""] * 8, hold=0.4)
    eventually(
        lambda: any(h.state().state == "waiting for a limit" for h in handles),
        timeout=10,
        what="a run waiting for the step's permit",
    )
    assert all(h.result(timeout=20) for h in handles)
    lines = _lines(testdir, label)
    assert len(lines) == 8 and _max_overlap(lines) == 2
    errors = [s.error for s in _step_spans(handles) if s.outcome is SpanOutcome.LIMITED]
    assert errors and all(
        "waiting for concurrency limit 2 of step BoundedStep.go" in e for e in errors
    )

    keyed = f"c{uuid.uuid4().hex[:6]}"
    handles = _submit(isolated_client, "BoundedStep", keyed, ["ann", "bob"] * 4, hold=0.6)
    assert all(h.result(timeout=20) for h in handles)
    lines = _lines(testdir, keyed)
    for user in ("ann", "bob"):
        assert _max_overlap([x for x in lines if x[3] == user]) <= 2
    assert _max_overlap(lines) > 2  # the two keys ran side by side
    rt = isolated_client.runtime
    eventually(
        lambda: not rt.redis.hkeys(rt.keys.concurrency_index()),
        timeout=5,
        what="the limits' keys gone",
    )


def test_c_a_resumed_step_is_charged_its_rate_slot_once(
    isolated_client: Client, worker_factory: Any, testdir: Path
) -> None:
    worker_factory("srt", concurrency=4)
    label = f"d{uuid.uuid4().hex[:6]}"
    handles = _submit(isolated_client, "RatedToolStep", label, [f"u{i}" for i in range(6)])
    assert sorted(h.result(timeout=20) for h in handles) == [f"u{i}" for i in range(6)]
    lines = _lines(testdir, label)
    assert sum(w == "before" for *_, w in lines) == 12  # each run: its start, its resume
    assert sum(w == "after" for *_, w in lines) == 6
    for h in handles:
        spans = sorted(_step_spans([h]), key=lambda s: s.end)
        outcomes = [s.outcome for s in spans]
        # waits (if any) only before its one start; the resume ran at once, never limited
        assert outcomes.count(SpanOutcome.SUSPENDED) == 1, outcomes
        parked = outcomes.index(SpanOutcome.SUSPENDED)
        assert outcomes[parked + 1 :] == [SpanOutcome.COMPLETED], outcomes
        assert set(outcomes[:parked]) <= {SpanOutcome.LIMITED}


def test_d_a_rate_limited_run_says_it_waits_for_a_limit(
    isolated_client: Client, worker_factory: Any, testdir: Path
) -> None:
    worker_factory("sre", concurrency=2)
    label = f"e{uuid.uuid4().hex[:6]}"
    *_, last = handles = _submit(isolated_client, "SlowRatedStep", label, ["ann"] * 3)
    eventually(
        lambda: last.state().state == "waiting for a limit",
        timeout=5,
        what="the last run waiting for the step's rate limit",
    )
    assert all(h.result(timeout=10) for h in handles)
    limited = [s for s in _step_spans(handles) if s.outcome is SpanOutcome.LIMITED]
    assert limited and all(
        "waiting for rate limit 1/s of step SlowRatedStep.go (key ann) until" in s.error
        for s in limited
    )


def test_e_a_step_permit_held_by_a_killed_worker_comes_back_within_its_lease(
    isolated_client: Client, worker_factory: Any, testdir: Path
) -> None:
    doomed = worker_factory("skx", concurrency=2)
    label = f"k{uuid.uuid4().hex[:6]}"
    handles = _submit(isolated_client, "SoloStep", label, [""] * 4, hold=0.3)
    rt = isolated_client.runtime
    waiting = f"{rt.keys.concurrency('SoloStep.go', '', 'step')}:waiting"
    entered = step_log(label, testdir).with_suffix(".entered")
    eventually(
        lambda: entered.exists() and rt.redis.llen(waiting) == 3,
        timeout=10,
        what="one step holding the permit, three waiting",
    )
    _the_reaper_finds_the_waiting_steps(isolated_client, waiting)
    assert doomed.proc is not None
    os.killpg(doomed.proc.pid, signal.SIGKILL)
    killed = time.time()
    worker_factory("sky", concurrency=2)
    lease = 7.0  # the isolated workers' hard time limit for a step without timeout (5 s) + 2 s
    eventually(lambda: len(_lines(testdir, label)) >= 1, timeout=lease + 8, what="a waiter runs")
    assert min(a for a, *_ in _lines(testdir, label)) - killed < lease + 3.0
    assert all(h.result(timeout=20) for h in handles)
    assert _max_overlap(_lines(testdir, label)) == 1


def _the_reaper_finds_the_waiting_steps(client: Client, waiting_key: str) -> None:
    """Every waiting step delivery's in-flight record, taken as overdue, is found present (in
    the step limit's waiting list) by the reaper, so it is never resent."""
    rt = client.runtime
    waiting = {entry.split("\n", 1)[0] for entry in rt.redis.lrange(waiting_key, 0, -1)}
    records = reaper._live_inflight(rt, now(), now() + 60.0)  # all overdue
    candidates = [c for c in records if c.task_id in waiting]
    assert len(candidates) == len(waiting) == 3
    assert reaper._present(rt, records, candidates) >= waiting

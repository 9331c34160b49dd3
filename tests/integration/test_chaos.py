"""The chaos suite's CI setting: mixed runs under every kind of fault, and nothing goes wrong.

It starts its own redis-server and workers (it kills and freezes them), so it needs none of
the session fixtures. ``python -m tests.chaos.suite --short`` is the same run from a shell.
Two quick tests pin the suite's counting rules, so a 0 means nothing happened, not that the
suite could not see it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chaos import measure
from tests.chaos.cluster import FAULT_KINDS
from tests.chaos.driver import Outcome
from tests.chaos.flows import plan_run
from tests.chaos.record import ChaosConfig, ChaosResult
from tests.chaos.suite import run_chaos


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_runs_survive_worker_kills_redis_restarts_freezes_and_poison_with_nothing_lost_or_doubled(
    tmp_path: Path,
) -> None:
    # every fault kind once over 48 runs (the default suite's time, as with RabbitMQ below);
    # `bash scripts/chaos.sh --short` runs 80
    cfg = ChaosConfig.short(workdir=tmp_path, runs=48)
    assert cfg.fault_kinds == FAULT_KINDS
    run_chaos(cfg).assert_clean(cfg)


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_the_same_holds_with_rabbitmq_as_the_broker_killed_and_restarted_too(
    tmp_path: Path,
) -> None:
    # fewer runs than the Redis setting (48 over 30 s), every fault kind still once: the
    # default suite's time; `bash scripts/chaos.sh --short --broker rabbitmq` runs 80
    cfg = ChaosConfig.short(workdir=tmp_path, broker="rabbitmq", runs=48)
    run_chaos(cfg).assert_clean(cfg)


def test_the_suite_counts_executions_after_the_answer_and_beyond_the_retry_policy(
    tmp_path: Path,
) -> None:
    """The counting rules themselves, on a hand-written effects file (no Redis needed)."""
    plan = plan_run("gather", "r1", 2)
    keys = sorted(plan.call_keys)
    lines = [f"start {k} 1 10.0\nend {k} tok{i} 11.0\n" for i, k in enumerate(keys)]
    # keys[0] runs again after its answer; keys[1] ran twice, overlapping, before its answer
    lines += [f"start {keys[0]} 1 12.0\n", f"start {keys[1]} 1 10.5\n"]
    path = tmp_path / "effects.log"
    path.write_text("".join(lines))
    tokens = {k: f"tok{i}" for i, k in enumerate(keys)}
    outcome = Outcome(plan, 0, "run1", status="completed", result={"value": 0, "tokens": tokens})
    result = ChaosResult(settings={})
    measure.effects(path, [outcome], result)
    assert (result.executed_after_answer, result.calls_over_policy) == (1, 2)
    assert (result.extra_executions, result.unknown_tokens) == (2, 0)


def test_the_suite_tells_lost_runs_from_runs_finished_twice_or_wrong() -> None:
    def ended(kind: str, result: Any, ends: int = 1, status: str = "completed") -> Outcome:
        plan = plan_run(kind, f"r-{kind}-{ends}-{status}", 3)
        return Outcome(plan, 0, "run", status=status, result=result, ends=ends)

    right = {"value": 6, "tokens": {}}
    outcomes = [
        ended("sleep", right),
        ended("sleep", right, ends=2),
        ended("sleep", {"value": 7, "tokens": {}}),
        ended("sleep", None, status="failed"),
        ended("doomed", None, status="failed"),
        Outcome(plan_run("sleep", "r-never", 3), 0, "run"),
        Outcome(plan_run("sleep", "r-unsent", 3), 0),
    ]
    result = ChaosResult(settings={})
    measure.judge(outcomes, result)
    assert (result.runs_completed, result.runs_failed_as_expected) == (1, 1)
    assert (result.runs_finished_twice, result.wrong_results) == (2, 1)
    assert (result.runs_lost, result.runs_submitted) == (3, 6)

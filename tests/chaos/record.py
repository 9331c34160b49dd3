"""The chaos suite's setting (:class:`ChaosConfig`) and its typed result record."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

HEADLINES = (
    "runs_lost",
    "runs_finished_twice",
    "executed_after_answer",
    "duplicates_left",
    "keys_left",
    "workers_died",
)


@dataclass(frozen=True)
class ChaosConfig:
    """One setting of the suite (the default is the long one)."""

    runs: int = 2000
    faults: int = 12
    clients: int = 3
    seed: int = 1
    fsync: str = "alternate"  # everysec | always | alternate (flipped at every Redis restart)
    rate: float = 3.0  # runs submitted per second (faults are spread over that time)
    retention: int = 30
    grace: float = 120.0  # after the last submission and fault: how long runs may take to end
    window: int = 8  # runs in flight per client at most
    freeze_seconds: float = 4.0
    broker: str = "redis"  # redis: one Redis is broker and state | rabbitmq: a private RabbitMQ
    workdir: Path | None = None
    keep: bool = False

    @classmethod
    def short(cls, **changes: Any) -> ChaosConfig:
        """The CI setting: 80 runs and one fault of each kind in under three minutes."""
        short = replace(cls(runs=80, faults=5, rate=1.6, grace=45.0), **changes)
        return replace(short, faults=len(short.fault_kinds))  # one fault of each kind

    @property
    def fault_kinds(self) -> tuple[str, ...]:
        """The faults of this setting: with RabbitMQ as the broker, its kill -9 and restart too."""
        kinds = ("worker_kill", "worker_term", "redis_restart", "redis_freeze", "poison")
        return (*kinds, "broker_restart") if self.broker == "rabbitmq" else kinds

    @property
    def duration(self) -> float:
        """Seconds over which runs are submitted and faults injected."""
        return self.runs / self.rate


@dataclass
class ChaosResult:
    """What one suite run measured. The headline counts (``HEADLINES``) must all be 0."""

    settings: dict[str, Any]
    runs_submitted: int = 0
    runs_completed: int = 0
    runs_failed_as_expected: int = 0
    runs_lost: int = 0
    runs_finished_twice: int = 0
    wrong_results: int = 0
    executed_after_answer: int = 0
    calls_over_policy: int = 0
    extra_executions: int = 0
    unknown_tokens: int = 0
    duplicates_left: int = 0
    keys_left: int = 0
    workers_died: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    fsync_at_restart: list[str] = field(default_factory=list)
    worker_faults_mid_task: int = 0  # kills and SIGTERMs that found their worker running a task
    poison_pushed: int = 0
    dead_letters: int = 0  # distinct entries seen on the dead-letter list during the run
    wall_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    leftover_keys: list[str] = field(default_factory=list)
    leftover_shapes: dict[str, int] = field(default_factory=dict)
    excluded_keys: list[str] = field(default_factory=list)
    queues_left: dict[str, int] = field(default_factory=dict)
    worker_deaths: list[str] = field(default_factory=list)
    bot_errors: list[str] = field(default_factory=list)
    client_errors: dict[str, int] = field(default_factory=dict)
    log_errors: list[str] = field(default_factory=list)
    log_warnings: list[str] = field(default_factory=list)
    suite_errors: list[str] = field(default_factory=list)
    workdir: str = ""

    def headline(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in HEADLINES}

    @property
    def ok(self) -> bool:
        return not any(self.headline().values()) and not self.suite_errors

    def assert_clean(self, cfg: ChaosConfig) -> None:
        """Every fault kind done once, every run submitted, every headline count 0: what a
        test of the short suite asserts (the table says what went wrong)."""
        assert self.faults == dict.fromkeys(cfg.fault_kinds, 1), self.table()
        assert not self.suite_errors, self.table()
        assert self.runs_submitted == cfg.runs, self.table()
        assert self.headline() == dict.fromkeys(HEADLINES, 0), self.table()

    def table(self) -> str:
        """The final report, for people."""
        rows = [
            ("runs submitted", self.runs_submitted),
            ("runs completed (right result)", self.runs_completed),
            ("runs failed as expected", self.runs_failed_as_expected),
            ("* runs lost (no end, wrong status)", self.runs_lost),
            ("* runs finished twice / wrong result", self.runs_finished_twice),
            ("    of which wrong result", self.wrong_results),
            ("* tool calls executed after their answer", self.executed_after_answer),
            ("  calls executed more often than their policy allows", self.calls_over_policy),
            ("    executions beyond the policy", self.extra_executions),
            ("  answered tokens missing from the effects log", self.unknown_tokens),
            ("* duplicate messages left in queues", self.duplicates_left),
            ("* Redis keys left after retention", self.keys_left),
            ("* workers that died (not killed by the suite)", self.workers_died),
            ("faults injected", ", ".join(f"{k} {v}" for k, v in self.faults.items())),
            ("worker faults that landed mid-task", self.worker_faults_mid_task),
            ("Redis killed under fsync", ", ".join(self.fsync_at_restart) or "-"),
            ("poison messages pushed", self.poison_pushed),
            ("dead letters seen", self.dead_letters),
            ("wall time (s)", f"{self.wall_seconds:.1f}"),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name:<{width}}  {value}" for name, value in rows]
        for title, items in self._details():
            if items:
                lines += [f"{title}:", *(f"  {item}" for item in items)]
        verdict = "PASS" if self.ok else "FAIL"
        return "\n".join([*lines, f"(* = headline count, must be 0)  {verdict}"])

    def _details(self) -> list[tuple[str, list[str]]]:
        return [
            ("lost or wrong runs (first 20)", self.problems),
            ("leftover keys (first 20)", self.leftover_keys),
            ("leftover keys by shape", [f"{n} x {k}" for k, n in self.leftover_shapes.items()]),
            ("keys not counted (broker bookkeeping)", self.excluded_keys),
            ("queues not drained", [f"{k}: {v}" for k, v in self.queues_left.items()]),
            ("worker deaths", self.worker_deaths),
            ("bot errors", self.bot_errors),
            ("client errors", [f"{k}: {v}" for k, v in self.client_errors.items()]),
            ("worker log errors (count x line)", self.log_errors),
            ("worker log warnings (count x line)", self.log_warnings),
            ("suite errors", self.suite_errors),
            ("work dir (logs, effects file, redis data)", [self.workdir]),
        ]

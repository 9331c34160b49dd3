"""Honest time limits: a worker refuses to serve a call its visibility timeout cannot cover,
and a call stopped by its hard time limit is reported as a timeout, under its retry policy.

Without the first, a message whose task outlives the visibility timeout is delivered again
while it runs (two copies of one tool call at once). Without the second, Celery's hard kill
leaves the call in flight; the reaper resends it and it runs again until the delivery limit
gives up with "its worker keeps dying", whatever its retry policy said.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals
from celery.exceptions import TimeLimitExceeded

from tasks.protocol import TOOL_TASK_PREFIX, StepArgs, ToolArgs
from tasks.runtime import Runtime
from tasks.step_task import StepTask
from tasks.tool_task import hard_timeout

log = logging.getLogger("baton.worker")


RABBITMQ_CONSUMER_TIMEOUT = 1800  # seconds: RabbitMQ's default consumer_timeout


def install(rt: Runtime) -> None:
    """Check this worker's queues once it knows them; report hard kills of its tasks."""

    def check(instance: Any = None, **_: Any) -> None:
        queues = set(instance.app.amqp.queues.consume_from) if instance is not None else set()
        # RabbitMQ redelivers nothing while the consumer lives, but closes a channel whose
        # unacknowledged delivery is older than its consumer_timeout (30 minutes by default)
        amqp = rt.settings.broker.startswith("amqp")
        covered = RABBITMQ_CONSUMER_TIMEOUT if amqp else rt.settings.visibility_timeout
        problems = rt.placement.uncovered_limits(covered, queues)
        if problems:
            for problem in problems:
                log.critical("baton worker: %s", problem)
            raise SystemExit(f"baton worker: {problems[0]}")

    def on_failure(sender: Any = None, task_id: str = "", exception: Any = None, **kw: Any) -> None:
        if isinstance(exception, TimeLimitExceeded) and task_id:
            report_hard_timeout(
                rt, str(getattr(sender, "name", "")), list(kw.get("args") or []), task_id, exception
            )

    signals.celeryd_after_setup.connect(check, weak=False)
    signals.task_failure.connect(on_failure, weak=False)


def report_hard_timeout(
    rt: Runtime, name: str, args: list[Any], task_id: str, exc: TimeLimitExceeded
) -> None:
    """Celery killed the process running ``task_id`` at its hard limit (this runs in the
    worker's main process): answer the call as a timeout, or retry it, as its policy says."""
    seconds = limit_seconds(exc)
    try:
        if name.startswith(TOOL_TASK_PREFIX):
            hard_timeout(
                rt, name[len(TOOL_TASK_PREFIX) :], ToolArgs.from_wire(args), task_id, seconds
            )
        else:
            workflow, step = name.rsplit(".", 1)
            StepTask(rt, workflow, step, StepArgs.from_wire(args), task_id).hard_timeout(seconds)
    except Exception:  # Redis away: the reaper resends it, and its next delivery reports it
        log.exception("could not report the hard time limit of %s[%s]", name, task_id)


def limit_seconds(exc: BaseException) -> float:
    """The limit a time-limit exception carries (Celery puts it in ``args[0]``), else 0."""
    try:
        return float(exc.args[0])
    except (IndexError, TypeError, ValueError):
        return 0.0

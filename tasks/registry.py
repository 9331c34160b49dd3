"""Registers every workflow step and every tool as a named Celery task on its queue.

Task names are readable in Flower: ``Research.score``, ``tool.sentiment``. Registering installs
nothing else: what only a worker needs (dead letters, the reaper) is ``tasks.worker``'s.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import redis
from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded
from kombu import Exchange, Queue

from tasks import deadletters, runs
from tasks.attempts import (
    TASK_OPTIONS,
    Attempt,
    AttemptFailed,
    internal_failure,
    store_away,
    tell_celery,
)
from tasks.interop import register_interop
from tasks.placement import step_task_name, tool_task_name
from tasks.protocol import StepArgs, ToolArgs, Where, compact
from tasks.runtime import Runtime
from tasks.step_task import StepTask
from tasks.time_limits import limit_seconds
from tasks.tool_task import run_tool
from workflows._engine.records import JournalEntry
from workflows.errors import ErrorInfo, PayloadError
from workflows.tools import all_tools
from workflows.workflow import runnable_workflows

log = logging.getLogger("baton.worker")


def register_tasks(app: Celery, rt: Runtime) -> dict[str, str]:
    """Create the tasks; returns task name -> queue (also set as the app's routes).

    Every workflow's graph is checked first: an invalid one stops the process here, with
    every problem named (an incomplete base class that others complete is skipped)."""
    routes: dict[str, str] = {}
    placement = rt.placement
    for wf in runnable_workflows().values():
        for step_name in wf.spec.steps:
            name = step_task_name(wf.name, step_name)
            limit = placement.step_limit(wf, step_name)
            _register(app, name, _step_task(rt, wf.name, step_name), None, limit)
            routes[name] = placement.step_queue(wf, step_name)
    for spec in all_tools().values():
        if spec.remote is not None:  # its calls are its Celery task's messages (tasks.interop)
            continue
        name = tool_task_name(spec.name)
        soft, hard = placement.tool_limits(spec)
        _register(app, name, _tool_task(rt, spec.name), soft, hard)
        routes[name] = placement.tool_queue(spec)
    routes.update(register_interop(app, rt))
    app.conf.task_routes = {name: {"queue": queue} for name, queue in routes.items()}
    queues = sorted({*rt.topology.queues, *routes.values()})
    # One direct exchange per queue, named like it, on both sides: routing never depends on
    # which default exchange a producer or a worker happened to assume.
    arguments = queue_arguments(rt)
    app.conf.task_queues = [
        Queue(q, Exchange(q, type="direct"), routing_key=q, queue_arguments=arguments)
        for q in queues
    ]
    return routes


def queue_arguments(rt: Runtime) -> dict[str, Any] | None:
    """RabbitMQ quorum queues when asked for (``BATON_QUORUM_QUEUES``): replicated, and a
    message delivered more than the limit (each kill of its worker counts) is dead-lettered to
    ``<prefix>.dead`` rather than dropped or delivered forever. Celery then turns its global QoS
    off by itself (``worker_detect_quorum_queues``), which quorum queues refuse."""
    s = rt.settings
    if not (s.quorum_queues and s.broker.startswith("amqp")):
        return None
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": s.delivery_limit,
        "x-dead-letter-exchange": f"{s.key_prefix}.dead",
    }


def _register(app: Celery, name: str, fn: Any, soft: float | None, hard: float) -> None:
    """A task whose time limits are this process's (what its visibility timeout covers), not
    whatever the sender's settings said. Not shared: another Celery app of the process (a
    plain app's, Celery interop) must not take Baton's tasks in when it is finalized."""
    options = {**TASK_OPTIONS, "soft_time_limit": soft, "time_limit": hard, "shared": False}
    app.task(name=name, **options)(fn)  # type: ignore[no-untyped-call]


def _step_task(rt: Runtime, workflow: str, step: str) -> Any:
    name = step_task_name(workflow, step)

    def run(
        task: Any,
        run_id: str,
        inv_id: str,
        payload: Any,
        attempt: int,
        first_started: float | None = None,  # absent in a first attempt's messages (resumes too)
    ) -> None:
        args = StepArgs(run_id, inv_id, payload, attempt, first_started)
        task_id, where = task.request.id, where_of(task.request)
        ended: Attempt | None = None
        try:
            ended = StepTask(rt, workflow, step, args, task_id, where).run()
        except PayloadError as exc:  # a poison message: fail its run, keep the message
            deadletters.keep(rt, f"{name}: {exc}", compact(payload))
            runs.fail_run(rt, run_id, exc.to_info())
            raise AttemptFailed(f"{name}[{task_id}]: {exc}") from None
        except SoftTimeLimitExceeded as exc:  # the asyncio pool's limit (prefork: a hard kill)
            limit = limit_seconds(exc)
            ended = StepTask(rt, workflow, step, args, task_id, where).hard_timeout(limit)
        except redis.RedisError as exc:  # the store is away: the message must come back
            raise store_away(exc, rt.settings.separate_broker) from exc
        except Exception as exc:  # Baton could not run the step: the run fails, as data
            log.exception("%s[%s]: could not run the step", name, task_id)
            runs.fail_run(rt, run_id, internal_error(f"step {name}", exc))
            raise internal_failure(name, task_id, exc) from exc
        tell_celery(ended)

    run.__name__ = f"{workflow}__{step}"
    return run


def _tool_task(rt: Runtime, tool: str) -> Any:
    def run(
        task: Any, run_id: str, inv_id: str, call_id: str, args: dict[str, Any], attempt: int
    ) -> None:
        tool_args = ToolArgs(run_id, inv_id, call_id, args, attempt)
        task_id = task.request.id
        try:
            ended = run_tool(rt, tool, tool_args, task_id, where_of(task.request))
        except redis.RedisError as exc:  # the store is away: the message must come back
            raise store_away(exc, rt.settings.separate_broker) from exc
        except Exception as exc:  # Baton could not run the call: the step gets the error
            log.exception("tool %s[%s]: could not run the call", tool, task_id)
            info = internal_error(f"tool {tool}", exc)
            runs.answer_call(rt, tool_args.address, JournalEntry.error(info), task_id)
            raise internal_failure(f"tool {tool}", task_id, exc) from exc
        tell_celery(ended)

    run.__name__ = f"tool__{tool}"
    return run


def where_of(request: Any) -> Where:
    """The queue this message came from and the worker running it, from Celery's request."""
    info = getattr(request, "delivery_info", None) or {}
    return Where(str(info.get("routing_key") or ""), str(getattr(request, "hostname", "") or ""))


def internal_error(what: str, exc: BaseException) -> ErrorInfo:
    """An exception that escaped Baton's own code, as the error a run or a call fails with."""
    return ErrorInfo(
        type=type(exc).__name__,
        message=f"{what}: Baton could not run it: {type(exc).__name__}: {exc}",
        retryable=False,
        details={"traceback": "".join(traceback.format_exception(exc))[-4000:]},
    )


def dead_letter_queue(rt: Runtime) -> Queue | None:
    """Where quorum queues dead-letter (``queue_arguments``): a durable queue of its own on a
    fanout exchange, declared by every worker at start (read it with ``rabbitmqctl``, or any
    AMQP client)."""
    if queue_arguments(rt) is None:
        return None
    name = f"{rt.settings.key_prefix}.dead"
    return Queue(name, Exchange(name, type="fanout", durable=True), durable=True)

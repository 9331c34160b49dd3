"""Registers every workflow step and every tool as a named Celery task on its queue.

Task names are readable in Flower: ``Research.score``, ``tool.sentiment``. Registering installs
nothing else: what only a worker needs (dead letters, the reaper) is ``tasks.worker``'s.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from tasks import deadletters, runs
from tasks.placement import step_task_name, tool_task_name
from tasks.protocol import StepArgs, ToolArgs, compact
from tasks.runtime import Runtime
from tasks.step_task import StepTask
from tasks.tool_task import run_tool
from workflows.errors import PayloadError
from workflows.tools import all_tools
from workflows.workflow import all_workflows

TASK_OPTIONS: dict[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "typing": False,
    "bind": True,
}


def register_tasks(app: Celery, rt: Runtime) -> dict[str, str]:
    """Create the tasks; returns task name -> queue (also set as the app's routes)."""
    routes: dict[str, str] = {}
    for wf in all_workflows().values():
        for step_name in wf.spec.steps:
            name = step_task_name(wf.name, step_name)
            _register(app, name, _step_task(rt, wf.name, step_name))
            routes[name] = rt.placement.step_queue(wf, step_name)
    for spec in all_tools().values():
        name = tool_task_name(spec.name)
        _register(app, name, _tool_task(rt, spec.name))
        routes[name] = rt.placement.tool_queue(spec)
    app.conf.task_routes = {name: {"queue": queue} for name, queue in routes.items()}
    queues = sorted({*rt.topology.queues, *routes.values()})
    # One direct exchange per queue, named like it, on both sides: routing never depends on
    # which default exchange a producer or a worker happened to assume.
    app.conf.task_queues = [Queue(q, Exchange(q, type="direct"), routing_key=q) for q in queues]
    return routes


def _register(app: Celery, name: str, fn: Any) -> None:
    app.task(name=name, **TASK_OPTIONS)(fn)  # type: ignore[no-untyped-call]


def _step_task(rt: Runtime, workflow: str, step: str) -> Any:
    def run(task: Any, run_id: str, inv_id: str, payload: Any, attempt: int) -> None:
        args = StepArgs(run_id, inv_id, payload, attempt)
        try:
            StepTask(rt, workflow, step, args, task.request.id).run()
        except PayloadError as exc:  # a poison message: fail its run, keep the message
            deadletters.keep(rt, f"{step_task_name(workflow, step)}: {exc}", compact(payload))
            runs.fail_run(rt, run_id, exc.to_info())

    run.__name__ = f"{workflow}__{step}"
    return run


def _tool_task(rt: Runtime, tool: str) -> Any:
    def run(
        task: Any, run_id: str, inv_id: str, call_id: str, args: dict[str, Any], attempt: int
    ) -> None:
        run_tool(rt, tool, ToolArgs(run_id, inv_id, call_id, args, attempt), task.request.id)

    run.__name__ = f"tool__{tool}"
    return run

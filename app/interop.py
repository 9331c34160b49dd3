"""Baton in an existing Celery shop: plain Celery tasks as tools, Baton runs in canvases.

- :func:`tool_from_task` registers a Celery task as a Baton tool. Distributed, a call sends the
  task's own message to its own queue and the answer comes back through its ``link`` and
  ``link_error`` callbacks (``tasks.interop_tools``): no worker waits, no result backend is
  read for a value. In-process, the task's function is called directly.
- :func:`baton_run` is a signature of ``baton.run``: a Baton run as a step of a chain, group
  or chord; it starts with the previous task's result and the canvas goes on with the run's
  result when the run ends (``tasks.interop_canvas``, ``tasks.canvas_end``).
- :func:`register_app` names the plain app whose result backend and broker continue canvases
  (``tool_from_task`` registers its task's app itself); :func:`broker_options` is what the
  plain app needs to share Baton's broker.

``docs/celery-interop.md`` has the design and its limits.
"""

from __future__ import annotations

import inspect
from typing import Any

from celery import Celery, Signature
from celery.app.task import Task

from config import Settings, get_settings, load_topology
from tasks.canvas_end import RunFailed
from tasks.interop_apps import register_app, registered_apps
from tasks.interop_canvas import RUN_TASK
from tasks.interop_tools import CALL_HEADER
from workflows.retry import Retry
from workflows.step import Mode
from workflows.tools import RemoteTask, ToolContext, ToolSpec, tool
from workflows.workflow import Workflow

__all__ = [
    "CALL_HEADER",
    "RunFailed",
    "baton_run",
    "broker_options",
    "register_app",
    "tool_from_task",
]

KEY_KWARG = "idempotency_key"  # the keyword a task opts into to get the call id
_CTX = "baton_ctx"


def tool_from_task(
    task: Task,  # type: ignore[type-arg]
    *,
    name: str | None = None,
    queue: str | None = None,
    timeout: float | None = None,
    retry: Retry | None = None,
    mode: Mode | None = None,
    key_kwarg: str | None = None,
) -> ToolSpec:
    """Register the Celery task ``task`` as the Baton tool ``name`` (default: the task's name
    after its last dot); returns its spec.

    Arguments are validated from the task function's signature (call it with keywords).
    ``queue``: where its messages go (default: the task's own ``queue`` option, else its
    app's route for it). ``timeout``: a Baton timer that answers an attempt with a
    ``ToolTimeout`` if the task has not answered by then (default: ``BATON_MAX_TIME_LIMIT``);
    ``retry``: Baton's retry policy, each attempt a new message. The call id travels in the
    ``baton_call_id`` header, and as the keyword ``key_kwarg`` (default ``idempotency_key``
    when the function takes it), the same on every attempt."""
    sig = inspect.signature(task.run, eval_str=True)
    kwarg = _key_kwarg(task, sig, key_kwarg)
    tool_name = name or task.name.rpartition(".")[2]
    target = queue or _queue_of(task)
    call = _as_function(task, sig, kwarg, tool_name)
    tool(name=tool_name, queue=target, timeout=timeout, retry=retry, mode=mode)(call)
    spec: ToolSpec = call.__baton_tool__
    spec.remote = RemoteTask(task.name, target, kwarg, task.app)
    register_app(task.app)
    return spec


def _as_function(task: Task, sig: inspect.Signature, kwarg: str | None, name: str) -> Any:  # type: ignore[type-arg]
    """What ``@tool`` registers: the task function's signature (without the call id's keyword)
    plus a ToolContext parameter, calling the function in-process (:func:`_caller`)."""
    params = [p for p in sig.parameters.values() if p.name != kwarg]
    odd = [p.name for p in params if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY)]
    if odd:
        raise ValueError(
            f"task {task.name}: parameter(s) {', '.join(odd)} cannot be validated as a tool's "
            "(no *args, **kwargs or positional-only parameters)"
        )
    call = _caller(task, kwarg)
    ctx = inspect.Parameter(_CTX, inspect.Parameter.KEYWORD_ONLY, annotation=ToolContext)
    call.__signature__ = sig.replace(parameters=[*params, ctx])
    call.__annotations__ = {
        **{p.name: p.annotation for p in params if p.annotation is not p.empty},
        _CTX: ToolContext,
    }
    call.__doc__ = inspect.getdoc(task.run) or f"Celery task {task.name}"
    call.__name__ = name
    return call


def _key_kwarg(task: Task, sig: inspect.Signature, given: str | None) -> str | None:  # type: ignore[type-arg]
    if given is None:
        return KEY_KWARG if KEY_KWARG in sig.parameters else None
    if given not in sig.parameters:
        raise ValueError(f"task {task.name} takes no keyword {given!r} for the call id")
    return given


def _caller(task: Task, kwarg: str | None) -> Any:  # type: ignore[type-arg]
    """In-process: the task's function, called here with the call's request headers."""

    def call(**kwargs: Any) -> Any:
        ctx: ToolContext = kwargs.pop(_CTX)
        if kwarg is not None:
            kwargs[kwarg] = ctx.call_id
        task.push_request(**{CALL_HEADER: ctx.call_id, "baton_attempt": ctx.attempt})
        try:
            return task.run(**kwargs)
        finally:
            task.pop_request()

    return call


def _queue_of(task: Task) -> str:  # type: ignore[type-arg]
    """The queue Celery itself would send the task to: its ``queue`` option, else its route."""
    own = getattr(task, "queue", None)
    if own:
        return str(own)
    routed = task.app.amqp.router.route({}, task.name).get("queue")
    return str(getattr(routed, "name", routed) or task.app.conf.task_default_queue)


def baton_run(
    workflow: str | type[Workflow],
    *,
    start: dict[str, Any] | None = None,
    input_field: str | None = None,
    queue: str | None = None,
    app: Celery | None = None,
) -> Signature[Any]:
    """A signature of a Baton run, for a chain, group or chord: it starts ``workflow`` with
    the previous task's result as its start event (an object's keys, or the field
    ``input_field``) plus ``start``'s fields, and gives the run's result to the next task.

    ``queue``: the Baton queue ``baton.run`` is served on (default: the topology's default
    queue); ``app``: the plain app whose result backend the canvas uses (default: the only one
    registered with ``register_app`` on Baton's workers)."""
    name = workflow if isinstance(workflow, str) else workflow.name
    if not isinstance(name, str) or not name:
        raise TypeError(f"baton_run: workflow must be a name or a Workflow class, not {workflow!r}")
    if start is not None and not isinstance(start, dict):
        raise TypeError(f"baton_run: start must be a dict of start event fields, not {start!r}")
    apps = registered_apps()
    if app is None and len(apps) == 1:  # the canvas's results are read through its backend
        app = next(iter(apps.values()))
    kwargs = {
        "workflow": name,
        "start": start or {},
        "input_field": input_field,
        "app": app.main if app is not None else "",
    }
    target = queue or load_topology(get_settings().topology_file).default_queue
    return Signature(RUN_TASK, kwargs=kwargs, options={"queue": target}, app=app)


def broker_options(settings: Settings | None = None) -> dict[str, Any]:
    """What a plain app sets (``app.conf.update(broker_options())``) to share Baton's broker:
    the same Redis and queue key prefix, and a visibility timeout as long as Baton's."""
    s = settings or get_settings()
    return {
        "broker_url": s.broker,
        "broker_transport_options": {
            "global_keyprefix": f"{s.key_prefix}:q:",
            "visibility_timeout": s.visibility_timeout,
        },
    }

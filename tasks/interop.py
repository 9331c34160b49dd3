"""Registers Baton's side of Celery interop on its app: the answer tasks of task-backed tools,
the canvas task ``baton.run``, and the publisher's senders that frame task-backed tool calls
as the plain tasks' own messages.

Called by ``tasks.registry.register_tasks``; a process with no task-backed tool and no canvas
use registers four idle tasks and no sender, so its hops are unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import redis
from celery import Celery

from tasks import interop_tools
from tasks.attempts import TASK_OPTIONS, AttemptFailed, store_away
from tasks.interop_apps import register_app
from tasks.interop_canvas import RUN_TASK, start_run
from tasks.interop_tools import broker_mismatch
from tasks.placement import tool_task_name
from tasks.runtime import Runtime
from workflows.errors import BatonError, StoreUnavailableError
from workflows.tools import all_tools

log = logging.getLogger("baton.interop")


def register_interop(app: Celery, rt: Runtime) -> dict[str, str]:
    """Register the interop tasks and the task-backed tools' senders; task name -> queue."""
    queue = interop_tools.interop_queue(rt)
    # not shared: a plain app finalized in this process must not get them (its worker would
    # find ``baton.answer_error`` registered and call it in-process as an errback)
    options = {**TASK_OPTIONS, "time_limit": rt.placement.max_time_limit, "shared": False}
    tasks = {
        interop_tools.ANSWER: _answer(rt),
        interop_tools.ANSWER_ERROR: _answer_error(rt),
        interop_tools.TIMEOUT: _timeout(rt),
        RUN_TASK: _run(rt),
    }
    for name, fn in tasks.items():
        app.task(name=name, **options)(fn)  # type: ignore[no-untyped-call]
    for spec in all_tools().values():
        if spec.remote is not None:
            problem = broker_mismatch(rt, spec)
            if problem:
                log.warning("%s", problem)
            register_app(spec.remote.app)
            rt.publisher.senders[tool_task_name(spec.name)] = partial(
                interop_tools.push_call, rt, spec
            )
    return dict.fromkeys(tasks, queue)


def _answer(rt: Runtime) -> Any:
    def answer(task: Any, result: Any, ticket: Any) -> None:
        with _store_guard(rt):
            interop_tools.answered(rt, result, ticket, str(task.request.origin or ""))

    return answer


def _answer_error(rt: Runtime) -> Any:
    def answer_error(task: Any, task_id: str, ticket: Any) -> None:
        with _store_guard(rt):
            interop_tools.failed(rt, task_id, ticket, str(task.request.origin or ""))

    return answer_error


def _timeout(rt: Runtime) -> Any:
    def tool_timeout(task: Any, ticket: Any) -> None:
        with _store_guard(rt):
            interop_tools.timed_out(rt, ticket)

    return tool_timeout


@contextmanager
def _store_guard(rt: Runtime) -> Iterator[None]:
    """An answer that found the store away must come back, not be acked away."""
    try:
        yield
    except (redis.RedisError, StoreUnavailableError) as exc:
        raise store_away(exc, rt.settings.separate_broker) from exc


def _run(rt: Runtime) -> Any:
    def run(
        task: Any,
        previous: Any = None,
        *,
        workflow: str,
        start: dict[str, Any] | None = None,
        input_field: str | None = None,
        app: str = "",
    ) -> str:
        try:
            run_id = start_run(rt, task.request, previous, workflow, start, input_field, app)
        except (redis.RedisError, StoreUnavailableError) as exc:  # it must come back
            raise store_away(exc, rt.settings.separate_broker) from exc
        except BatonError as exc:  # the canvas was failed with it: Flower shows why
            raise AttemptFailed(f"{RUN_TASK}[{task.request.id}]: {exc}") from exc
        return f"run {run_id} started"

    return run

"""``baton.run``: a Baton run as a step of a Celery canvas (chain, group, chord).

The task starts the run with the previous task's result as its start input and returns at
once: no task waits for the run. Its request's chain, callbacks, errbacks and chord are taken
off before it returns (so Celery continues nothing now) and stored with the run
(:class:`CanvasLink`, written atomically with the run); ``tasks.canvas_end`` continues the
canvas when the run ends. The run's id is the task's id, so a redelivered ``baton.run`` finds
its run instead of starting a second one, and Flower and Baton name the step alike.
"""

from __future__ import annotations

from typing import Any

from tasks import canvas_end, runs
from tasks.interop_apps import app_named
from tasks.protocol.interop import CanvasLink
from tasks.runtime import Runtime
from workflows.errors import BatonError, InvalidInputError, StoreUnavailableError
from workflows.events import StartEvent
from workflows.workflow import require_constructible, require_workflow

RUN_TASK = "baton.run"
CANVAS_FIELD = "canvas"


def start_run(
    rt: Runtime,
    request: Any,
    previous: Any,
    workflow: str,
    start: dict[str, Any] | None,
    input_field: str | None,
    app: str,
) -> str:
    """Create the run for the canvas step ``request`` (a Celery request) and detach the rest
    of the canvas from it; a bad input fails the canvas at once. Returns the run id."""
    link = CanvasLink.of_request(app, request)
    try:
        event = start_event(workflow, previous, start or {}, input_field)
        run_id, _ = runs.create_run(
            rt, workflow, link.task_id, event, fields={CANVAS_FIELD: link.to_json()}
        )
    except StoreUnavailableError:
        raise  # Redis is away: nothing was written, and the canvas stays on the message
    except BatonError as exc:
        _detach(request)
        info = exc.to_info()
        error = canvas_end.RunFailed(f"{workflow} could not start: {info.type}: {info.message}")
        canvas_end.fail(app_named(link.app), link, error, info)
        raise
    _detach(request)  # only once the run (which holds the canvas now) is written
    return run_id


def _detach(request: Any) -> None:
    """Celery's tracer continues nothing after this task: the run's end does, or has."""
    for name in ("chain", "callbacks", "errbacks", "chord"):
        setattr(request, name, None)


def start_event(
    workflow: str, previous: Any, start: dict[str, Any], input_field: str | None
) -> StartEvent:
    """The start event from the previous task's result: the field ``input_field`` if given,
    else its keys (an object); ``start`` adds fields (and wins over the previous result's)."""
    cls = require_workflow(workflow)
    require_constructible(cls)
    data: dict[str, Any] = {}
    if input_field is not None:
        if previous is not None:
            data[input_field] = previous
    elif isinstance(previous, dict):
        data.update(previous)
    elif previous is not None:
        raise InvalidInputError(
            f"{workflow}: the previous task returned {type(previous).__name__}, not an object; "
            "name the start event field it fills with baton_run(..., input_field=...)"
        )
    return cls.make_start_event(**{**data, **start})

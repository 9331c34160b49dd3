"""A canvas run's end: Baton continues the Celery canvas its ``baton.run`` task was a step of.

``baton.run`` returned as soon as the run was created, with its request's chain, callbacks
and chord taken off (Celery continues nothing then) and stored with the run
(:class:`CanvasLink`). When the run ends, :func:`continue_canvas` does what Celery's tracer
does when a task returns, with the run's result as the task's: the link callbacks and the next
task of the chain get it as their first argument, and the result backend of the canvas's app
stores it under the task's id — which counts it in a chord (``on_chord_part_return``), so the
chord callback is sent once all its parts are in. A failed or cancelled run is stored as the
task's failure (:class:`RunFailed`), which Celery propagates down the chain, counts in the
chord and hands to the errbacks. Runs once per run: ``canvas_sent`` in the run hash; called
again by the reaper while the run is still in the live set (an attempt that raised).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from celery import Celery, signature
from celery.app.task import Context

from tasks.interop_apps import app_named
from tasks.protocol import RunStatus
from tasks.protocol.interop import CanvasLink
from tasks.runtime import Runtime
from workflows.codec import from_data, to_jsonable
from workflows.errors import ErrorInfo

log = logging.getLogger("baton.interop")
SENT_FIELD = "canvas_sent"
CLAIM_SECONDS = 60  # how long one process may take to continue a canvas before another may


class RunFailed(Exception):
    """A Baton run that was a step of a Celery canvas failed or was cancelled: what the canvas
    sees as that step's error (``"run ID (Workflow) failed: Type: message"``)."""


def continue_canvas(rt: Runtime, run_id: str, raw_link: str) -> bool:
    """Continue the canvas of an ended run; False if it could not be done now (logged: the run
    stays live, and the reaper tries again)."""
    k = rt.keys
    status, workflow, result, error, sent = rt.redis.hmget(
        k.run(run_id), ["status", "workflow", "result", "error", SENT_FIELD]
    )
    if sent or status in (None, RunStatus.RUNNING):
        return True
    # one continuer at a time (a worker's run end, the reaper, a cancel): the others keep the
    # run live and find it sent on a later sweep; a continuer that died frees it in a minute
    claim = k.canvas_claim(run_id)
    if not rt.redis.set(claim, "1", nx=True, ex=CLAIM_SECONDS):
        return False
    try:
        link = CanvasLink.from_json(raw_link)
        app = app_named(link.app)
        if status == RunStatus.COMPLETED:
            succeed(app, link, to_jsonable(from_data(json.loads(result or "null"))))
        else:
            info = ErrorInfo.model_validate_json(error) if error else _unknown(status)
            fail(
                app,
                link,
                RunFailed(f"run {run_id} ({workflow}) {status}: {info.type}: {info.message}"),
                info,
            )
    except Exception:
        log.exception("run %s: could not continue its Celery canvas (retried)", run_id)
        rt.redis.delete(claim)
        return False
    pipe = rt.redis.pipeline(transaction=False)
    pipe.hset(k.run(run_id), SENT_FIELD, "1")
    pipe.expire(claim, rt.settings.retention_seconds)  # kept: a late continuer finds it taken
    pipe.execute()
    return True


def succeed(app: Celery, link: CanvasLink, value: Any) -> None:
    """What Celery's tracer does when a task returns ``value``: callbacks, the chain's next
    task, then the stored result (and the chord's count)."""
    request = _context(link)
    task_id, root_id = link.task_id, request.root_id or link.task_id
    for callback in request.callbacks or []:
        signature(dict(callback), app=app).apply_async((value,), parent_id=task_id, root_id=root_id)
    chain = list(request.chain or [])
    if chain:
        following = signature(chain.pop(), app=app)
        following.apply_async((value,), chain=chain, parent_id=task_id, root_id=root_id)
    app.backend.mark_as_done(task_id, value, request=request)


def fail(app: Celery, link: CanvasLink, exc: RunFailed, info: ErrorInfo) -> None:
    """What Celery does when a task raises: store the failure (for the rest of the chain too),
    count it in the chord, call the errbacks."""
    request = _context(link)
    traceback = str(info.details.get("traceback") or "") or None
    app.backend.mark_as_failure(
        link.task_id, exc, traceback=traceback, request=request, call_errbacks=True
    )


def _context(link: CanvasLink) -> Context:
    # ``delivery_info`` is read by the errback call; a stored request has none
    return Context({**link.request, "delivery_info": {}})


def _unknown(status: str) -> ErrorInfo:
    return ErrorInfo(type="RunError", message=f"the run ended {status} without an error")

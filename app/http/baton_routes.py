"""The run dashboard: its JSON API and its static pages, as Starlette routes mounted at /baton.

``baton_routes()`` is mounted by the HTTP app (``Mount("/baton", routes=baton_routes())``); its
handlers use the Baton :class:`~app.client.Client` in ``request.app.state.client``. Every call
into the client or ``tasks.queries`` blocks on Redis, so it runs in the thread pool. Bad input
is a 4xx JSON ``{"detail": ...}`` and writes nothing; Redis down is a 503.

``/api/runs/{id}/events`` is a Server-Sent Events stream of the run's log: a blocking read of
at most a second per round in the thread pool, ended with an ``end`` event when the run ends.
The pages are plain files in ``static/`` (no build step, no external URL), served at ``/ui/``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic_core import to_jsonable_python
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from app.cli.answer import build_event, resolve_event
from app.client import Client, RunHandle, RunState, Waiting
from app.gantt import gantt
from app.metrics import queues as known_queues
from tasks import queries
from tasks.protocol import END_KINDS, LogEntry, RunRecord, RunStatus
from tasks.queries import AsyncLogReader
from workflows.codec import decode_event, from_data, loads
from workflows.errors import (
    BatonError,
    InvalidInputError,
    StoreUnavailableError,
    UnknownEventTypeError,
)
from workflows.events import Event, StartEvent, StopEvent, event_class
from workflows.workflow import all_workflows, get_workflow

STATIC_DIR = Path(__file__).with_name("static")
RETRYABLE = (RunStatus.FAILED, RunStatus.CANCELLED)
STATUSES = tuple(s.value for s in RunStatus)
MAX_LIMIT = 1000
FOLLOW_BLOCK_MS = 1000  # one SSE round: a blocking read of at most this long
FOLLOW_COUNT = 200
GANTT_WIDTH = 40

Handler = Callable[[Request], Awaitable[Response]]


class HttpError(Exception):
    """A request the API refuses: its status and a one-line detail."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def baton_routes() -> list[BaseRoute]:
    """The dashboard's routes, to mount at ``/baton``."""
    return [
        Route("/", _home, methods=["GET"]),
        Route("/api/runs", _api(list_runs), methods=["GET"]),
        Route("/api/runs/{run_id}", _api(get_run), methods=["GET"]),
        Route("/api/runs/{run_id}/spans", _api(run_spans), methods=["GET"]),
        Route("/api/runs/{run_id}/events", _api(run_events), methods=["GET"]),
        Route("/api/runs/{run_id}/cancel", _api(cancel_run), methods=["POST"]),
        Route("/api/runs/{run_id}/retry", _api(retry_run), methods=["POST"]),
        Route("/api/runs/{run_id}/send", _api(send_event), methods=["POST"]),
        Route("/api/workflows", _api(list_workflows), methods=["GET"]),
        Route("/api/workflows/{name}/graph", _api(workflow_graph), methods=["GET"]),
        Route("/api/queues", _api(list_queues), methods=["GET"]),
        Route("/api/dead-letters", _api(list_dead_letters), methods=["GET"]),
        Mount("/ui", StaticFiles(directory=STATIC_DIR, html=True), name="baton-ui"),
    ]


async def _home(request: Request) -> Response:
    return RedirectResponse("ui/", status_code=307)  # relative: wherever the routes are mounted


def _api(handler: Handler) -> Handler:
    """``handler`` with refusals as JSON: HttpError as is, bad input 400, Redis down 503."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except HttpError as exc:
            return _error(exc.status, exc.detail)
        except StoreUnavailableError as exc:
            return _error(503, exc.message)
        except BatonError as exc:  # InvalidInputError, UnknownWorkflowError, ...
            return _error(400, exc.message)

    wrapped.__name__ = handler.__name__
    return wrapped


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _client(request: Request) -> Client:
    client: Client = request.app.state.client
    return client


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(to_jsonable_python(data, fallback=repr), status_code=status)


async def _record(client: Client, run_id: str) -> RunRecord:
    """The run's record; an unknown (or expired) run is 404."""
    record = await run_in_threadpool(queries.run_record, client.runtime, run_id)
    if record is None:
        raise HttpError(404, f"no run {run_id!r} (never submitted, or expired)")
    return record


# --- runs ----------------------------------------------------------------------------------


def _state(state: RunState) -> dict[str, Any]:
    return {
        "state": state.state,
        "describe": state.describe(),
        "queues": list(state.queues),
        "unserved": list(state.unserved),
        "awaiting": list(state.awaiting),
        "until": state.until,
    }


def _run_rows(client: Client, status: str | None, limit: int) -> list[dict[str, Any]]:
    rows = []
    for info in client.runs(status=status, limit=limit):
        row = asdict(info)
        row["error"] = info.error.model_dump() if info.error else None
        row["state"] = None
        if info.status == RunStatus.RUNNING.value:
            try:
                row["state"] = _state(client.get(info.run_id).state())
            except InvalidInputError:  # expired meanwhile
                continue
        rows.append(row)
    return rows


async def list_runs(request: Request) -> Response:
    """Runs newest first (``?status=``, ``?limit=``); a running one with its state."""
    status = request.query_params.get("status") or None
    if status is not None and status not in STATUSES:
        raise HttpError(400, f"unknown status {status!r} (one of: {', '.join(STATUSES)})")
    limit = _int_param(request, "limit", 50, 1, MAX_LIMIT)
    client = _client(request)
    return _json({"runs": await run_in_threadpool(_run_rows, client, status, limit)})


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise HttpError(400, f"{name} must be an integer, not {text!r}") from None
    if not low <= value <= high:
        raise HttpError(400, f"{name} must be between {low} and {high}")
    return value


def _run_detail(handle: RunHandle, record: RunRecord) -> dict[str, Any]:
    info = handle.info()
    result: Any = None
    if record.status is RunStatus.COMPLETED and record.result is not None:
        result = to_jsonable_python(from_data(loads(record.result)), fallback=repr)
    start: Any = None
    if record.input:
        start = to_jsonable_python(loads(record.input), fallback=repr)
    return {
        "info": {**asdict(info), "error": None},
        "workflow": record.workflow,
        "status": record.status.value,
        "root": record.root,
        "state": _state(handle.state()),
        "error": record.error.model_dump() if record.error else None,
        "result": result,
        "input": start,
        "waiting": [_waiting(w) for w in handle.waiting()],
        "retryable": record.status in RETRYABLE,
    }


def _waiting(item: Waiting) -> dict[str, Any]:
    """What a step waits for, with the event's class name and fields when this process knows
    the class (what the answer form shows)."""
    data = asdict(item)
    try:
        cls = event_class(item.event_type)
    except UnknownEventTypeError:
        data.update(name=item.event_type.rsplit(".", 1)[-1], fields={})
    else:
        data.update(name=cls.__name__, fields=_fields(cls))
    return data


async def get_run(request: Request) -> Response:
    """A run: info, state, error (with its traceback), result, what it waits for."""
    client = _client(request)
    run_id = request.path_params["run_id"]
    record = await _record(client, run_id)
    handle = client.get(run_id)
    try:
        detail = await run_in_threadpool(_run_detail, handle, record)
    except InvalidInputError as exc:  # expired between the two reads
        raise HttpError(404, exc.message) from None
    return _json(detail)


async def run_spans(request: Request) -> Response:
    """The run's spans (its children's too) and the Gantt chart's rows, grouped by step
    invocation as ``baton timeline`` draws them (``member``: a row under its group's first)."""
    client = _client(request)
    run_id = request.path_params["run_id"]
    await _record(client, run_id)
    spans = await run_in_threadpool(client.get(run_id).spans)
    rows = []
    for row in gantt(spans, run_id, GANTT_WIDTH):
        data = asdict(row)
        data["member"] = row.label.startswith(" ")
        data["label"] = row.label.strip()
        data["style"] = row.outcome.split(":", 1)[0]
        rows.append(data)
    total = (max(s.end for s in spans) - min(s.start for s in spans)) if spans else 0.0
    return _json(
        {
            "spans": [s.dump() for s in spans],
            "rows": rows,
            "start": min((s.start for s in spans), default=None),
            "total": total,
        }
    )


async def run_events(request: Request) -> Response:
    """The run's log as Server-Sent Events (``id`` = the entry's id, ``event`` = its kind),
    from ``Last-Event-ID`` or ``?after=``, live until the run ends, then an ``end`` event."""
    client = _client(request)
    run_id = request.path_params["run_id"]
    await _record(client, run_id)
    after = request.headers.get("last-event-id") or request.query_params.get("after") or "0-0"
    return StreamingResponse(
        _follow(request.app.state.logs, run_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _follow(logs: AsyncLogReader, run_id: str, after: str) -> AsyncIterator[str]:
    """Reads through the app's shared async reader: an open stream holds no thread."""
    last = after
    yield "retry: 2000\n\n"
    while True:
        got = await logs.follow(run_id, last, block_ms=FOLLOW_BLOCK_MS, count=FOLLOW_COUNT)
        for entry in got:
            last = entry.id
            yield _sse(entry)
            if entry.kind in END_KINDS and entry.run is None:
                yield "event: end\ndata: {}\n\n"
                return
        if got:
            continue
        if await logs.status(run_id) != RunStatus.RUNNING.value:
            # ended (or expired) with its end entry before ``after``: nothing more will come
            if not await logs.follow(run_id, last, count=1):
                yield "event: end\ndata: {}\n\n"
                return
        else:
            yield ": quiet\n\n"  # a comment: lets the server notice a client that left


def _sse(entry: LogEntry) -> str:
    data = {"id": entry.id, "ms": entry.ms, "kind": entry.kind.value, "run": entry.run}
    data["data"] = entry.data
    text = json.dumps(to_jsonable_python(data, fallback=repr), separators=(",", ":"))
    return f"id: {entry.id}\nevent: {entry.kind.value}\ndata: {text}\n\n"


async def cancel_run(request: Request) -> Response:
    """Cancel a run and its children; ``cancelled`` is false if it had already ended."""
    client = _client(request)
    run_id = request.path_params["run_id"]
    await _record(client, run_id)
    cancelled = await run_in_threadpool(client.get(run_id).cancel)
    status = await run_in_threadpool(client.get(run_id).status)
    return _json({"run_id": run_id, "cancelled": cancelled, "status": status})


def _resubmit(client: Client, record: RunRecord) -> str:
    if record.input is None:
        raise HttpError(404, f"no run {record.run_id!r} (never submitted, or expired)")
    start = decode_event(loads(record.input))
    if not isinstance(start, StartEvent):
        raise HttpError(409, f"run {record.run_id} has no start event to submit again")
    return client.submit(record.workflow, start).run_id


async def retry_run(request: Request) -> Response:
    """Submit a failed or cancelled run's input again, as a new run (``run_id``)."""
    client = _client(request)
    run_id = request.path_params["run_id"]
    record = await _record(client, run_id)
    if record.status not in RETRYABLE:
        raise HttpError(
            409,
            f"run {run_id} is {record.status.value}; only failed or cancelled runs can be retried",
        )
    new_id = await run_in_threadpool(_resubmit, client, record)
    return _json({"run_id": new_id, "retry_of": run_id}, status=201)


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HttpError(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise HttpError(400, "the body must be a JSON object")
    return body


async def send_event(request: Request) -> Response:
    """Send ``{"type": "Answer", "data": {...}}`` into a run: the answer a step (of the run or
    a child) waits for, else the event is routed to the run's accepting steps."""
    client = _client(request)
    run_id = request.path_params["run_id"]
    body = await _json_body(request)
    name, data = body.get("type"), body.get("data", {})
    if not isinstance(name, str) or not name:
        raise HttpError(400, 'the body needs "type": an event class name or type tag')
    if not isinstance(data, dict):
        raise HttpError(400, '"data" must be a JSON object of the event\'s fields')
    record = await _record(client, run_id)
    if record.status is not RunStatus.RUNNING:
        raise HttpError(409, f"run {run_id} is {record.status.value}; it takes no events")
    handle = client.get(run_id)
    waiting = await run_in_threadpool(handle.waiting)
    cls = resolve_event(name, awaited=[w.event_type for w in waiting])
    event = build_event(cls, data)
    target = _target(client, handle, record, cls, [w.event_type for w in waiting])
    await run_in_threadpool(target.send_event, event)
    return _json({"run_id": run_id, "sent": cls.__name__, "type": cls.type_tag}, status=202)


def _target(
    client: Client, handle: RunHandle, record: RunRecord, cls: type[Event], awaited: list[str]
) -> RunHandle:
    """A child's waiter is answered through its root run, which holds the waiters."""
    return client.get(record.root) if cls.type_tag in awaited else handle


# --- workflows -----------------------------------------------------------------------------


def _event_ref(cls: type[Event]) -> dict[str, Any]:
    return {"name": cls.__name__, "type": cls.type_tag, "fields": _fields(cls)}


def _fields(cls: type[Event]) -> dict[str, str]:
    return {
        name: getattr(f.annotation, "__name__", str(f.annotation))
        for name, f in cls.model_fields.items()
    }


async def list_workflows(request: Request) -> Response:
    """The workflows this process registered (``BATON_IMPORTS``), with their steps."""
    found = []
    for name, cls in sorted(all_workflows().items()):
        try:
            spec = cls.spec
        except BatonError as exc:
            found.append({"name": name, "valid": False, "problem": exc.message, "steps": []})
            continue
        found.append(
            {
                "name": name,
                "valid": True,
                "queue": cls.queue,
                "start": _event_ref(spec.start_event),
                "steps": sorted(spec.steps),
            }
        )
    return _json({"workflows": found})


async def workflow_graph(request: Request) -> Response:
    """The workflow's step graph from its type hints: nodes are its steps, the start event,
    the stop events' end and ``outside`` (events no step emits or takes: sent by a user, or
    input requests read by one); edges carry the event types between them."""
    name = request.path_params["name"]
    cls = get_workflow(name)
    if cls is None:
        raise HttpError(404, f"no workflow named {name!r} (registered: {_known()})")
    spec = cls.spec  # an invalid graph is WorkflowValidationError: 400
    return _json(graph_of(name, spec.start_event, spec.steps))


def _known() -> str:
    return ", ".join(sorted(all_workflows())) or "none"


def graph_of(name: str, start: type[StartEvent], steps: dict[str, Any]) -> dict[str, Any]:
    """Nodes and edges of a workflow's steps (``StepSpec``s by name)."""
    nodes: list[dict[str, Any]] = [{"id": "start", "kind": "start", "label": start.__name__}]
    for step_name, spec in sorted(steps.items()):
        nodes.append(
            {
                "id": f"step:{step_name}",
                "kind": "step",
                "label": step_name,
                "queue": spec.options.queue,
                "accepts": [_event_ref(t) for t in spec.accepts],
                "emits": [_event_ref(t) for t in spec.emits],
            }
        )
    edges: list[dict[str, Any]] = []
    emitted = {t for spec in steps.values() for t in spec.emits}
    outside = False
    for step_name, spec in sorted(steps.items()):
        for event in spec.accepts:
            if issubclass(event, StartEvent) and spec.accepts_type(start):
                edges.append(_edge("start", f"step:{step_name}", event))
            elif event not in emitted:
                outside = True
                edges.append(_edge("outside", f"step:{step_name}", event))
        for event in spec.emits:
            if issubclass(event, StopEvent):
                edges.append(_edge(f"step:{step_name}", "stop", event))
                continue
            takers = [n for n, s in sorted(steps.items()) if s.accepts_type(event)]
            for taker in takers:
                edges.append(_edge(f"step:{step_name}", f"step:{taker}", event))
            if not takers:
                outside = True
                edges.append(_edge(f"step:{step_name}", "outside", event))
    nodes.append({"id": "stop", "kind": "stop", "label": "end"})
    if outside:
        nodes.append({"id": "outside", "kind": "outside", "label": "outside"})
    return {"workflow": name, "start": _event_ref(start), "nodes": nodes, "edges": edges}


def _edge(source: str, target: str, event: type[Event]) -> dict[str, Any]:
    return {"from": source, "to": target, "event": event.__name__, "type": event.type_tag}


# --- queues and dead letters ---------------------------------------------------------------


def _queue_rows(client: Client) -> dict[str, Any]:
    rt = client.runtime
    workers = queries.live_workers(rt)
    names = sorted({*known_queues(rt), *(q for w in workers for q in w.queues)})
    counts = queries.store_counts(rt, names)
    rows = []
    for queue in names:
        serving = [w for w in workers if queue in w.queues]
        rows.append(
            {
                "queue": queue,
                "depth": counts.queue_depths.get(queue, 0),
                "workers": [
                    {"name": w.name, "concurrency": w.concurrency, "pool": w.pool} for w in serving
                ],
                "concurrency": sum(w.concurrency for w in serving),
            }
        )
    return {
        "queues": rows,
        "unacked": counts.unacked,
        "dead_letters": counts.dead_letters,
        "workers": [w.dump() for w in workers],
    }


async def list_queues(request: Request) -> Response:
    """Depth per queue and the live workers that consume each."""
    return _json(await run_in_threadpool(_queue_rows, _client(request)))


async def list_dead_letters(request: Request) -> Response:
    """The newest dead letters (``?limit=``) and how many there are."""
    limit = _int_param(request, "limit", 50, 1, MAX_LIMIT)
    total, letters = await run_in_threadpool(queries.dead_letters, _client(request).runtime, limit)
    return _json(
        {
            "total": total,
            "dead_letters": [
                {"reason": d.reason, "headers": d.headers, "body": d.body} for d in letters
            ],
        }
    )

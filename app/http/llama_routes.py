"""llama-agents-server 0.8's REST routes on Baton: same paths, bodies and answers, so
``llama_agents.client.WorkflowClient`` drives distributed runs unchanged.

A handler is a Baton run (``handler_id`` = run id). Calls into the ``Client`` block on Redis,
so they run in the thread pool; event streams and waits read the run log with the async
``AsyncLogReader`` instead, so an open stream holds no thread. Differences from llama's server
are listed in docs/http-api.md.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app.cli.answer import build_event, resolve_event
from app.client import Client
from app.http.envelopes import (
    STATUSES,
    Envelope,
    Handler,
    bare_result,
    end_envelope,
    envelope_of,
    handler_of,
    read_event_request,
    start_names,
)
from tasks import queries
from tasks.protocol import END_KINDS, USER_KINDS, LogEntry, RunRecord, RunStatus
from tasks.queries import AsyncLogReader
from workflows.codec import decode_event
from workflows.errors import BatonError, InvalidInputError
from workflows.events import Event, StartEvent, StopEvent
from workflows.workflow import Workflow, check_workflows, get_workflow, require_constructible

T = TypeVar("T")
BLOCK_MS = 1000  # a stream's quiet round: then it checks for a disconnect and an expired run
HEARTBEAT_ROUNDS = 15  # SSE comment after this many quiet rounds, so proxies keep it open
BACKLOG_BATCH = 500
MAX_HANDLERS = 1000


def llama_routes() -> list[Route]:
    return [
        Route("/health", health, methods=["GET"]),
        Route("/workflows", list_workflows, methods=["GET"]),
        Route("/workflows/{name}/run", run_workflow, methods=["POST"]),
        Route("/workflows/{name}/run-nowait", run_workflow_nowait, methods=["POST"]),
        Route("/workflows/{name}/schema", workflow_schema, methods=["GET"]),
        Route("/workflows/{name}/events", workflow_events, methods=["GET"]),
        Route("/workflows/{name}/representation", workflow_representation, methods=["GET"]),
        Route("/results/{handler_id}", get_result, methods=["GET"]),
        Route("/events/{handler_id}", stream_events, methods=["GET"]),
        Route("/events/{handler_id}", post_event, methods=["POST"]),
        Route("/handlers", list_handlers, methods=["GET"]),
        Route("/handlers/{handler_id}", get_handler, methods=["GET"]),
        Route("/handlers/{handler_id}/cancel", cancel_handler, methods=["POST"]),
    ]


# --- helpers ------------------------------------------------------------------------------


def _client(request: Request) -> Client:
    client: Client = request.app.state.client
    return client


def _logs(request: Request) -> AsyncLogReader:
    logs: AsyncLogReader = request.app.state.logs
    return logs


async def _blocking(fn: Callable[..., T], *args: Any) -> T:
    """A Redis-bound call off the event loop, in Starlette's bounded thread pool."""
    return await run_in_threadpool(fn, *args)


def _workflow(request: Request) -> type[Workflow]:
    cls = get_workflow(request.path_params["name"])
    if cls is None:
        raise HTTPException(status_code=404, detail="Workflow not found")
    return cls


async def _json_object(request: Request, what: str) -> dict[str, Any]:
    """The body as a JSON object (an empty body is ``{}``); anything else is 400."""
    body = await request.body()
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=f"{what}: {exc}") from None
    if not isinstance(data, dict):
        raise HTTPException(status_code=400, detail=f"{what}: the body must be a JSON object")
    return data


async def _record(request: Request, handler_id: str) -> RunRecord:
    record = await _blocking(queries.run_record, _client(request).runtime, handler_id)
    if record is None:
        raise HTTPException(status_code=404, detail="Handler not found")
    return record


def _handler_response(handler: Handler) -> JSONResponse:
    """200 completed, 202 running, 500 failed or cancelled: llama's statuses."""
    status = {"running": 202, "completed": 200}.get(handler.status, 500)
    return JSONResponse(handler.to_json(), status_code=status)


# --- workflows ----------------------------------------------------------------------------


async def health(request: Request) -> Response:
    """Healthy when Redis answers (runs cannot be submitted or read otherwise)."""
    try:
        await _blocking(queries.status_counts, _client(request).runtime, 1)
    except BatonError:
        return JSONResponse({"status": "unhealthy"}, status_code=503)
    return JSONResponse({"status": "healthy"})


async def list_workflows(request: Request) -> Response:
    names = [c.workflow for c in check_workflows() if not c.problems]
    return JSONResponse({"workflows": names})


async def run_workflow_nowait(request: Request) -> Response:
    handle_id = await _submit(request)
    record = await _record(request, handle_id)
    return JSONResponse(handler_of(record).to_json())


async def run_workflow(request: Request) -> Response:
    """Submit, then wait for the end on the run log (no thread held while waiting)."""
    run_id = await _submit(request)
    await _wait_for_end(_logs(request), run_id)
    handler = handler_of(await _record(request, run_id))
    return JSONResponse(
        handler.to_json(), status_code=200 if handler.status == "completed" else 500
    )


async def _submit(request: Request) -> str:
    """Read llama's run body (``start_event``, ``kwargs``, ``context``, ``handler_id``),
    check it all, then submit; returns the run id. Nothing is written on bad input."""
    cls = _workflow(request)
    body = await _json_object(request, "Invalid JSON body")
    kwargs = body.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise HTTPException(status_code=400, detail="'kwargs' must be a JSON object")
    start = _start_event(cls, body.get("start_event", kwargs))
    context: Any = body.get("context") or None
    if context is not None and not isinstance(context, dict):
        raise HTTPException(status_code=400, detail="'context' must be a JSON object")
    handler_id = body.get("handler_id")
    if handler_id is not None:
        if not isinstance(handler_id, str) or context is not None:
            raise HTTPException(
                status_code=400, detail="'handler_id' must be a run id, without 'context'"
            )
        previous = await _record(request, handler_id)
        if previous.status is RunStatus.RUNNING:
            raise HTTPException(
                status_code=409, detail=f"Handler {handler_id!r} is already running"
            )
        context = handler_id  # continue the ended run's store, as a new run
    require_constructible(cls)
    client = _client(request)
    handle = await run_in_threadpool(lambda: client.submit(cls.name, start, context=context))
    return handle.run_id


def _start_event(cls: type[Workflow], raw: Any) -> StartEvent:
    """The start event from an envelope naming the workflow's start event (or the plain
    ``StartEvent``), or from its bare fields."""
    start_cls = cls.spec.start_event
    if raw is None:
        raw = {}
    try:
        request = read_event_request(raw, bare_ok=True)
        if request.name is not None and request.name not in start_names(start_cls):
            raise InvalidInputError(f"Start event must be an instance of {start_cls.__name__}")
        return cls.make_start_event(**request.fields)
    except InvalidInputError as exc:
        raise HTTPException(
            status_code=400, detail=f"Validation error for 'start_event': {_one_line(exc.message)}"
        ) from None


def _one_line(text: str) -> str:
    """pydantic's many lines joined, its help links dropped."""
    lines = [line.strip() for line in text.splitlines()]
    return "; ".join(line for line in lines if line and not line.startswith("For further"))


async def _wait_for_end(logs: AsyncLogReader, run_id: str) -> None:
    last = "0-0"
    while True:
        got = await logs.follow(run_id, last, block_ms=BLOCK_MS)
        if not got and await logs.status(run_id) is None:
            return  # expired meanwhile: the record read that follows says so
        for entry in got:
            last = entry.id
            if entry.kind in END_KINDS:
                return


def _events_of(cls: type[Workflow]) -> list[type[Event]]:
    """The workflow's event types: its start event, then what its steps take and emit."""
    found: dict[type[Event], None] = {cls.spec.start_event: None}
    for spec in cls.spec.steps.values():
        found.update(dict.fromkeys(spec.accepts))
        found.update(dict.fromkeys(spec.emits))
    return list(found)


def _stop_event(cls: type[Workflow]) -> type[Event]:
    stops = [e for e in _events_of(cls) if issubclass(e, StopEvent)]
    return stops[0] if len(stops) == 1 else StopEvent


async def workflow_schema(request: Request) -> Response:
    cls = _workflow(request)
    start = cls.spec.start_event.model_json_schema()
    return JSONResponse({"start": start, "stop": _stop_event(cls).model_json_schema()})


async def workflow_events(request: Request) -> Response:
    cls = _workflow(request)
    return JSONResponse({"events": [e.model_json_schema() for e in _events_of(cls)]})


async def workflow_representation(request: Request) -> Response:
    """The step graph in llama's ``WorkflowGraph`` shape: step and event nodes, edges from
    an event to the steps taking it and from a step to the events it emits."""
    cls = _workflow(request)
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    for event in _events_of(cls):
        nodes.append(
            {
                "id": event.__name__,
                "label": event.__name__,
                "node_type": "event",
                "event_type": event.__name__,
                "event_types": [c.__name__ for c in event.__mro__ if _is_event(c)],
                "event_schema": event.model_json_schema(),
                "produced_by": [s.name for s in cls.spec.steps.values() if event in s.emits],
            }
        )
    for spec in cls.spec.steps.values():
        doc = (spec.fn.__doc__ or "").strip() or None
        nodes.append({"id": spec.name, "label": spec.name, "node_type": "step", "description": doc})
        edges += [{"source": e.__name__, "target": spec.name} for e in spec.accepts]
        edges += [{"source": spec.name, "target": e.__name__} for e in spec.emits]
    graph = {"name": cls.name, "nodes": nodes, "edges": edges, "description": cls.__doc__}
    return JSONResponse({"graph": graph})


def _is_event(c: type) -> bool:
    return isinstance(c, type) and issubclass(c, Event) and c is not Event


# --- handlers -----------------------------------------------------------------------------


def _list_param(request: Request, name: str) -> list[str] | None:
    """A repeatable filter (``status=a&status=b``); blank values are ignored."""
    values = [v.strip() for v in request.query_params.getlist(name) if v.strip()]
    return values or None


async def list_handlers(request: Request) -> Response:
    """Newest first; ``status`` and ``workflow_name`` filter as llama's do (an unknown status
    matches nothing), ``limit`` (Baton's: 1..1000, default 100) bounds the list."""
    statuses = _list_param(request, "status")
    names = _list_param(request, "workflow_name")
    limit_text = request.query_params.get("limit", "100")
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_HANDLERS:
        raise HTTPException(status_code=400, detail=f"limit must be 1..{MAX_HANDLERS}")
    limit = int(limit_text)
    wanted = None if statuses is None else [s for s in statuses if s in STATUSES]
    if wanted == []:
        return JSONResponse({"handlers": []})
    single = wanted[0] if wanted is not None and len(set(wanted)) == 1 else None
    fetch = limit if names is None and (wanted is None or single) else MAX_HANDLERS
    records = await _blocking(queries.recent_runs, _client(request).runtime, single, fetch)
    handlers = [
        handler_of(r).to_json()
        for r in records
        if (wanted is None or r.status.value in wanted) and (names is None or r.workflow in names)
    ]
    return JSONResponse({"handlers": handlers[:limit]})


async def get_handler(request: Request) -> Response:
    return _handler_response(handler_of(await _record(request, request.path_params["handler_id"])))


async def get_result(request: Request) -> Response:
    """Deprecated in llama: the handler with ``result`` unwrapped from its StopEvent."""
    handler = handler_of(await _record(request, request.path_params["handler_id"]))
    response = _handler_response(handler)
    data = handler.to_json()
    data["result"] = bare_result(handler)
    return JSONResponse(data, status_code=response.status_code)


async def cancel_handler(request: Request) -> Response:
    """Cancel a live run. ``purge=true`` is refused: a run's keys expire after the retention
    period, and deleting them early would lose what its children and workers still read."""
    handler_id = request.path_params["handler_id"]
    if request.query_params.get("purge", "false").lower() == "true":
        raise HTTPException(
            status_code=400, detail="purge is not supported: runs expire after retention"
        )
    record = await _record(request, handler_id)
    if record.status is not RunStatus.RUNNING:
        raise HTTPException(status_code=409, detail="Workflow already completed")
    handle = _client(request).get(handler_id)
    if not await _blocking(handle.cancel):
        raise HTTPException(status_code=409, detail="Workflow already completed")
    return JSONResponse({"status": "cancelled"})


# --- events -------------------------------------------------------------------------------


async def post_event(request: Request) -> Response:
    """Send an event into a run: the answer a step waits for (in the run or a child, through
    the root run that holds the waiters), else to the steps that take it."""
    handler_id = request.path_params["handler_id"]
    body = await _json_object(request, "Error processing request")
    event_data, step = body.get("event"), body.get("step")
    if not event_data:
        raise HTTPException(status_code=400, detail="Event data is required")
    if step is not None and not isinstance(step, str):
        raise HTTPException(status_code=400, detail="'step' must be a step name")
    record = await _record(request, handler_id)
    if record.status is not RunStatus.RUNNING:
        raise HTTPException(status_code=409, detail="Workflow already completed")
    client = _client(request)
    handle = client.get(handler_id)
    waiting = await _blocking(handle.waiting)
    awaited = [w.event_type for w in waiting]
    wanted = read_event_request(event_data, bare_ok=False)
    cls = resolve_event(wanted.name or "", awaited=awaited)
    if issubclass(cls, StartEvent | StopEvent) and cls.type_tag not in awaited:
        raise InvalidInputError(f"a {cls.__name__} cannot be sent into a running run")
    event = build_event(cls, wanted.fields)
    target = client.get(record.root) if cls.type_tag in awaited else handle
    await _blocking(target.send_event, event, step)
    return JSONResponse({"status": "sent"})


def _query_flag(request: Request, name: str, default: str) -> bool:
    return request.query_params.get(name, default).lower() == "true"


async def stream_events(request: Request) -> Response:
    """The run's stream events, input requests and end (StopEvent, or llama's failed /
    cancelled stop event) as SSE (``id: <sequence>``) or NDJSON. A sequence is the entry's
    position in the run log; ``after_sequence`` (-1: all, ``now``: only new) or SSE's
    Last-Event-ID resumes after one. 204 when the run ended and nothing is left to send."""
    handler_id = request.path_params["handler_id"]
    sse = _query_flag(request, "sse", "true")
    qualified = _query_flag(request, "include_qualified_name", "true")
    after_text = request.query_params.get("after_sequence", "now")
    after: int | None = None
    if after_text.lower() != "now":
        try:
            after = int(after_text)
        except ValueError:
            raise HTTPException(
                status_code=400, detail=f"Invalid after_sequence: '{after_text}'"
            ) from None
    last_event_id = request.headers.get("last-event-id")
    if sse and last_event_id is not None and last_event_id.lstrip("-").isdigit():
        after = int(last_event_id)
    await _record(request, handler_id)
    logs = _logs(request)
    backlog = await _backlog(logs, handler_id)
    if after is None:
        after = len(backlog) - 1
    ended = any(e.kind in END_KINDS for e in backlog)
    pending = [(i, e) for i, e in enumerate(backlog) if i > after and _shown(e)]
    if ended and not pending:
        return Response(status_code=204)
    last = backlog[-1].id if backlog else "0-0"
    body = _stream(request, logs, handler_id, pending, len(backlog), last, sse, qualified, ended)
    media = "text/event-stream" if sse else "application/x-ndjson"
    return StreamingResponse(body, media_type=media, headers={"Cache-Control": "no-cache"})


def _shown(entry: LogEntry) -> bool:
    return entry.kind in USER_KINDS or entry.kind in END_KINDS


async def _backlog(logs: AsyncLogReader, run_id: str) -> list[LogEntry]:
    """The run log so far, read in batches without blocking."""
    entries: list[LogEntry] = []
    last = "0-0"
    while True:
        got = await logs.follow(run_id, last, count=BACKLOG_BATCH)
        entries += got
        if len(got) < BACKLOG_BATCH:
            return entries
        last = got[-1].id


async def _stream(
    request: Request,
    logs: AsyncLogReader,
    run_id: str,
    pending: list[tuple[int, LogEntry]],
    next_seq: int,
    last: str,
    sse: bool,
    qualified: bool,
    ended: bool,
) -> AsyncIterator[str]:
    """Format the backlog, then follow the log live until the run's end entry."""
    for seq, entry in pending:
        yield _format(seq, _envelope(entry, qualified), sse)
    quiet = 0
    while not ended:
        got = await logs.follow(run_id, last, block_ms=BLOCK_MS)
        if not got:
            if await request.is_disconnected() or await logs.status(run_id) is None:
                return
            quiet += 1
            if sse and quiet % HEARTBEAT_ROUNDS == 0:
                yield ": heartbeat\n\n"
            continue
        quiet = 0
        for entry in got:
            seq, next_seq, last = next_seq, next_seq + 1, entry.id
            if _shown(entry):
                yield _format(seq, _envelope(entry, qualified), sse)
            if entry.kind in END_KINDS:
                return


def _envelope(entry: LogEntry, qualified: bool) -> Envelope:
    if entry.kind in END_KINDS:
        return end_envelope(entry, qualified)
    return envelope_of(decode_event(entry.data), qualified)


def _format(seq: int, envelope: Envelope, sse: bool) -> str:
    payload = json.dumps(envelope.to_json(), separators=(",", ":"), default=repr)
    return f"id: {seq}\ndata: {payload}\n\n" if sse else f"{payload}\n"

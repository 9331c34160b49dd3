"""Submit runs and follow them: ``Client`` (sync) and ``AsyncClient``.

Clients read Baton's own run hash and event stream (never Celery's result backend, which
hangs after a Redis restart), through ``tasks.queries``: a Redis that is down or silent is a
``StoreUnavailableError``. Bad input is rejected before anything is written.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from app.celery_app import create_app
from app.schedules import Schedules
from config import Settings, get_settings
from tasks import inbox, queries, runs
from tasks.keys import root_run_id
from tasks.protocol import (
    END_KINDS,
    EVENT_KINDS,
    USER_KINDS,
    LogEntry,
    LogKind,
    RunRecord,
    RunStatus,
    Span,
)
from tasks.queries import guarded
from tasks.runtime import Runtime, now
from workflows.codec import decode_event, dumps, from_data, loads
from workflows.context import Context, context_data, read_context_data, state_type_of
from workflows.errors import (
    BatonError,
    ErrorInfo,
    InvalidInputError,
    RunError,
    WorkflowTimeoutError,
    error_from_info,
)
from workflows.events import Event, StartEvent
from workflows.workflow import Workflow, require_constructible, require_workflow

LIVE_KINDS = (*USER_KINDS, LogKind.FAILED, LogKind.CANCELLED)  # what stream_events watches


@dataclass(frozen=True)
class RunInfo:
    """A run's metadata as stored in its hash."""

    run_id: str
    workflow: str
    status: str
    created: float
    updated: float
    parent: str | None
    error: ErrorInfo | None

    @classmethod
    def of(cls, record: RunRecord) -> RunInfo:
        """The user-facing view of the store's record (status as text, parent as a run id)."""
        return cls(
            record.run_id,
            record.workflow,
            record.status.value,
            record.created,
            record.updated,
            record.parent_run,
            record.error,
        )


@dataclass(frozen=True)
class RunState:
    """Where a run stands, in terms a user can act on.

    ``state``: ``queued`` (its next messages wait on ``queues`` and none started), ``waiting for
    a limit`` (its only work is calls waiting for a rate or concurrency limit), ``sleeping`` (in
    ``ctx.sleep`` until ``until``, holding no worker), ``running``,
    ``waiting for input`` (for ``awaiting`` event types: answer with ``send_event``), or how it
    ended: ``completed``, ``failed``, ``cancelled``. ``unserved``: the queues it has messages on
    that no live worker consumes (start one: ``baton worker -Q <queue>``)."""

    state: str
    queues: tuple[str, ...] = ()
    unserved: tuple[str, ...] = ()
    awaiting: tuple[str, ...] = ()
    until: float | None = None

    def describe(self) -> str:
        """One line, e.g. ``queued on llm (no worker consumes llm)``."""
        text = self.state
        if self.state == "queued" and self.queues:
            text += f" on {', '.join(self.queues)}"
        elif self.state == "waiting for input" and self.awaiting:
            text += f" ({', '.join(t.rsplit('.', 1)[-1] for t in self.awaiting)})"
        elif self.state == "sleeping" and self.until is not None:
            text += " until " + time.strftime("%H:%M:%S", time.localtime(self.until))
        if self.unserved:
            text += f" (no worker consumes {', '.join(self.unserved)})"
        return text


@dataclass(frozen=True)
class Waiting:
    """A step waiting for input: the run it belongs to (the run asked, or a child of it), the
    event type it waits for (a type tag) and the field values that event must carry."""

    run_id: str
    event_type: str
    requirements: dict[str, Any]


class RunHandle:
    """A submitted run: status, result, events, answers, cancel."""

    def __init__(self, client: Client, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    @property
    def _rt(self) -> Runtime:
        return self.client.runtime

    def info(self) -> RunInfo:
        return RunInfo.of(queries.require_run(self._rt, self.run_id))

    def status(self) -> str:
        return self.info().status

    def result(self, timeout: float | None = 60.0) -> Any:
        """Wait for the end of the run: its result, or its error raised (rebuilt from data).

        An unknown run is InvalidInputError at once, and so, within about a second, is a run
        whose keys expire while we wait: never a wait for nothing until ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for _ in self._entries(deadline, kinds=END_KINDS):
            break
        else:
            raise WorkflowTimeoutError(f"run {self.run_id} did not finish within {timeout}s")
        return _outcome(queries.require_run(self._rt, self.run_id))

    def events(self) -> list[Event]:
        """Every event of the run so far (start, emitted, sent, streamed, stop)."""
        return [
            decode_event(e.data)
            for e in queries.log_entries(self._rt, self.run_id)
            if e.kind in EVENT_KINDS and e.run is None
        ]

    def timeline(self) -> list[dict[str, Any]]:
        """Every stream entry, including retries and the final status, with timestamps."""
        return [
            {"id": e.id, "ms": e.ms, "kind": e.kind.value, "data": e.data}
            for e in queries.log_entries(self._rt, self.run_id)
        ]

    def spans(self, children: bool = True) -> list[Span]:
        """What ran so far, where and how long: a span per step delivery (a step that waits on
        calls has one per resume, sharing its ``inv``) and per tool attempt, ordered by start;
        with ``children``, those of the child runs too."""
        queries.require_run(self._rt, self.run_id)
        return queries.spans(self._rt, self.run_id, children)

    def stream_events(self, timeout: float | None = 60.0) -> Iterator[Event]:
        """Live: streamed events, input requests and the StopEvent, as they are written.

        An unknown (or expired) run is InvalidInputError, as for :meth:`result`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for entry in self._entries(deadline, kinds=LIVE_KINDS):
            if entry.kind in USER_KINDS:
                yield decode_event(entry.data)
            if entry.kind in END_KINDS:
                return

    def _entries(self, deadline: float | None, kinds: tuple[LogKind, ...]) -> Iterator[LogEntry]:
        """The run's log entries of ``kinds`` as they are written, until ``deadline``.

        Waits in rounds of at most a second; after a quiet round it checks that the run still
        exists, so a run that never existed or expired meanwhile ends the wait at once."""
        queries.require_run(self._rt, self.run_id)
        last = "0-0"
        while deadline is None or time.monotonic() < deadline:
            left = 1000 if deadline is None else max(1, int((deadline - time.monotonic()) * 1000))
            got = queries.follow_log(self._rt, self.run_id, last, block_ms=min(left, 1000))
            if not got:
                queries.require_run(self._rt, self.run_id)
            for entry in got:
                last = entry.id
                if entry.kind in kinds:
                    yield entry

    def context(self) -> dict[str, Any]:
        """The run's store as context data (``Context.to_dict()``'s shape): continue it with
        ``Client.submit(..., context=...)``, or in-process with ``Context.from_dict``."""
        record = queries.require_run(self._rt, self.run_id)
        data = {key: loads(text) for key, text in queries.store_data(self._rt, self.run_id).items()}
        return context_data(record.workflow, state_type_of(require_workflow(record.workflow)), data)

    def send_event(self, event: Event, step: str | None = None) -> None:
        """Answer a step waiting for this event (in this run or a child), else route it."""
        inbox.send_event(self._rt, self.run_id, event, step)

    def waiting(self) -> list[Waiting]:
        """The steps waiting for input: of this run and, for a root run, of its children too
        (answer them with :meth:`send_event` on the root run); empty when none waits."""
        record = queries.require_run(self._rt, self.run_id)
        return [
            Waiting(w.address.run, w.tag, w.requirements)
            for w in queries.waiters(self._rt, record.root)
            if record.root == self.run_id or w.address.run == self.run_id
        ]

    def state(self) -> RunState:
        """Where the run stands: queued (on which queues, and whether any worker consumes
        them), running, waiting for input (for what), or how it ended."""
        record = queries.require_run(self._rt, self.run_id)
        if record.status is not RunStatus.RUNNING:
            return RunState(record.status.value)
        awaiting = tuple(dict.fromkeys(w.event_type for w in self.waiting()))
        now_doing = queries.activity(self._rt, self.run_id)
        served = {q for w in queries.live_workers(self._rt) for q in w.queues}
        queues = tuple(sorted(now_doing.queued))
        unserved = tuple(q for q in queues if q not in served)
        if awaiting and not now_doing.started:
            return RunState("waiting for input", queues, unserved, awaiting)
        if queues and not now_doing.started and queries.limit_delayed(self._rt, self.run_id):
            return RunState("waiting for a limit", queues, unserved, awaiting)
        if queues and not now_doing.started:
            return RunState("queued", queues, unserved, awaiting)
        if not queues and not now_doing.started:
            until = queries.sleeping_until(self._rt, self.run_id)
            if until is not None:
                return RunState("sleeping", queues, unserved, awaiting, until)
        return RunState("running", queues, unserved, awaiting)

    def cancel(self) -> bool:
        """Stop the run: no further step starts, queued tasks are revoked; True if it was live."""
        return guarded(lambda: runs.cancel_run(self._rt, self.run_id))


class Client:
    """Submits workflow runs to the distributed runtime."""

    def __init__(self, settings: Settings | None = None, runtime: Runtime | None = None) -> None:
        if runtime is None:
            _, runtime = create_app(settings or get_settings())
        self.runtime = runtime

    def submit(
        self,
        workflow: str | type[Workflow],
        start_event: StartEvent | None = None,
        /,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        context: RunHandle | str | dict[str, Any] | Context[Any] | None = None,
        **kwargs: Any,
    ) -> RunHandle:
        """Validate and enqueue a run; the same idempotency key returns the same run.

        ``context`` continues a conversation: the run starts with the store of an ended run
        (its handle or id), of ``Context.to_dict()`` data, or of an in-process Context."""
        name = workflow if isinstance(workflow, str) else workflow.name
        cls = require_workflow(name)
        require_constructible(cls)
        start = cls.make_start_event(start_event, **kwargs)
        store = self._context_store(name, context)
        deadline = now() + timeout if timeout else None
        run_id, _ = guarded(
            lambda: runs.create_run(
                self.runtime,
                name,
                root_run_id(idempotency_key),
                start,
                deadline=deadline,
                idempotency_key=idempotency_key,
                store=store,
            )
        )
        return RunHandle(self, run_id)

    def _context_store(
        self, workflow: str, context: RunHandle | str | dict[str, Any] | Context[Any] | None
    ) -> dict[str, str] | None:
        """The store a submitted run starts with (key -> JSON), from ``context``."""
        if context is None:
            return None
        if isinstance(context, RunHandle | str):
            run_id = context.run_id if isinstance(context, RunHandle) else context
            record = queries.require_run(self.runtime, run_id)
            if record.status is RunStatus.RUNNING:
                raise InvalidInputError(
                    f"run {run_id} is still running: continue a conversation from an ended run"
                )
            if record.workflow != workflow:
                raise InvalidInputError(f"run {run_id} is a {record.workflow} run, not {workflow}")
            return queries.store_data(self.runtime, run_id)
        data = context.to_dict() if isinstance(context, Context) else context
        stored, paused = read_context_data(data, workflow)
        if paused is not None:
            raise InvalidInputError(
                "this context holds an in-process run paused for input: finish it in-process "
                "(workflow.run(ctx=...)); a distributed run can continue only its store"
            )
        return {key: dumps(value) for key, value in stored.items()}

    def get(self, run_id: str) -> RunHandle:
        return RunHandle(self, run_id)

    @property
    def schedules(self) -> Schedules:
        """Cron and interval schedules that start runs (``app.schedules``)."""
        return Schedules(self)

    def runs(self, status: str | None = None, limit: int = 100) -> list[RunInfo]:
        """Most recent runs first, optionally only those with ``status``."""
        return [RunInfo.of(r) for r in queries.recent_runs(self.runtime, status, limit)]


class AsyncClient:
    """The same operations for asyncio code; blocking Redis calls run in a worker thread."""

    def __init__(self, settings: Settings | None = None, runtime: Runtime | None = None) -> None:
        self.sync = Client(settings, runtime)

    async def submit(
        self,
        workflow: str | type[Workflow],
        start_event: StartEvent | None = None,
        /,
        **kwargs: Any,
    ) -> RunHandle:
        """:meth:`Client.submit` (``context=`` included) in a worker thread."""
        return await asyncio.to_thread(partial(self.sync.submit, workflow, start_event, **kwargs))

    async def runs(self, status: str | None = None, limit: int = 100) -> list[RunInfo]:
        return await asyncio.to_thread(self.sync.runs, status, limit)

    async def status(self, handle: RunHandle) -> str:
        return await asyncio.to_thread(handle.status)

    async def result(self, handle: RunHandle, timeout: float | None = 60.0) -> Any:
        return await asyncio.to_thread(handle.result, timeout)

    async def send_event(self, handle: RunHandle, event: Event, step: str | None = None) -> None:
        await asyncio.to_thread(handle.send_event, event, step)

    async def cancel(self, handle: RunHandle) -> bool:
        return await asyncio.to_thread(handle.cancel)

    async def stream_events(
        self, handle: RunHandle, timeout: float | None = 60.0
    ) -> AsyncIterator[Event]:
        iterator = handle.stream_events(timeout)
        while True:
            event = await asyncio.to_thread(next, iterator, None)
            if event is None:
                return
            yield event


def _outcome(record: RunRecord) -> Any:
    """A finished run's result, or its error raised."""
    if record.status is RunStatus.COMPLETED and record.result is not None:
        return _maybe_event(from_data(loads(record.result)))
    if record.error is not None:
        raise error_from_info(record.error)
    raise RunError(f"run {record.run_id} is {record.status.value} with no result or error")


def _maybe_event(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"type", "data"}:
        try:
            return decode_event(value)
        except BatonError:
            return value
    return value

"""Submit runs and follow them: ``Client`` (sync) and ``AsyncClient``.

Clients read Baton's own run hash and event stream (never Celery's result backend, which
hangs after a Redis restart). Bad input is rejected before anything is written.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis

from app.celery_app import create_app
from config import Settings, get_settings
from tasks import runs
from tasks.runtime import Runtime, now
from workflows._engine import core
from workflows.codec import decode_event, dumps, encode_event, loads
from workflows.errors import (
    BatonError,
    ErrorInfo,
    InvalidInputError,
    StoreUnavailableError,
    WorkflowTimeoutError,
    error_from_info,
)
from workflows.events import Event, StartEvent
from workflows.workflow import Workflow, require_workflow

USER_KINDS = ("stream", "input", "stop")
END_KINDS = ("stop", "failed", "cancelled")


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


class RunHandle:
    """A submitted run: status, result, events, answers, cancel."""

    def __init__(self, client: Client, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    @property
    def _rt(self) -> Runtime:
        return self.client.runtime

    def info(self) -> RunInfo:
        raw = _guard(lambda: self._rt.redis.hgetall(self._rt.keys.run(self.run_id)))
        if not raw:
            raise InvalidInputError(f"no run {self.run_id!r} (never submitted, or expired)")
        error = ErrorInfo.model_validate_json(raw["error"]) if raw.get("error") else None
        parent = json.loads(raw["parent"])["run"] if raw.get("parent") else None
        return RunInfo(
            self.run_id,
            raw["workflow"],
            raw["status"],
            float(raw["created"]),
            float(raw["updated"]),
            parent,
            error,
        )

    def status(self) -> str:
        return self.info().status

    def result(self, timeout: float | None = 60.0) -> Any:
        """Wait for the end of the run: its result, or its error raised (rebuilt from data)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for _ in self._entries(deadline, kinds=END_KINDS):
            break
        else:
            raise WorkflowTimeoutError(f"run {self.run_id} did not finish within {timeout}s")
        raw = self._rt.redis.hmget(self._rt.keys.run(self.run_id), ["status", "result", "error"])
        status, result, error = raw
        if status == "completed":
            value = json.loads(result)
            return _maybe_event(value)
        raise error_from_info(ErrorInfo.model_validate_json(error))

    def events(self) -> list[Event]:
        """Every event of the run so far (start, emitted, sent, streamed, stop)."""
        entries = self._rt.redis.xrange(self._rt.keys.events(self.run_id))
        return [
            decode_event(loads(f["e"]))
            for _, f in entries
            if f["k"] in ("event", "stream", "input", "stop") and "r" not in f
        ]

    def timeline(self) -> list[dict[str, Any]]:
        """Every stream entry, including retries and the final status, with timestamps."""
        entries = self._rt.redis.xrange(self._rt.keys.events(self.run_id))
        return [
            {"id": i, "ms": int(i.split("-")[0]), "kind": f["k"], "data": loads(f["e"])}
            for i, f in entries
        ]

    def stream_events(self, timeout: float | None = 60.0) -> Iterator[Event]:
        """Live: streamed events, input requests and the StopEvent, as they are written."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for kind, data in self._entries(deadline, kinds=(*USER_KINDS, "failed", "cancelled")):
            if kind in USER_KINDS:
                yield decode_event(data)
            if kind in END_KINDS:
                return

    def _entries(self, deadline: float | None, kinds: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
        key, last = self._rt.keys.events(self.run_id), "0-0"
        while deadline is None or time.monotonic() < deadline:
            left = 1000 if deadline is None else max(1, int((deadline - time.monotonic()) * 1000))
            got = _guard(partial(self._rt.redis.xread, {key: last}, block=min(left, 1000)))
            for _, entries in got or []:
                for entry_id, fields in entries:
                    last = entry_id
                    if fields["k"] in kinds:
                        yield fields["k"], loads(fields["e"])

    def send_event(self, event: Event, step: str | None = None) -> None:
        """Answer a step waiting for this event (in this run or a child), else route it."""
        rt, k = self._rt, self._rt.keys
        envelope = encode_event(event)
        dumps(envelope, rt.settings.max_payload_bytes)
        for field, raw in rt.redis.hgetall(k.waiters(self.run_id)).items():
            waiter = json.loads(raw)
            if waiter["tag"] != type(event).type_tag or not _meets(event, waiter["requirements"]):
                continue
            if rt.redis.hdel(k.waiters(self.run_id), field) == 1:
                rt.redis.xadd(k.events(waiter["run"]), {"k": "event", "e": dumps(envelope)})
                runs.answer_call(rt, waiter, {"event": envelope})
                return
        info = self.info()
        if info.status != "running":
            raise InvalidInputError(f"run {self.run_id} is {info.status}; it takes no events")
        spec = require_workflow(info.workflow).spec
        deliveries = core.route(spec, f"ext-{uuid.uuid4().hex}", [(event, step)], batch=False)
        if not deliveries:
            raise InvalidInputError(
                f"no step of {info.workflow} accepts {type(event).__name__} and none waits for it"
            )
        rt.redis.xadd(k.events(self.run_id), {"k": "event", "e": dumps(envelope)})
        rt.send(runs.delivery_messages(rt, info.workflow, self.run_id, deliveries))

    def cancel(self) -> bool:
        """Stop the run: no further step starts, queued tasks are revoked; True if it was live."""
        return runs.cancel_run(self._rt, self.run_id)


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
        **kwargs: Any,
    ) -> RunHandle:
        """Validate and enqueue a run; the same idempotency key returns the same run."""
        name = workflow if isinstance(workflow, str) else workflow.name
        cls = require_workflow(name)
        start = cls.make_start_event(start_event, **kwargs)
        deadline = now() + timeout if timeout else None
        run_id, _ = _guard(
            lambda: runs.create_run(
                self.runtime,
                name,
                uuid.uuid4().hex,
                start,
                deadline=deadline,
                idempotency_key=idempotency_key,
            )
        )
        return RunHandle(self, run_id)

    def get(self, run_id: str) -> RunHandle:
        return RunHandle(self, run_id)

    def runs(self, status: str | None = None, limit: int = 100) -> list[RunInfo]:
        """Most recent runs first, optionally only those with ``status``."""
        rt = self.runtime
        ids = rt.redis.zrevrange(rt.keys.runs(), 0, max(limit * 10, 1000))
        pipe = rt.redis.pipeline(transaction=False)
        for run_id in ids:
            pipe.hget(rt.keys.run(run_id), "status")
        out = []
        for run_id, st in zip(ids, pipe.execute(), strict=True):
            if st is not None and (status is None or st == status):
                out.append(RunHandle(self, run_id).info())
                if len(out) >= limit:
                    break
        return out


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


def _meets(event: Event, requirements: dict[str, Any]) -> bool:
    return all(getattr(event, k, None) == v for k, v in requirements.items())


def _maybe_event(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"type", "data"}:
        try:
            return decode_event(value)
        except BatonError:
            return value
    return value


def _guard(fn: Any) -> Any:
    try:
        return fn()
    except redis.ConnectionError as exc:
        raise StoreUnavailableError(f"Redis is unreachable: {exc}") from exc

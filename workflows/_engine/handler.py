"""The handle of an in-process run: await it for the result, stream its events, answer it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

from workflows._engine.backend import Invocation
from workflows._engine.inprocess import InProcessRun, Waiter
from workflows._engine.records import dump_journal, parse_journal
from workflows.codec import decode_event, encode_event
from workflows.context import Context
from workflows.errors import (
    BatonError,
    ContextSerdeError,
    InvalidInputError,
    WorkflowRuntimeError,
    WorkflowTimeoutError,
)
from workflows.events import Event, StopEvent, event_class

if TYPE_CHECKING:
    from workflows.workflow import Workflow

SNAPSHOT_VERSION = 1


class WorkflowHandler:
    """Awaitable: ``await handler`` returns the run's result or raises its error."""

    def __init__(self, run: InProcessRun, timeout: float | None, ctx: Context[Any]) -> None:
        self.run = run
        self.run_id = run.run_id
        self._stream_ended = False
        self.ctx = ctx
        ctx._run = run
        self._task = asyncio.get_running_loop().create_task(self._result(timeout))
        self._task.add_done_callback(_retrieved)  # a run nobody awaits (cancelled) is no warning

    async def _result(self, timeout: float | None) -> Any:
        if timeout is None:
            return await asyncio.shield(self.run.done)
        # asyncio.wait, not wait_for: a step's own TimeoutError failing the run is no timeout
        done, _ = await asyncio.wait({self.run.done}, timeout=timeout)
        if done:
            return self.run.done.result()
        err = WorkflowTimeoutError(f"run {self.run_id} timed out after {timeout}s")
        self.run.fail(err.to_info())
        self.run.done.exception()  # mark it retrieved: this handler raises `err` instead
        raise err from None

    def __await__(self) -> Generator[Any, None, Any]:
        return self._task.__await__()

    def is_done(self) -> bool:
        return self.run.done.done()

    @property
    def events(self) -> list[Event]:
        """Every event of the run so far, in order (start, emitted, sent, streamed)."""
        return list(self.run.log)

    async def stream_events(self, expose_internal: bool = False) -> AsyncIterator[Event]:
        """Streamed events, InputRequiredEvents and the final StopEvent, as they happen. Once
        the stream has ended, another call raises WorkflowRuntimeError (as in LlamaIndex)."""
        del expose_internal
        if self._stream_ended:
            raise WorkflowRuntimeError("All the streamed events have already been consumed.")
        while True:
            event = await self.run.stream.get()
            if event is None:
                self._stream_ended = True
                self.run.stream.put_nowait(None)  # a stream running alongside ends too
                return
            if isinstance(event, StopEvent):  # ended, even if the caller stops reading here
                self._stream_ended = True
            yield event

    async def send_event(self, event: Event, step: str | None = None) -> None:
        """Answer a waiting step (``wait_for_event``), or route the event to accepting steps."""
        self.run.deliver(event, step)

    async def cancel_run(self) -> None:
        """Stop the run: running steps are cancelled, none starts, the result raises."""
        self.run.cancel()

    async def snapshot(self) -> dict[str, Any]:
        """The paused run as JSON data; take it while the run only waits for external events."""
        run = self.run
        await _settled(run)
        if run.done.done() or not run.waiters:
            raise InvalidInputError("only a run that is waiting for an event can be snapshotted")
        if any(w.run is not run for w in run.waiters):
            raise InvalidInputError("a run waiting inside a child workflow cannot be snapshotted")
        return _snapshot(run)


def _retrieved(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def paused_run_data(run: InProcessRun) -> dict[str, Any] | None:
    """A live run's snapshot for ``Context.to_dict()`` (None once it ended): its waiting
    steps, and the steps still running, each journaled so far — restored, they replay from
    their journals, as a distributed step does after a crash."""
    if run.done.done():
        return None
    if any(w.run is not run for w in run.waiters):
        raise ContextSerdeError(
            "to_dict(): the run waits inside a child workflow, which a context cannot hold; "
            "take it once the child's answer is in, or use ctx.run_workflow distributed"
        )
    data: dict[str, Any] = json.loads(json.dumps(_snapshot(run)))  # a copy, proven JSON
    return data


def _snapshot(run: InProcessRun) -> dict[str, Any]:
    return {
        "version": SNAPSHOT_VERSION,
        "workflow": type(run.workflow).name,
        "run_id": run.run_id,
        "store": run.state.data,
        "buffers": {k: [[t, e] for t, e in v] for k, v in run.buffers.items()},
        "log": [encode_event(e) for e in run.log],
        "waiters": [_waiter_data(w) for w in run.waiters],
        "running": [_invocation_data(inv) for inv in _running(run)],
    }


def _running(run: InProcessRun) -> list[Invocation]:
    waiting = {w.inv.id for w in run.waiters}
    return [inv for inv, _ in run.active.values() if inv.id not in waiting]


async def _settled(run: InProcessRun) -> None:
    for _ in range(100):
        if not run.tasks:
            return
        await asyncio.sleep(0)
    raise InvalidInputError("the run still has running steps; snapshot it while it waits")


def _waiter_data(w: Waiter) -> dict[str, Any]:
    return {
        "call_id": w.call_id,
        "event_type": w.event_type.type_tag,
        "requirements": w.requirements,
        "asked": None if w.asked is None else encode_event(w.asked),
        "invocation": _invocation_data(w.inv),
    }


def _invocation_data(inv: Invocation) -> dict[str, Any]:
    event = inv.event
    return {
        "id": inv.id,
        "step": inv.step,
        "attempt": inv.attempt,
        "event": [encode_event(e) for e in event]
        if isinstance(event, list)
        else encode_event(event),
        "journal": dump_journal(inv.journal),
        "effects_done": inv.effects_done,
    }


def _invocation(data: dict[str, Any]) -> Invocation:
    raw = data["event"]
    event = [decode_event(e) for e in raw] if isinstance(raw, list) else decode_event(raw)
    return Invocation(
        data["id"],
        data["step"],
        event,
        data["attempt"],
        parse_journal(dict(data["journal"])),
        dict(data["effects_done"]),
    )


def start_inprocess(
    workflow: Workflow, start: Event, run_id: str | None, ctx: Context[Any] | None = None
) -> WorkflowHandler:
    """Start a run; given ``ctx`` (the user's Context), the run uses and keeps its store."""
    ctx = _free_context(workflow, ctx)
    run = InProcessRun(workflow, run_id or uuid.uuid4().hex, state=ctx._state)
    run.start(start)
    return WorkflowHandler(run, workflow.timeout, ctx)


def _free_context(workflow: Workflow, ctx: Context[Any] | None) -> Context[Any]:
    """``ctx``, checked: a run's Context for this workflow, not lent to a run that goes on."""
    if ctx is None:
        return Context(workflow)
    if ctx._inv is not None:
        raise InvalidInputError("run(ctx=...) takes a Context(workflow), not a step's Context")
    if type(ctx._workflow).name != type(workflow).name:
        raise InvalidInputError(
            f"this Context is for {type(ctx._workflow).name}, not {type(workflow).name}"
        )
    if ctx.is_running:
        raise InvalidInputError("this Context's run is still going; await it before another")
    return ctx


def resume_inprocess(
    workflow: Workflow, snapshot: dict[str, Any], ctx: Context[Any] | None = None
) -> WorkflowHandler:
    """Rebuild a paused run from its snapshot; a malformed snapshot is a clear error."""
    keep_store = ctx is not None
    ctx = _free_context(workflow, ctx)
    try:
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise InvalidInputError(f"unsupported snapshot version {snapshot.get('version')!r}")
        if snapshot["workflow"] != type(workflow).name:
            raise InvalidInputError(
                f"snapshot is of {snapshot['workflow']}, not {type(workflow).name}"
            )
        run = InProcessRun(workflow, snapshot["run_id"], state=ctx._state)
        if not keep_store:  # a Context restored with from_dict holds the store (maybe edited)
            run.state.data = dict(snapshot["store"])
        run.buffers = {k: [(t, e) for t, e in v] for k, v in snapshot["buffers"].items()}
        run.log = [decode_event(e) for e in snapshot["log"]]
        for w in snapshot["waiters"]:
            run.waiters.append(
                Waiter(
                    run,
                    _invocation(w["invocation"]),
                    w["call_id"],
                    event_class(w["event_type"]),
                    dict(w["requirements"]),
                    None if w.get("asked") is None else decode_event(w["asked"]),
                )
            )
        running = [_invocation(data) for data in snapshot.get("running", [])]
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, BatonError):
            raise
        raise InvalidInputError(f"malformed snapshot: {exc!r}") from exc
    for inv in running:  # steps that were running when it was saved replay from their journal
        run.schedule(inv)
    for waiter in run.waiters:  # what the paused run asks is on the new handler's stream too
        if waiter.asked is not None:
            run.stream.put_nowait(waiter.asked)
    return WorkflowHandler(run, workflow.timeout, ctx)


class DeferredRun(Coroutine[Any, Any, Any]):
    """What ``workflow.run()`` returns outside an event loop: a coroutine that starts the run
    when it is first driven, so ``asyncio.run(wf.run(...))`` works from synchronous code."""

    def __init__(self, start: Callable[[], WorkflowHandler]) -> None:
        self._start = start
        self._coro: Coroutine[Any, Any, Any] | None = None

    async def _main(self) -> Any:
        return await self._start()

    def _driven(self) -> Coroutine[Any, Any, Any]:
        if self._coro is None:
            self._coro = self._main()
        return self._coro

    def send(self, value: Any) -> Any:
        return self._driven().send(value)

    def throw(self, *args: Any) -> Any:
        return self._driven().throw(*args)

    def close(self) -> None:
        if self._coro is not None:
            self._coro.close()

    def __await__(self) -> Generator[Any, None, Any]:
        return self._driven().__await__()

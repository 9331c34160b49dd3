"""The handle of an in-process run: await it for the result, stream its events, answer it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Generator
from typing import TYPE_CHECKING, Any

from workflows._engine.backend import Invocation
from workflows._engine.inprocess import InProcessRun, Waiter
from workflows._engine.records import dump_journal, parse_journal
from workflows.codec import decode_event, encode_event
from workflows.errors import BatonError, InvalidInputError, WorkflowTimeoutError
from workflows.events import Event, event_class

if TYPE_CHECKING:
    from workflows.workflow import Workflow

SNAPSHOT_VERSION = 1


class WorkflowHandler:
    """Awaitable: ``await handler`` returns the run's result or raises its error."""

    def __init__(self, run: InProcessRun, timeout: float | None) -> None:
        self.run = run
        self.run_id = run.run_id
        self.ctx = _HandlerContext(self)
        self._task = asyncio.get_running_loop().create_task(self._result(timeout))

    async def _result(self, timeout: float | None) -> Any:
        try:
            return await asyncio.wait_for(asyncio.shield(self.run.done), timeout)
        except TimeoutError:
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
        """Streamed events, InputRequiredEvents and the final StopEvent, as they happen."""
        del expose_internal
        while True:
            event = await self.run.stream.get()
            if event is None:
                self.run.stream.put_nowait(None)  # a later call ends too, instead of hanging
                return
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
        return {
            "version": SNAPSHOT_VERSION,
            "workflow": type(run.workflow).name,
            "run_id": run.run_id,
            "store": run.store,
            "buffers": {k: [[t, e] for t, e in v] for k, v in run.buffers.items()},
            "log": [encode_event(e) for e in run.log],
            "waiters": [_waiter_data(w) for w in run.waiters],
        }


class _HandlerContext:
    """``handler.ctx.send_event(...)`` as in LlamaIndex Workflows."""

    def __init__(self, handler: WorkflowHandler) -> None:
        self._handler = handler

    def send_event(self, event: Event, step: str | None = None) -> None:
        self._handler.run.deliver(event, step)


async def _settled(run: InProcessRun) -> None:
    for _ in range(100):
        if not run.tasks:
            return
        await asyncio.sleep(0)
    raise InvalidInputError("the run still has running steps; snapshot it while it waits")


def _waiter_data(w: Waiter) -> dict[str, Any]:
    event = w.inv.event
    return {
        "call_id": w.call_id,
        "event_type": w.event_type.type_tag,
        "requirements": w.requirements,
        "invocation": {
            "id": w.inv.id,
            "step": w.inv.step,
            "attempt": w.inv.attempt,
            "event": [encode_event(e) for e in event]
            if isinstance(event, list)
            else encode_event(event),
            "journal": dump_journal(w.inv.journal),
            "effects_done": w.inv.effects_done,
        },
    }


def start_inprocess(workflow: Workflow, start: Event, run_id: str | None) -> WorkflowHandler:
    run = InProcessRun(workflow, run_id or uuid.uuid4().hex)
    run.start(start)
    return WorkflowHandler(run, workflow.timeout)


def resume_inprocess(workflow: Workflow, snapshot: dict[str, Any]) -> WorkflowHandler:
    """Rebuild a paused run from its snapshot; a malformed snapshot is a clear error."""
    try:
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise InvalidInputError(f"unsupported snapshot version {snapshot.get('version')!r}")
        if snapshot["workflow"] != type(workflow).name:
            raise InvalidInputError(
                f"snapshot is of {snapshot['workflow']}, not {type(workflow).name}"
            )
        run = InProcessRun(workflow, snapshot["run_id"])
        run.store = dict(snapshot["store"])
        run.buffers = {k: [(t, e) for t, e in v] for k, v in snapshot["buffers"].items()}
        run.log = [decode_event(e) for e in snapshot["log"]]
        for w in snapshot["waiters"]:
            data = w["invocation"]
            raw = data["event"]
            event = [decode_event(e) for e in raw] if isinstance(raw, list) else decode_event(raw)
            inv = Invocation(
                data["id"],
                data["step"],
                event,
                data["attempt"],
                parse_journal(dict(data["journal"])),
                data["effects_done"],
            )
            run.waiters.append(
                Waiter(
                    run, inv, w["call_id"], event_class(w["event_type"]), dict(w["requirements"])
                )
            )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, BatonError):
            raise
        raise InvalidInputError(f"malformed snapshot: {exc!r}") from exc
    return WorkflowHandler(run, workflow.timeout)

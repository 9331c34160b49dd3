"""The in-process runtime: one asyncio event loop drives a run through the pure core.

No broker, no Redis: events are routed in memory, tools and child workflows run inline.
A step waiting for an external event is parked (not held), so a waiting run can be snapshotted
to JSON and resumed elsewhere.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workflows._engine import core
from workflows._engine.executor import Completed, Failed, Parking, Suspended, execute
from workflows._engine.runtime import MISSING, Invocation
from workflows.codec import decode_event, encode_event
from workflows.context import Context
from workflows.errors import (
    BatonError,
    ChildWorkflowError,
    ConfigurationError,
    ErrorInfo,
    RunCancelledError,
    ToolError,
    error_from_info,
)
from workflows.events import Event, InputRequiredEvent, StopEvent
from workflows.step import Mode

if TYPE_CHECKING:
    from workflows.tools import ToolSpec
    from workflows.workflow import Workflow

_ids = itertools.count()


@dataclass
class Waiter:
    """A parked ``wait_for_event`` call and the invocation to replay when it is answered."""

    run: InProcessRun
    inv: Invocation
    call_id: str
    event_type: type[Event]
    requirements: dict[str, Any]

    def matches(self, event: Event) -> bool:
        return isinstance(event, self.event_type) and all(
            getattr(event, k, MISSING) == v for k, v in self.requirements.items()
        )


class InProcessRun:
    """One run in memory; also the StepBackend its steps' Contexts talk to."""

    def __init__(self, workflow: Workflow, run_id: str, root: InProcessRun | None = None) -> None:
        self.workflow = workflow
        self.spec = type(workflow).spec
        self.run_id = run_id
        self.root = root or self
        self.store: dict[str, Any] = {}
        self.buffers: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self.waiters: list[Waiter] = []
        self.log: list[Event] = []
        self.stream: asyncio.Queue[Event | None] = asyncio.Queue()
        self.tasks: set[asyncio.Task[None]] = set()
        self.limits = {
            name: asyncio.Semaphore(s.options.num_workers) for name, s in self.spec.steps.items()
        }
        self.done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.status = "running"
        self.error: ErrorInfo | None = None
        self.answerable = True

    # --- driving the run ---------------------------------------------------------------

    def start(self, event: Event) -> None:
        self.log.append(event)
        self.dispatch(core.route(self.spec, self.run_id, [(event, None)], batch=False))

    def dispatch(self, deliveries: list[core.Delivery] | tuple[core.Delivery, ...]) -> None:
        for d in deliveries:
            self.schedule(Invocation(d.invocation_id, d.step, d.event))

    def schedule(self, inv: Invocation) -> None:
        if self.done.done():
            return
        task = asyncio.get_running_loop().create_task(self._run(inv))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, inv: Invocation) -> None:
        step = self.spec.steps[inv.step]
        async with self.limits[inv.step]:
            while not self.done.done():
                inv.parking = Parking()
                outcome = await execute(self.workflow, step, Context(self, inv), inv, inv.parking)
                if isinstance(outcome, Suspended):
                    return
                if isinstance(outcome, Completed):
                    self._completed(inv, outcome)
                    return
                if isinstance(outcome.error, asyncio.CancelledError):
                    return
                if not await self._failed(inv, outcome):
                    return

    def _completed(self, inv: Invocation, outcome: Completed) -> None:
        for event in outcome.emitted.events:
            self.log.append(event)
            if isinstance(event, InputRequiredEvent):
                self.publish(event)
        for command in core.react_to_output(self.spec, inv.id, outcome.emitted):
            if isinstance(command, core.CompleteRun):
                self.finish(command.result, command.stop_event)
            elif isinstance(command, core.Dispatch):
                self.dispatch(command.deliveries)

    async def _failed(self, inv: Invocation, outcome: Failed) -> bool:
        """Apply the core's decision; True when the step should run again."""
        step = self.spec.steps[inv.step]
        for command in core.react_to_failure(
            self.spec, step, inv.id, inv.event, outcome.error, inv.attempt
        ):
            if isinstance(command, core.RetryStep):
                await asyncio.sleep(command.delay)
                inv.attempt = command.attempt
                inv.forget_errors()
                return True
            if isinstance(command, core.Dispatch):
                self.dispatch(command.deliveries)
            elif isinstance(command, core.FailRun):
                self.fail(command.error, outcome.error)
        return False

    def publish(self, event: Event) -> None:
        """Put an event on the user-visible stream (a child's go to the root's stream too)."""
        self.stream.put_nowait(event)
        if self.root is not self:
            self.root.stream.put_nowait(event)

    def finish(self, result: Any, stop: StopEvent) -> None:
        if self.done.done():
            return
        self.status = "completed"
        self.stream.put_nowait(stop)  # a child's StopEvent is not its parent's
        self.done.set_result(result)
        self._close()

    def fail(self, info: ErrorInfo, cause: BaseException | None = None) -> None:
        if self.done.done():
            return
        self.status = "cancelled" if info.type == "RunCancelledError" else "failed"
        self.error = info
        err = error_from_info(info)
        err.__cause__ = cause
        self.done.set_exception(err)
        self._close()

    def cancel(self) -> None:
        self.fail(RunCancelledError(f"run {self.run_id} was cancelled").to_info())

    def _close(self) -> None:
        self.stream.put_nowait(None)
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()
        self.root.waiters = [w for w in self.root.waiters if w.run is not self]

    def deliver(self, event: Event, step: str | None = None) -> None:
        """An event sent from outside: answer a waiting step, or route it to accepting steps."""
        for waiter in list(self.waiters):
            if waiter.matches(event):
                self.waiters.remove(waiter)
                waiter.inv.journal[waiter.call_id] = {"event": encode_event(event)}
                waiter.run.log.append(event)
                waiter.run.schedule(waiter.inv)
                return
        self.log.append(event)
        self.dispatch(core.route(self.spec, f"ext{next(_ids)}", [(event, step)], batch=False))

    # --- StepBackend --------------------------------------------------------------------

    async def call_tool(
        self, inv: Invocation, call_id: str, spec: ToolSpec, args: dict[str, Any]
    ) -> Any:
        try:
            value = await spec.invoke(args, call_id)
        except ToolError as exc:
            inv.journal[call_id] = {"error": exc.to_info(exc.attempts).model_dump()}
            raise
        inv.journal[call_id] = {"ok": value}
        return value

    async def run_child(
        self, inv: Invocation, call_id: str, workflow: str, start: Event, mode: Mode | None
    ) -> Any:
        return await run_child_inline(inv, call_id, workflow, start, self.run_id, self.root)

    async def wait_event(
        self,
        inv: Invocation,
        call_id: str,
        event_type: type[Event],
        waiter_event: Event | None,
        requirements: dict[str, Any],
    ) -> Event:
        if not self.root.answerable:
            raise ConfigurationError(
                f"{type(self.workflow).name} waits for an event, but it runs in-process inside a "
                "worker where no event can reach it; run it as a distributed child workflow"
            )
        if waiter_event is not None:
            self.log.append(waiter_event)
            self.publish(waiter_event)
        self.root.waiters.append(Waiter(self, inv, call_id, event_type, requirements))
        return await inv.parking.park(call_id)  # type: ignore[no-any-return]

    def effect(self, inv: Invocation, pos: str, kind: str, event: Event, step: str | None) -> None:
        self.log.append(event)
        if kind == "stream":
            self.publish(event)
        else:
            self.dispatch(core.route_sent(self.spec, inv.id, pos, event, step))

    def collect(
        self, inv: Invocation, call_id: str, buffer_id: str, event: Event, expected: list[str]
    ) -> list[Event] | None:
        buffer = self.buffers.setdefault(buffer_id, [])
        buffer.append((type(event).type_tag, encode_event(event)))
        chosen = None
        if len(buffer) >= len(expected):  # else not all in yet: skip the O(n) match
            chosen = core.collect_match([tag for tag, _ in buffer], expected)
        if chosen is None:
            inv.journal[call_id] = {"ok": None}
            return None
        taken = [buffer[i][1] for i in chosen]
        used = set(chosen)
        self.buffers[buffer_id] = [b for i, b in enumerate(buffer) if i not in used]
        inv.journal[call_id] = {"ok": taken}
        return [decode_event(e) for e in taken]

    async def store_get(self, key: str) -> Any:
        return self.store.get(key, MISSING)

    async def store_set(self, key: str, value: Any) -> None:
        self.store[key] = value

    async def store_delete(self, key: str) -> None:
        self.store.pop(key, None)


async def run_child_inline(
    inv: Invocation,
    call_id: str,
    workflow: str,
    start: Event,
    parent_run: str,
    root: InProcessRun | None = None,
    answerable: bool = True,
) -> Any:
    """Run a child workflow in this process and journal its result (or its error as data).

    ``answerable=False``: nobody can send this child an event (it runs inline in a worker).
    """
    from workflows.workflow import require_workflow

    child = InProcessRun(require_workflow(workflow)(), f"{parent_run}.{call_id}", root)
    child.answerable = answerable
    child.start(start)
    try:
        value = await child.done
    except BatonError as exc:
        info = exc.to_info()
        inv.journal[call_id] = {"error": info.model_dump()}
        raise ChildWorkflowError(
            f"child workflow {workflow} failed: {info.type}: {info.message}",
            workflow=workflow,
            child_error=info.model_dump(),
        ) from exc
    value = encode_event(value) if isinstance(value, Event) else value
    inv.journal[call_id] = {"ok": value}
    return value

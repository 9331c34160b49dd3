"""The in-process runtime: one asyncio event loop drives a run through the pure core.

No broker, no Redis: events are routed in memory, tools and child workflows run inline.
A step waiting for an external event is parked (not held), so a waiting run can be snapshotted
to JSON and resumed elsewhere.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from workflows._engine import core
from workflows._engine.backend import MISSING, Invocation
from workflows._engine.executor import (
    Completed,
    Failed,
    Suspended,
    create_untracked_task,
    execute,
    tracking_branches,
)
from workflows._engine.memory import MemoryBackend
from workflows._engine.records import JournalEntry
from workflows._engine.step_limits import run_limited
from workflows.codec import encode_event, to_data
from workflows.context import Context, RunState, state_type_of
from workflows.errors import (
    BatonError,
    ChildWorkflowError,
    ErrorInfo,
    RunCancelledError,
    RunError,
    error_from_info,
)
from workflows.events import Event, InputRequiredEvent, StopEvent
from workflows.factories import workflow_instance
from workflows.workflow import require_workflow

if TYPE_CHECKING:
    from workflows.workflow import Workflow


@dataclass
class Waiter:
    """A parked ``wait_for_event`` call and the invocation to replay when it is answered."""

    run: InProcessRun
    inv: Invocation
    call_id: str
    event_type: type[Event]
    requirements: dict[str, Any]
    asked: Event | None = None  # the waiter event published for it (published again on resume)

    def matches(self, event: Event) -> bool:
        return type(event) is self.event_type and all(  # exact, as distributed
            getattr(event, k, MISSING) == v for k, v in self.requirements.items()
        )


class InProcessRun:
    """One run in memory, driven through the pure core; its steps' Contexts talk to its
    :class:`MemoryBackend` (as a worker's StepTask drives a step against a RedisBackend)."""

    def __init__(
        self,
        workflow: Workflow,
        run_id: str,
        root: InProcessRun | None = None,
        state: RunState | None = None,
    ) -> None:
        self.workflow = workflow
        self.spec = type(workflow).spec
        self.run_id = run_id
        self.root = root or self
        self.state = state if state is not None else RunState(state_type_of(type(workflow)))
        self.buffers: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self.waiters: list[Waiter] = []
        self.log: list[Event] = []
        self.stream: asyncio.Queue[Event | None] = asyncio.Queue()
        self.tasks: set[asyncio.Task[None]] = set()
        # invocations scheduled and not yet ended or parked: ``Context.to_dict()`` saves them
        self.active: dict[str, tuple[Invocation, object]] = {}
        self.limits = {
            name: asyncio.Semaphore(s.options.num_workers) for name, s in self.spec.steps.items()
        }
        self.done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.status = "running"
        self.error: ErrorInfo | None = None
        self.answerable = True
        self.backend = MemoryBackend(self)
        # a root run tracks its steps' branches for its lifetime, then gives the loop back
        self._owned = ExitStack()
        if root is None:
            self._owned.enter_context(tracking_branches(asyncio.get_running_loop()))

    # --- driving the run ---------------------------------------------------------------

    def start(self, event: Event) -> None:
        self.log.append(event)
        try:
            self.dispatch(core.route(self.spec, self.run_id, [(event, None)], batch=False))
        except Exception as exc:  # Baton's own bug: the handler raises it, like any failure
            self.fail(self._internal_error("starting the run", exc), exc)

    def dispatch(self, deliveries: list[core.Delivery] | tuple[core.Delivery, ...]) -> None:
        for d in deliveries:
            self.schedule(Invocation(d.invocation_id, d.step, d.event))

    def schedule(self, inv: Invocation) -> None:
        if self.done.done():
            return
        token = object()
        self.active[inv.id] = (inv, token)
        task = create_untracked_task(self._run(inv, token))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, inv: Invocation, token: object) -> None:
        """Drive one invocation; an error in Baton's own code here (the core, routing, the
        retry decision) fails the run with it, so the run can neither hang nor leave a task
        exception nobody retrieves."""
        try:
            await self._drive(inv)
        except Exception as exc:
            self.fail(self._internal_error(f"running step {self._qualname(inv)}", exc), exc)
        finally:
            if self.active.get(inv.id, (None, None))[1] is token:  # not a later schedule's
                del self.active[inv.id]

    async def _drive(self, inv: Invocation) -> None:
        step = self.spec.steps[inv.step]
        async with self.limits[inv.step]:
            if inv.first_started is None:
                inv.first_started = time.monotonic()
            while not self.done.done():
                ctx = Context(self.backend, inv)
                outcome = await run_limited(
                    step, inv, partial(execute, self.workflow, step, ctx, inv)
                )
                if isinstance(outcome, Suspended):
                    return
                if isinstance(outcome, Completed):
                    self._completed(inv, outcome)
                    return
                if isinstance(outcome.error, asyncio.CancelledError):
                    return
                if not await self._failed(inv, outcome, time.monotonic() - inv.first_started):
                    return

    def _qualname(self, inv: Invocation) -> str:
        return f"{type(self.workflow).name}.{inv.step}"

    def _internal_error(self, doing: str, exc: Exception) -> ErrorInfo:
        """A Baton error keeps its own data; anything else is a RunError saying where."""
        if isinstance(exc, BatonError):
            return exc.to_info()
        text = f"run {self.run_id} failed in Baton's runtime while {doing}"
        return RunError(f"{text}: {type(exc).__name__}: {exc}").to_info()

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

    async def _failed(self, inv: Invocation, outcome: Failed, elapsed: float) -> bool:
        """Apply the core's decision; True when the step should run again."""
        step = self.spec.steps[inv.step]
        for command in core.react_to_failure(
            self.spec, step, inv.id, inv.event, outcome.error, inv.attempt, elapsed
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
        err = error_from_info(info, cause)  # also an instance of the step exception's class
        err.__cause__ = cause
        self.done.set_exception(err)
        self._close()

    def cancel(self) -> None:
        self.fail(RunCancelledError(f"run {self.run_id} was cancelled").to_info())

    def _close(self) -> None:
        self._owned.close()
        self.stream.put_nowait(None)
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()
        self.root.waiters = [w for w in self.root.waiters if w.run is not self]

    def deliver(self, event: Event, step: str | None = None) -> None:
        """An event sent from outside: answer a waiting step, or route it to accepting steps.
        A ``step`` the workflow lacks, or that does not take the event, is an error at once."""
        if step is not None and step not in self.spec.steps:
            core.check_target(self.spec, step, type(event))  # raises: no such step
        for waiter in list(self.waiters):
            if waiter.matches(event):
                self.waiters.remove(waiter)
                waiter.inv.journal[waiter.call_id] = JournalEntry.event(encode_event(event))
                waiter.run.log.append(event)
                waiter.run.schedule(waiter.inv)
                return
        if step is not None:
            core.check_target(self.spec, step, type(event))
        self.log.append(event)
        parent = f"ext-{uuid.uuid4().hex}"
        self.dispatch(core.route(self.spec, parent, [(event, step)], batch=False))


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
    instance = workflow_instance(require_workflow(workflow))  # its factory's, if it has one
    child = InProcessRun(instance, f"{parent_run}.{call_id}", root)
    child.answerable = answerable
    child.start(start)
    try:
        value = await child.done
    except BatonError as exc:
        info = exc.to_info()
        inv.journal[call_id] = JournalEntry.error(info)
        raise ChildWorkflowError.of(workflow, info, exc) from exc
    inv.journal[call_id] = JournalEntry.ok(to_data(value))
    return value

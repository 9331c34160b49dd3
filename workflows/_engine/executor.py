"""Runs one step invocation and reports how it ended: completed, suspended or failed.

A step suspends when it awaits something the runtime cannot answer yet (a distributed tool
call, a child workflow, an external event). The runtime registers the call and parks the
awaiting coroutine; once no new call has been parked for a few loop ticks, the step is cancelled
and reported as suspended with every call it started. Calls an ``asyncio.gather`` starts
without first awaiting real I/O are therefore dispatched together; a branch that awaits I/O
before its call parks it on a later replay instead. The step is replayed from its journal.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from workflows._engine.backend import Invocation, Parking
from workflows._engine.core import Emitted, normalize_output
from workflows._engine.records import ParkedCall
from workflows._engine.step_call import call_step
from workflows.errors import WorkflowTimeoutError
from workflows.step import StepSpec

_SETTLE_TICKS = 3


class BranchTracker:
    """A loop's task factory while steps run on it: gives each task a step creates a branch path
    under its creator.

    Paths: "" for the step itself, "0", "1", ... for the tasks it creates (an asyncio.gather's
    branches), "0/0" for theirs. Call ids and effect numbers are counted per branch, so a replay
    maps every answer to the same await even when branches interleave differently (a journaled
    call returns at once, where the first run waited). Installed only while a step runs
    (:func:`tracking_branches`), then the loop's previous factory is restored.
    """

    def __init__(self, previous: Any) -> None:
        self.previous = previous
        self.paths: weakref.WeakKeyDictionary[asyncio.Task[Any], list[Any]] = (
            weakref.WeakKeyDictionary()
        )
        self.users = 0
        self.skip = False

    def __call__(
        self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
    ) -> asyncio.Task[Any]:
        parent = asyncio.current_task(loop)
        task: asyncio.Task[Any] = (
            self.previous(loop, coro, **kwargs)
            if self.previous is not None
            else asyncio.Task(coro, loop=loop, **kwargs)
        )
        entry = self.paths.get(parent) if parent is not None and not self.skip else None
        if entry is not None:
            path, index = entry
            entry[1] = index + 1
            self.paths[task] = [f"{path}/{index}" if path else str(index), 0]
        return task


def _tracker(loop: asyncio.AbstractEventLoop) -> BranchTracker | None:
    factory = loop.get_task_factory()
    return factory if isinstance(factory, BranchTracker) else None


def branch_path() -> str:
    """The current task's branch path within its step ("" outside any step)."""
    task = asyncio.current_task()
    tracker = _tracker(task.get_loop()) if task is not None else None
    entry = tracker.paths.get(task) if tracker is not None and task is not None else None
    return str(entry[0]) if entry is not None else ""


def _enter(loop: asyncio.AbstractEventLoop) -> BranchTracker:
    """Count one more user of the loop's tracker (installing it for the first)."""
    tracker = _tracker(loop)
    if tracker is None:
        tracker = BranchTracker(loop.get_task_factory())
        loop.set_task_factory(tracker)
    tracker.users += 1
    return tracker


def _leave(loop: asyncio.AbstractEventLoop, tracker: BranchTracker) -> None:
    """One user less; the last gives the loop its previous factory back. Every step running on
    the loop is a user, so steps running at once (an asyncio worker) never lose the tracker."""
    tracker.users -= 1
    if tracker.users == 0 and loop.get_task_factory() is tracker:
        loop.set_task_factory(tracker.previous)


@contextmanager
def tracking_branches(loop: asyncio.AbstractEventLoop) -> Iterator[BranchTracker]:
    """Track branches on ``loop`` while the block runs (nested uses share one tracker)."""
    tracker = _enter(loop)
    try:
        yield tracker
    finally:
        _leave(loop, tracker)


def create_untracked_task(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """A task that is no branch of the step creating it (the in-process runtime's next steps),
    so a replay that skips the effect creating it numbers the step's branches the same."""
    loop = asyncio.get_running_loop()
    tracker = _tracker(loop)
    if tracker is None:
        return loop.create_task(coro)
    tracker.skip = True
    try:
        return loop.create_task(coro)
    finally:
        tracker.skip = False


@dataclass
class Completed:
    emitted: Emitted


@dataclass
class Failed:
    error: BaseException


@dataclass
class Suspended:
    calls: list[ParkedCall] = field(default_factory=list)


Outcome = Completed | Failed | Suspended


async def execute(instance: Any, spec: StepSpec, ctx: Any, inv: Invocation) -> Outcome:
    """Run the step body once (bounded by its timeout) and classify the result.

    The step counts as a user of the loop's branch tracker while it runs (an in-process run is
    one for its whole lifetime, so its steps find the tracker installed)."""
    loop = asyncio.get_running_loop()
    tracker = _enter(loop)
    try:
        task, wake = _start(tracker, loop, instance, spec, ctx, inv)
        try:
            await wake
            if not task.done():
                await _settle(task, inv.parking)
        except asyncio.CancelledError:
            task.cancel()  # the run was cancelled or timed out: stop the step body too
            raise
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return Suspended(list(inv.parking.calls))
        return _classify(spec, task)
    finally:
        _leave(loop, tracker)


def _start(
    tracker: BranchTracker,
    loop: asyncio.AbstractEventLoop,
    instance: Any,
    spec: StepSpec,
    ctx: Any,
    inv: Invocation,
) -> tuple[asyncio.Task[Any], asyncio.Future[None]]:
    """Start the step body as the step's root branch; the future fires when it parks a call
    or ends."""
    kwargs: dict[str, Any] = {spec.event_param: inv.event}  # by name: any parameter order
    if spec.takes_ctx:
        kwargs[spec.ctx_param] = ctx
    if not (spec.resources or spec.sync):  # the common case pays for neither
        coro = spec.fn(**kwargs) if spec.free else spec.fn(instance, **kwargs)
    else:  # resources resolved first, a sync body run on a thread
        coro = call_step(instance, spec, kwargs)
    if spec.options.timeout is not None:
        coro = asyncio.wait_for(_own_timeouts(coro), spec.options.timeout)
    task: asyncio.Task[Any] = loop.create_task(coro)  # type: ignore[arg-type]
    tracker.paths[task] = ["", 0]
    parking = inv.parking
    parking.calls = []
    parking.wake = wake = loop.create_future()

    def _wake(_: object) -> None:
        if not wake.done():
            wake.set_result(None)

    task.add_done_callback(_wake)
    return task, wake


async def _settle(task: asyncio.Task[Any], parking: Parking) -> None:
    """Give siblings in a gather ``_SETTLE_TICKS`` quiet loop ticks to park their calls too."""
    seen, quiet = len(parking.calls), 0
    while quiet < _SETTLE_TICKS and not task.done():
        await asyncio.sleep(0)
        quiet = quiet + 1 if len(parking.calls) == seen else 0
        seen = len(parking.calls)


class _RaisedTimeout(Exception):
    """A TimeoutError the step body raised itself, kept apart from its ``timeout`` firing."""

    def __init__(self, error: TimeoutError) -> None:
        super().__init__(str(error))
        self.error = error


async def _own_timeouts(coro: Awaitable[Any]) -> Any:
    try:
        return await coro
    except TimeoutError as exc:
        raise _RaisedTimeout(exc) from None


def _classify(spec: StepSpec, task: asyncio.Task[Any]) -> Outcome:
    if task.cancelled():
        return Failed(asyncio.CancelledError())
    exc = task.exception()
    if isinstance(exc, _RaisedTimeout):
        return Failed(exc.error)  # the step's own TimeoutError, as it raised it
    if isinstance(exc, TimeoutError) and spec.options.timeout is not None:
        return Failed(_timeout(spec))
    if exc is not None:
        return Failed(exc)
    try:
        return Completed(normalize_output(task.result()))
    except Exception as err:
        return Failed(err)


def _timeout(spec: StepSpec) -> WorkflowTimeoutError:
    return WorkflowTimeoutError(
        f"step {spec.qualname} timed out after {spec.options.timeout}s", step=spec.qualname
    )

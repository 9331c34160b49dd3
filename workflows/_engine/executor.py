"""Runs one step invocation and reports how it ended: completed, suspended or failed.

A step suspends when it awaits something the runtime cannot answer yet (a distributed tool
call, a child workflow, an external event). The runtime registers the call and parks the
awaiting coroutine; once the step can make no more progress, it is cancelled and reported as
suspended with every call it started — so calls awaited together with ``asyncio.gather``
are dispatched together. The step is later replayed from its journal.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from typing import Any

from workflows._engine.core import Emitted, normalize_output
from workflows._engine.runtime import Invocation
from workflows.errors import WorkflowTimeoutError
from workflows.step import StepSpec

_SETTLE_TICKS = 3

# Branch paths of a step's asyncio tasks: "" for the step itself, "0", "1", ... for the tasks it
# creates (an asyncio.gather's branches), "0/0" for theirs. Call ids and effect numbers are
# counted per branch, so a replay maps every answer to the same await even when branches
# interleave differently (a journaled call returns at once, where the first run waited).
_branches: weakref.WeakKeyDictionary[asyncio.Task[Any], list[Any]] = weakref.WeakKeyDictionary()


def branch_path() -> str:
    """The current task's branch path within its step ("" outside any step)."""
    task = asyncio.current_task()
    entry = _branches.get(task) if task is not None else None
    return str(entry[0]) if entry is not None else ""


def _track_branches(loop: asyncio.AbstractEventLoop) -> None:
    """Install (once per loop) a task factory that gives new tasks a path under their creator."""
    if getattr(loop, "_baton_branches", False):
        return
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        parent = asyncio.current_task(loop)
        task: asyncio.Task[Any] = (
            previous(loop, coro, **kwargs)  # type: ignore[assignment]
            if previous is not None
            else asyncio.Task(coro, loop=loop, **kwargs)
        )
        entry = _branches.get(parent) if parent is not None else None
        if entry is not None:
            path, index = entry
            entry[1] = index + 1
            _branches[task] = [f"{path}/{index}" if path else str(index), 0]
        return task

    loop.set_task_factory(factory)
    loop._baton_branches = True  # type: ignore[attr-defined]


@dataclass
class Completed:
    emitted: Emitted


@dataclass
class Failed:
    error: BaseException


@dataclass
class Suspended:
    calls: list[Any] = field(default_factory=list)


Outcome = Completed | Failed | Suspended


class Parking:
    """Where a runtime parks calls it cannot answer yet, and how the executor notices."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.wake: asyncio.Future[None] | None = None

    async def park(self, call: Any) -> Any:
        """Register ``call`` and wait forever (the step is cancelled and replayed later)."""
        self.calls.append(call)
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)
        await asyncio.get_running_loop().create_future()


async def execute(
    instance: Any, spec: StepSpec, ctx: Any, inv: Invocation, parking: Parking | None
) -> Outcome:
    """Run the step body once (bounded by its timeout) and classify the result."""
    inv.parking = parking
    kwargs: dict[str, Any] = {spec.event_param: inv.event}  # by name: any parameter order
    if spec.takes_ctx:
        kwargs[spec.ctx_param] = ctx
    coro = spec.fn(instance, **kwargs)
    if spec.options.timeout is not None:
        coro = asyncio.wait_for(coro, spec.options.timeout)
    if parking is None:
        return await _plain(spec, coro)
    loop = asyncio.get_running_loop()
    _track_branches(loop)
    task: asyncio.Task[Any] = loop.create_task(coro)  # type: ignore[arg-type]
    _branches[task] = ["", 0]
    parking.wake = wake = loop.create_future()

    def _wake(_: object) -> None:
        if not wake.done():
            wake.set_result(None)

    task.add_done_callback(_wake)
    try:
        await wake
        if not task.done():
            await _settle(task, parking)
    except asyncio.CancelledError:
        task.cancel()  # the run was cancelled or timed out: stop the step body too
        raise
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return Suspended(list(parking.calls))
    return _classify(spec, task)


async def _plain(spec: StepSpec, coro: Any) -> Outcome:
    try:
        return Completed(normalize_output(await coro))
    except TimeoutError:
        return Failed(_timeout(spec))
    except Exception as exc:
        return Failed(exc)


async def _settle(task: asyncio.Task[Any], parking: Parking) -> None:
    """Let siblings in a gather register their calls before the step is parked."""
    seen, quiet = len(parking.calls), 0
    while quiet < _SETTLE_TICKS and not task.done():
        await asyncio.sleep(0)
        quiet = quiet + 1 if len(parking.calls) == seen else 0
        seen = len(parking.calls)


def _classify(spec: StepSpec, task: asyncio.Task[Any]) -> Outcome:
    if task.cancelled():
        return Failed(asyncio.CancelledError())
    exc = task.exception()
    if isinstance(exc, TimeoutError):
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

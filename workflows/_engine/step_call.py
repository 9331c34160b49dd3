"""Calling a step body that needs more than ``await fn(**kwargs)``: resources resolved first,
and a sync (``def``) body run on a worker thread so it does not block the event loop.

A sync step gets a :class:`SyncContext` in place of its Context. The Context is not
thread-safe, so the proxy runs each call on the loop's thread and waits for it there. A sync
body is one branch (path ""): its effects are numbered in the order it makes them, the same on
every run. Async Context methods cannot be awaited from a thread; using one says so.

A thread cannot be killed: past the step's timeout, or when its run is cancelled, the step
fails (or is retried) at once while the body runs on, cut off from the run (its next Context
call raises ``CancelledError``) and its result discarded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from workflows.errors import WorkflowDefinitionError
from workflows.resource import manager_for

if TYPE_CHECKING:
    from workflows.context import Context
    from workflows.events import Event
    from workflows.step import StepSpec

R = TypeVar("R")


async def call_step(instance: Any, spec: StepSpec, kwargs: dict[str, Any]) -> Any:
    """Run the step body with its resources, on a thread when it is sync."""
    if spec.resources:
        kwargs.update(await _resources(instance, spec))
    args = () if spec.free else (instance,)
    if not spec.sync:
        return await spec.fn(*args, **kwargs)
    if not spec.takes_ctx:
        return await asyncio.to_thread(spec.fn, *args, **kwargs)
    proxy = kwargs[spec.ctx_param] = SyncContext(kwargs[spec.ctx_param], spec.qualname)
    try:
        return await asyncio.to_thread(spec.fn, *args, **kwargs)
    finally:
        proxy.close()


async def _resources(instance: Any, spec: StepSpec) -> dict[str, Any]:
    manager = manager_for(instance)
    ready = manager.ready(spec.resources)
    if ready is not None:
        return ready
    # built on a task that is no branch of the step: a factory's own tasks must not shift the
    # step's branch numbering, which a later run (with the resource cached) would not repeat
    from workflows._engine.executor import create_untracked_task  # it imports this module

    resolved: dict[str, Any] = await create_untracked_task(manager.resolve(spec.resources))
    return resolved


class SyncContext:
    """The Context of a sync step: its sync methods and properties, each run on the loop's
    thread (safe to use from the step's thread); its async ones refused."""

    def __init__(self, ctx: Context, step: str) -> None:
        self._ctx = ctx
        self._step = step
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._closed = False

    @property
    def run_id(self) -> str:
        return self._ctx.run_id

    @property
    def attempt(self) -> int:
        return self._ctx.attempt

    def send_event(self, event: Event, step: str | None = None) -> None:
        """Emit an event into the run (to ``step`` only, when named)."""
        self._on_loop(self._ctx.send_event, event, step)

    def write_event_to_stream(self, event: Event) -> None:
        """Publish an event to the run's stream."""
        self._on_loop(self._ctx.write_event_to_stream, event)

    def collect_events(
        self, event: Event, expected: list[type[Event]], buffer_id: str | None = None
    ) -> list[Event] | None:
        """Buffer ``event``; the events matching ``expected`` once all are in, else None."""
        return self._on_loop(self._ctx.collect_events, event, expected, buffer_id)

    def close(self) -> None:
        """The step has ended (on the loop's thread): later calls are refused."""
        self._closed = True

    def _on_loop(self, fn: Callable[..., R], *args: Any) -> R:
        """Run ``fn(*args)`` on the loop's thread and wait for its result."""
        if self._closed:
            raise self._ended()
        if threading.get_ident() == self._loop_thread:  # waiting here would block the loop
            return fn(*args)
        done: concurrent.futures.Future[R] = concurrent.futures.Future()

        def call() -> None:
            if self._closed:  # checked on the loop: the step may have ended since the call
                done.set_exception(self._ended())
                return
            try:
                done.set_result(fn(*args))
            except BaseException as exc:
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(call)
        return done.result()

    def _ended(self) -> asyncio.CancelledError:
        return asyncio.CancelledError(
            f"step {self._step} has ended (timed out, or its run ended or was cancelled): "
            "its sync body can no longer reach the run"
        )

    def __getattr__(self, name: str) -> Any:
        """The Context's other sync members (``retry_info()``, ...), also run on the loop; an
        async one (``call_tool``, the ``store``) is refused, saying why."""
        if name.startswith("_"):
            raise AttributeError(name)
        value = self._on_loop(getattr, self._ctx, name)
        if name == "store" or inspect.iscoroutinefunction(value):
            raise WorkflowDefinitionError(
                f"{self._step} is a sync step: it cannot await ctx.{name}"
                f"{'' if name == 'store' else '()'}; make it `async def` (a sync step has the "
                "Context's sync methods: send_event, write_event_to_stream, collect_events, ...)"
            )
        if not callable(value):
            return value
        return functools.partial(self._on_loop, value)

"""The Context a step receives: the same API in-process and distributed.

Every call that waits for the world (tools, child workflows, external events, store reads,
fan-in) gets a deterministic call id from its position in the step and is journaled, so a step
that is resumed or redelivered replays to where it was without repeating anything. Effects
(``send_event``, stream writes, store writes) are numbered the same way and applied once.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import math
import time
import typing
from typing import Any, Generic

from pydantic import BaseModel
from typing_extensions import TypeVar

from workflows._engine.backend import Invocation, StepBackend
from workflows._engine.core import arrange, check_target
from workflows._engine.executor import branch_path
from workflows._engine.records import Effect, EffectKind
from workflows.codec import class_path, decode_event, from_data
from workflows.context.state_store import (
    DictState,
    RunState,
    RunStore,
    S,
    StepStore,
    Store,
)
from workflows.errors import (
    ChildWorkflowError,
    ContextSerdeError,
    ErrorInfo,
    PayloadError,
    ToolError,
    UnknownWorkflowError,
    WorkflowDefinitionError,
)
from workflows.events import Event, StartEvent
from workflows.retry import RetryInfo
from workflows.step import Mode
from workflows.tools import get_tool, tool_error_from_info
from workflows.workflow import get_workflow

E = TypeVar("E", bound=Event)
CONTEXT_VERSION = 1


class ToolResult(BaseModel):
    """A tool call's outcome as data: the value, or the error."""

    ok: bool
    value: Any = None
    error: ErrorInfo | None = None


class Context(Generic[S]):
    """What a step uses to reach its run: store, events, tools, child workflows.

    Built by the user as ``Context(workflow)``, it is a run's memory: give it to
    ``workflow.run(ctx=ctx)`` again and again and the store carries over (a chat's history);
    ``to_dict()`` / ``Context.from_dict()`` save and restore it, a run paused for input
    included. Steps receive their own Context, with the same store.
    """

    def __init__(self, workflow: Any, invocation: Invocation | None = None) -> None:
        self._seq: dict[str, int] = {}
        self._fx: dict[str, int] = {}
        self._run: Any = None
        self._store: Store[S] | None = None
        self._paused: dict[str, Any] | None = None
        if invocation is not None:  # a step's: built by the runtime with its backend
            self._backend: StepBackend | None = workflow
            self._inv: Invocation | None = invocation
            return
        self._backend, self._inv = None, None  # the user's Context(workflow)
        self._workflow = workflow
        self._state = RunState(state_type_of(type(workflow)))
        self._store = RunStore(self._state)

    @property
    def store(self) -> Store[S]:
        """The run's state (built on first use: most steps never touch it)."""
        store = self._store
        if store is None:
            backend = self._step_backend
            store = self._store = StepStore(self, backend.state_type)
        return store

    @property
    def _step_backend(self) -> StepBackend:
        if self._backend is None:
            raise RuntimeError("only a step's Context reaches the runtime; this one is a run's")
        return self._backend

    @property
    def _invocation(self) -> Invocation:
        if self._inv is None:
            raise RuntimeError("only a step's Context reaches the runtime; this one is a run's")
        return self._inv

    # --- a run's Context: memory across runs ---------------------------------------------

    def to_dict(self, serializer: Any = None) -> dict[str, Any]:
        """This context as JSON data: the store, and a run paused waiting for input (continued
        by ``workflow.run(ctx=Context.from_dict(workflow, data))``)."""
        del serializer  # accepted for LlamaIndex compatibility: the codec is Baton's own
        from workflows._engine.handler import paused_run_data

        if self._inv is not None:
            raise RuntimeError("to_dict() is for a run's Context (handler.ctx), not a step's")
        paused = self._paused if self._run is None else paused_run_data(self._run)
        return context_data(
            type(self._workflow).name, self._state.state_type, self._state.data, paused
        )

    @classmethod
    def from_dict(cls, workflow: Any, data: dict[str, Any], serializer: Any = None) -> Context[S]:
        """A context restored from :meth:`to_dict` (also ``RunHandle.context()`` of a
        distributed run); malformed data is InvalidInputError."""
        del serializer
        ctx: Context[S] = cls(workflow)
        ctx._state.data, ctx._paused = read_context_data(data, type(workflow).name)
        return ctx

    @property
    def is_running(self) -> bool:
        """A run given this context is still going (a step's: always, while the step runs)."""
        if self._inv is not None:
            return True
        return self._run is not None and not self._run.done.done()

    @property
    def run_id(self) -> str:
        if self._backend is None:
            if self._run is None:
                raise RuntimeError("this Context has not been given to a run yet")
            return str(self._run.run_id)
        return self._backend.run_id

    @property
    def attempt(self) -> int:
        """This step's attempt number (1 on the first try)."""
        return self._invocation.attempt

    def _next_call_id(self) -> str:
        """``<invocation>.<n>``: the n-th call of the step's branch (see ``branch_path``)."""
        path = branch_path()
        n = self._seq[path] = self._seq.get(path, 0) + 1
        return f"{self._invocation.id}.{path}.{n}" if path else f"{self._invocation.id}.{n}"

    def _effect(self, kind: EffectKind, event: Event, step: str | None = None) -> None:
        path = branch_path()
        n = self._fx.get(path, 0)
        self._fx[path] = n + 1
        if n >= self._invocation.effects_done.get(path, 0):
            self._step_backend.effect(self._invocation, Effect(f"{path}:{n}", kind, event, step))
            self._invocation.effects_done[path] = n + 1

    def _effect_slot(self, kind: str) -> tuple[str, int] | None:
        """The next effect of ``kind`` on this branch (store writes are numbered apart from
        events); None when an earlier run of the step applied it, so a replay skips it."""
        path = kind + branch_path()
        n = self._fx.get(path, 0)
        self._fx[path] = n + 1
        return None if n < self._invocation.effects_done.get(path, 0) else (path, n)

    def _effect_done(self, slot: object) -> None:
        """Record the effect at ``slot`` as applied (after it succeeded: a failed write is
        not skipped by the retry)."""
        path, n = typing.cast(tuple[str, int], slot)
        self._invocation.effects_done[path] = n + 1

    def send_event(self, event: Event, step: str | None = None) -> None:
        """Emit an event into the run (to ``step`` only, when named): the fan-out primitive.
        On a run's Context (``handler.ctx``) it answers a waiting step or routes the event."""
        if self._backend is None:
            if self._run is None:
                raise RuntimeError("this Context has not been given to a run yet")
            self._run.deliver(event, step)
            return
        if step is not None:
            check_target(self._step_backend.spec, step, type(event))
        self._effect(EffectKind.SEND, event, step)

    def write_event_to_stream(self, event: Event) -> None:
        """Publish an event to the run's stream without routing it to steps."""
        self._effect(EffectKind.STREAM, event)

    def collect_events(
        self, event: Event, expected: list[type[Event]], buffer_id: str | None = None
    ) -> list[Event] | None:
        """Buffer ``event``; return the events matching ``expected`` once all are in, else None.

        Decided atomically by the runtime, so exactly one invocation receives the full set.
        """
        call_id = self._next_call_id()
        self._invocation.consumed.add(call_id)
        entry = self._invocation.journal.get(call_id)
        if entry is None:
            tags, key = _tags(expected)
            buffer = buffer_id or f"{self._invocation.step}:{key}"
            got = self._step_backend.collect(self._invocation, call_id, buffer, event, tags)
            return got
        if entry.value is None:
            return None
        return arrange([decode_event(e) for e in entry.value], _tags(expected)[0])

    async def call_tool(self, name: str, /, **kwargs: Any) -> Any:
        """Call a registered tool; its failure raises ToolError (type, message, attempts), also
        an instance of the tool exception's class (``except KeyError`` works)."""
        spec = get_tool(name)
        call_id = self._next_call_id()
        entry = self._invocation.journal.get(call_id)
        if entry is None:
            return await self._step_backend.call_tool(self._invocation, call_id, spec, kwargs)
        if entry.failed:
            raised = self._invocation.raised.get(call_id)  # in-process: as it was first raised
            if raised is not None:
                raise copy.copy(raised)
            raise tool_error_from_info(entry.error_info())
        return from_data(entry.value)

    async def try_tool(self, name: str, /, **kwargs: Any) -> ToolResult:
        """Like call_tool, but a failure comes back as data instead of an exception."""
        try:
            return ToolResult(ok=True, value=await self.call_tool(name, **kwargs))
        except ToolError as exc:
            return ToolResult(ok=False, error=exc.to_info(exc.attempts))

    async def run_workflow(
        self,
        workflow: Any,
        start_event: StartEvent | None = None,
        /,
        *,
        mode: Mode | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run a child workflow and return its result; its failure raises ChildWorkflowError."""
        name = workflow if isinstance(workflow, str) else getattr(workflow, "name", "")
        cls = get_workflow(name)
        if cls is None:
            raise UnknownWorkflowError(f"no workflow named {name!r}")
        start = cls.make_start_event(start_event, **kwargs)  # one its start step takes
        call_id = self._next_call_id()
        entry = self._invocation.journal.get(call_id)
        if entry is None:
            return await self._step_backend.run_child(self._invocation, call_id, name, start, mode)
        if entry.failed:
            raise ChildWorkflowError.of(name, entry.error_info())
        return from_data(entry.value)

    async def wait_for_event(
        self,
        event_type: type[E],
        waiter_event: Event | None = None,
        waiter_id: str | None = None,
        requirements: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> E:
        """Pause until an event of ``event_type`` (matching ``requirements``) is sent to the run.

        ``waiter_event`` is published to the stream (and the root run's stream) so a human or
        another system knows what is asked. No worker is held while the run waits.
        """
        del waiter_id, timeout  # accepted for LlamaIndex compatibility
        call_id = self._next_call_id()
        entry = self._invocation.journal.get(call_id)
        if entry is None:
            answer = await self._step_backend.wait_event(
                self._invocation, call_id, event_type, waiter_event, dict(requirements or {})
            )
            return answer  # type: ignore[return-value]  # the runtime matched event_type
        event = decode_event(entry.value)
        if not isinstance(event, event_type):
            raise PayloadError(f"expected {event_type.__name__}, got {type(event).__name__}")
        return event

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, durably. In-process an asyncio sleep, journaled with its wake-up
        time (a step restored from a snapshot sleeps only what is left); distributed a timer in
        Redis: the step suspends, its worker is freed, and it resumes once due — across
        restarts of every worker and of Redis. A replay never sleeps again."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"ctx.sleep() takes a finite number of seconds >= 0, not {seconds!r}")
        call_id = self._next_call_id()
        entry = self._invocation.journal.get(call_id)
        if entry is not None:
            # distributed: the timer answered (None); in-process: the wake-up time
            left = 0.0 if entry.value is None else float(entry.value) - time.time()
            if left > 0:
                await asyncio.sleep(left)
            return
        if seconds > 0:
            await self._step_backend.sleep(self._invocation, call_id, float(seconds))

    def retry_info(self) -> RetryInfo:
        """This step's retry state (LlamaIndex's): retry number (0 on the first attempt) and
        seconds since its first attempt began, in both runtimes; ``last_exception`` and
        ``last_failed_at`` are None (the step's error is in the run's log, as a retry entry)."""
        inv = self._invocation
        return RetryInfo.of_attempt(inv.attempt, inv.first_started)


def _tags(expected: list[type[Event]]) -> tuple[list[str], str]:
    """The expected type tags, and the buffer key naming their distinct tags.

    Runs on every fan-in arrival: a list of one class (``[Done] * n``) is handled without a
    Python-level loop, which keeps the cost per step flat as the fan-in widens.
    """
    if expected and expected.count(expected[0]) == len(expected):
        tag = expected[0].type_tag
        return [tag] * len(expected), tag
    tags = [e.type_tag for e in expected]
    return tags, ",".join(sorted(set(tags)))


def context_data(
    workflow: str,
    state_type: type[BaseModel] | None,
    data: dict[str, Any],
    paused: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A context as JSON data: what ``Context.to_dict()`` and ``RunHandle.context()`` give."""
    return {
        "version": CONTEXT_VERSION,
        "workflow": workflow,
        "state": {
            "type": None if state_type is None else class_path(state_type),
            "data": json.loads(json.dumps(data)),  # a copy, and proof that it is JSON
        },
        "paused": paused,
    }


def read_context_data(data: Any, workflow: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The store data and paused run of :func:`context_data` output, checked: data of another
    workflow or another shape is one ContextSerdeError saying what is wrong."""
    try:
        if data.get("version") != CONTEXT_VERSION:
            raise ContextSerdeError(f"unsupported context version {data.get('version')!r}")
        if data["workflow"] != workflow:
            raise ContextSerdeError(f"the context is of {data['workflow']}, not {workflow}")
        stored, paused = data["state"]["data"], data.get("paused")
    except (KeyError, TypeError, AttributeError) as exc:
        raise ContextSerdeError(f"malformed context data: {exc!r}") from exc
    if not isinstance(stored, dict) or not (paused is None or isinstance(paused, dict)):
        raise ContextSerdeError("malformed context data: 'state.data' must be an object")
    return dict(stored), paused


def state_type_of(workflow: type[Any]) -> type[BaseModel] | None:
    """The state model a workflow's steps declare with ``ctx: Context[MyState]`` (None: none
    does). Steps that declare different ones are a WorkflowDefinitionError."""
    return _state_type(tuple(s.fn for s in workflow.spec.steps.values()), workflow.name)


@functools.lru_cache(maxsize=512)
def _state_type(fns: tuple[Any, ...], workflow: str) -> type[BaseModel] | None:
    found: set[type[BaseModel]] = set()
    for fn in fns:
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # reported by the step's own checks
            continue
        for hint in hints.values():
            args = typing.get_args(hint)
            if typing.get_origin(hint) is Context and args and isinstance(args[0], type):
                found.add(args[0])
    found.discard(DictState)
    if len(found) > 1:
        names = ", ".join(sorted(t.__name__ for t in found))
        raise WorkflowDefinitionError(f"{workflow}: steps declare different state types ({names})")
    return next(iter(found), None)

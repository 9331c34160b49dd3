"""The Context a step receives: the same API in-process and distributed.

Every call that waits for the world (tools, child workflows, external events, store reads,
fan-in) gets a deterministic call id from its position in the step and is journaled, so a step
that is resumed or redelivered replays to where it was without repeating anything. Effects
(``send_event``, stream writes) are numbered the same way and applied once.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import typing
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from typing import Any, Generic

from pydantic import BaseModel, ConfigDict, ValidationError
from typing_extensions import TypeVar

from workflows._engine.backend import MISSING, Invocation, StepBackend, StoreEdit
from workflows._engine.core import arrange
from workflows._engine.executor import branch_path
from workflows._engine.records import Effect, EffectKind, EntryKind, JournalEntry
from workflows.codec import TAG, class_path, decode_event, from_data, to_data
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


class DictState(BaseModel):
    """The state of a workflow that declares no state type: any keys, read as attributes or
    items (LlamaIndex's ``DictState``)."""

    model_config = ConfigDict(extra="allow")

    def __getitem__(self, key: str) -> Any:
        extra = self.model_extra or {}
        if key not in extra:
            raise KeyError(key)
        return extra[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if self.__pydantic_extra__ is None:
            self.__pydantic_extra__ = {}
        self.__pydantic_extra__[key] = value  # an item, even named like a model method

    def __delitem__(self, key: str) -> None:
        del (self.model_extra or {})[key]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in (self.model_extra or {})

    def get(self, key: str, default: Any = None) -> Any:
        """The value of key ``key`` (never a model attribute of the same name)."""
        return (self.model_extra or {}).get(key, default)


S = TypeVar("S", bound=BaseModel, default=DictState)
_WRITES = "w:"  # the effect counters of store writes, per branch (see Context._first_time)
_EDITING: ContextVar[object | None] = ContextVar("baton_editing_state", default=None)


class Store(Generic[S]):
    """A run's state: top-level keys holding typed values (``to_data``), read and written by
    dotted paths, or as one state model (``Context[MyState]``; ``DictState`` without one).

    Each key is written atomically; ``edit_state`` is the atomic read-modify-write, against
    steps running at once in-process or on other workers. The raw operations are the
    subclass's: a step's store journals its reads, a run context's reads its run's memory.
    """

    def __init__(self, state_type: type[BaseModel] | None) -> None:
        self._type = state_type

    # --- raw operations on data (to_data values), per subclass -----------------------------

    async def _read(self, path: str) -> Any:
        raise NotImplementedError

    async def _read_all(self) -> dict[str, Any]:
        raise NotImplementedError

    async def _read_now(self, key: str) -> Any:
        """An unjournaled read, for a write that changes part of a key."""
        raise NotImplementedError

    async def _write(self, key: str, data: Any) -> None:
        raise NotImplementedError

    async def _remove(self, keys: list[str] | None) -> None:
        raise NotImplementedError

    def _edit(self) -> AbstractAsyncContextManager[StoreEdit]:
        raise NotImplementedError

    def _owner(self) -> object:
        raise NotImplementedError

    # --- the API --------------------------------------------------------------------------

    @property
    def state_type(self) -> type[BaseModel]:
        return self._type or DictState

    async def get(self, path: str, default: Any = MISSING) -> Any:
        """The value at ``path``; a missing key without a default raises ValueError (a typed
        state's field reads its default until it is set)."""
        data = await self._read(path)
        value = from_data(data) if data is not MISSING else self._field_default(path)
        if value is MISSING:
            if default is MISSING:
                raise ValueError(f"no value in the store at {path!r}")
            return default
        return value

    async def set(self, path: str, value: Any) -> None:
        """Set ``path`` to ``value`` (dotted paths create nested objects); a typed state takes
        only its own fields."""
        self._check_writable("set")
        head, _, rest = path.partition(".")
        self._check_field(head)
        data = to_data(value)
        if rest:
            current = await self._read_now(head)
            if current is MISSING:
                default = self._field_default(head)
                current = {} if default is MISSING else to_data(default)
            container = _container(current)
            _assign(container, rest, data)
            data = current if _is_tagged_model(current) else container
        await self._write(head, data)

    async def delete(self, key: str) -> None:
        """Remove a top-level key (a typed state's field reads its default again)."""
        self._check_writable("delete")
        await self._remove([key])

    async def get_state(self) -> S:
        """The state as its model (``DictState`` when the workflow declares no state type)."""
        return self._build(await self._read_all())

    async def set_state(self, state: S) -> None:
        """Write every field of ``state`` (keys it does not name are kept)."""
        self._check_writable("set_state")
        if not isinstance(state, self.state_type):
            raise ValueError(
                f"set_state takes a {self.state_type.__name__}, not {type(state).__name__}"
            )
        for key, data in _state_data(state).items():
            await self._write(key, data)

    async def clear(self) -> None:
        """Reset the state: every key removed, typed fields back to their defaults."""
        self._check_writable("clear")
        await self._remove(None)

    @asynccontextmanager
    async def edit_state(self) -> AsyncIterator[S]:
        """Edit the state as its model; the changes are committed when the block ends, as one
        atomic step against every other ``edit_state`` of the run. An exception in the block
        discards them. Inside the block, change the model, not the store."""
        self._check_writable("edit_state")
        async with self._edit() as edit:
            state = self._build(edit.data)
            token = _EDITING.set(self._owner())
            try:
                yield state
            finally:
                _EDITING.reset(token)
            after = _state_data(state)
            changed = {k: v for k, v in after.items() if edit.data.get(k, MISSING) != v}
            # keys a DictState lost in the block are removed (a typed state keeps its fields)
            removed = [k for k in edit.data if k not in after] if self._type is None else []
            await edit.commit(changed, removed)

    # --- helpers --------------------------------------------------------------------------

    def _build(self, data: dict[str, Any]) -> S:
        values = {k: from_data(v) for k, v in data.items()}
        try:
            return self.state_type.model_validate(values)  # type: ignore[return-value]
        except ValidationError as exc:
            raise PayloadError(
                f"the store does not hold a valid {self.state_type.__name__}: {exc}"
            ) from exc

    def _field_default(self, path: str) -> Any:
        head, _, rest = path.partition(".")
        field = self._type.model_fields.get(head) if self._type is not None else None
        if field is None or field.is_required():
            return MISSING
        value = field.get_default(call_default_factory=True)
        return _descend(to_data(value), rest) if rest else value

    def _check_field(self, key: str) -> None:
        if self._type is not None and key not in self._type.model_fields:
            raise ValueError(f'"{self._type.__name__}" object has no field "{key}"')

    def _check_writable(self, what: str) -> None:
        if _EDITING.get() is self._owner():
            raise RuntimeError(
                f"store.{what}() inside edit_state(): change the state object the block "
                "gives you instead (it is written when the block ends)"
            )


class StepStore(Store[S]):
    """The store as a step sees it: reads are journaled, so a replayed step reads what its
    first run read; an ``edit_state`` block that committed is not applied again."""

    def __init__(self, ctx: Context[Any], state_type: type[BaseModel] | None) -> None:
        super().__init__(state_type)
        self._ctx = ctx

    def _journaled(self) -> tuple[str, JournalEntry | None]:
        call_id = self._ctx._next_call_id()
        return call_id, self._ctx._invocation.journal.get(call_id)

    async def _read(self, path: str) -> Any:
        call_id, entry = self._journaled()
        if entry is None:
            head, _, rest = path.partition(".")
            data = await self._ctx._step_backend.store_get(head)
            data = _descend(data, rest) if rest and data is not MISSING else data
            entry = JournalEntry.ok(data) if data is not MISSING else JournalEntry.missing()
            self._ctx._invocation.journal[call_id] = entry
        return MISSING if entry.kind is EntryKind.MISSING else entry.value

    async def _read_all(self) -> dict[str, Any]:
        call_id, entry = self._journaled()
        if entry is None:
            entry = JournalEntry.ok(await self._ctx._step_backend.store_all())
            self._ctx._invocation.journal[call_id] = entry
        return dict(entry.value)

    async def _read_now(self, key: str) -> Any:
        return await self._ctx._step_backend.store_get(key)

    async def _write(self, key: str, data: Any) -> None:
        if self._ctx._first_time(_WRITES):
            await self._ctx._step_backend.store_set(key, data)

    async def _remove(self, keys: list[str] | None) -> None:
        if self._ctx._first_time(_WRITES):
            await self._ctx._step_backend.store_delete(keys)

    @asynccontextmanager
    async def _edit(self) -> AsyncIterator[StoreEdit]:
        call_id, entry = self._journaled()
        if entry is not None:  # committed by an earlier run of this step: not again
            yield StoreEdit(dict(entry.value), _no_commit)
            return
        async with self._ctx._step_backend.store_edit(self._ctx._invocation, call_id) as edit:
            yield edit

    def _owner(self) -> object:
        return self._ctx._step_backend.run_id


class RunStore(Store[S]):
    """The store of a :class:`Context` built by the user: its run's memory, directly."""

    def __init__(self, state: RunState) -> None:
        super().__init__(state.state_type)
        self._state = state

    async def _read(self, path: str) -> Any:
        head, _, rest = path.partition(".")
        data = self._state.data.get(head, MISSING)
        return _descend(data, rest) if rest and data is not MISSING else data

    async def _read_all(self) -> dict[str, Any]:
        return dict(self._state.data)

    async def _read_now(self, key: str) -> Any:
        return self._state.data.get(key, MISSING)

    async def _write(self, key: str, data: Any) -> None:
        self._state.data[key] = data

    async def _remove(self, keys: list[str] | None) -> None:
        self._state.remove(keys)

    def _edit(self) -> AbstractAsyncContextManager[StoreEdit]:
        return self._state.edit(None, "")

    def _owner(self) -> object:
        return self._state


async def _no_commit(changed: dict[str, Any], removed: list[str]) -> None:
    del changed, removed


class RunState:
    """An in-process run's store: top-level key -> ``to_data`` value. A :class:`Context` the
    user builds owns one and lends it to each run it is given, which is the memory across
    runs."""

    def __init__(self, state_type: type[BaseModel] | None) -> None:
        self.state_type = state_type
        self.data: dict[str, Any] = {}
        self._lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    def remove(self, keys: list[str] | None) -> None:
        for key in list(self.data) if keys is None else keys:
            self.data.pop(key, None)

    def _loop_lock(self) -> asyncio.Lock:
        """The edit lock of the running loop: a Context outlives the loop of one
        ``asyncio.run`` (a chat loop runs each turn in its own), an asyncio.Lock does not."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock[0] is not loop:
            self._lock = (loop, asyncio.Lock())
        return self._lock[1]

    @asynccontextmanager
    async def edit(self, inv: Invocation | None, call_id: str) -> AsyncIterator[StoreEdit]:
        """One edit at a time; the commit applies the changes and journals the data the block
        started from, which a replay of the step edits again without writing."""
        async with self._loop_lock():
            before = dict(self.data)

            async def commit(changed: dict[str, Any], removed: list[str]) -> None:
                self.data.update(changed)
                self.remove(removed)
                if inv is not None:
                    inv.journal[call_id] = JournalEntry.ok(before)

            yield StoreEdit(dict(before), commit)


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

    def _first_time(self, kind: str) -> bool:
        """Count one more effect of ``kind`` on this branch: True when no earlier run of the
        step applied it (store writes, numbered apart from events: a replay skips them)."""
        path = kind + branch_path()
        n = self._fx.get(path, 0)
        self._fx[path] = n + 1
        if n < self._invocation.effects_done.get(path, 0):
            return False
        self._invocation.effects_done[path] = n + 1
        return True

    def send_event(self, event: Event, step: str | None = None) -> None:
        """Emit an event into the run (to ``step`` only, when named): the fan-out primitive.
        On a run's Context (``handler.ctx``) it answers a waiting step or routes the event."""
        if self._backend is None:
            if self._run is None:
                raise RuntimeError("this Context has not been given to a run yet")
            self._run.deliver(event, step)
            return
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


def _descend(data: Any, path: str) -> Any:
    """The data at a dotted path inside a key's data (through models' fields too)."""
    for part in path.split("."):
        data = _container(data) if _is_tagged_model(data) else data
        if not isinstance(data, dict) or part not in data or TAG in data:
            return MISSING
        data = data[part]
    return data


def _is_tagged_model(data: Any) -> bool:
    return isinstance(data, dict) and data.get(TAG) == "model"


def _container(data: Any) -> dict[str, Any]:
    """The dict a dotted write changes: a model's fields, a plain object, or a new one."""
    if _is_tagged_model(data):
        value = data["value"]
        return value if isinstance(value, dict) else {}
    return data if isinstance(data, dict) and TAG not in data else {}


def _state_data(state: BaseModel) -> dict[str, Any]:
    """A state model as store keys: one per field (and extra key), each a typed value."""
    data = {name: to_data(getattr(state, name)) for name in type(state).model_fields}
    data.update((key, to_data(value)) for key, value in (state.model_extra or {}).items())
    return data


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


def _assign(container: dict[str, Any], path: str, value: Any) -> None:
    """Set the data at a dotted path, through plain objects and models' fields alike."""
    parts = path.split(".")
    for part in parts[:-1]:
        nxt = container.get(part)
        if not (_is_tagged_model(nxt) or (isinstance(nxt, dict) and TAG not in nxt)):
            nxt = container[part] = {}
        container = _container(nxt)
    container[parts[-1]] = value

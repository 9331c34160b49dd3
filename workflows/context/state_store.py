"""A run's store: typed values under top-level keys, a typed state model, atomic edits.

The same :class:`Store` API over two raw layers: a step's store (:class:`StepStore`) journals
its reads and numbers its writes, so a replayed step reads what its first run read and writes
nothing twice; a run's store (:class:`RunStore`, the user's ``Context(workflow)``) reads and
writes the run's memory (:class:`RunState`) directly. Values are ``codec.to_data`` data.
"""

from __future__ import annotations

import asyncio
import copy
import typing
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from typing import Any, Generic

from pydantic import BaseModel, ConfigDict, ValidationError
from typing_extensions import TypeVar

from workflows._engine.backend import MISSING, Invocation, StoreEdit
from workflows._engine.records import EntryKind, JournalEntry
from workflows.codec import TAG, from_data, to_data
from workflows.errors import PayloadError

if typing.TYPE_CHECKING:
    from workflows.context.context import Context


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
_WRITES = "w:"  # the effect counters of store writes, per branch (see Context._effect_slot)
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
        slot = self._claim()
        if slot is None:  # a replay: an earlier run of the step wrote it
            return
        if rest:
            current = await self._read_now(head)
            current = current if current is MISSING else copy.deepcopy(current)  # not in place
            if current is MISSING:
                default = self._field_default(head)
                current = {} if default is MISSING else to_data(default)
            container = _container(current)
            _assign(container, rest, data)
            data = current if _is_tagged_model(current) else container
        await self._write(head, data)
        self._claimed(slot)

    async def delete(self, key: str) -> None:
        """Remove a top-level key (a typed state's field reads its default again)."""
        self._check_writable("delete")
        await self._remove_once([key])

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
            slot = self._claim()
            if slot is not None:
                await self._write(key, data)
                self._claimed(slot)

    async def clear(self) -> None:
        """Reset the state: every key removed, typed fields back to their defaults."""
        self._check_writable("clear")
        await self._remove_once(None)

    async def _remove_once(self, keys: list[str] | None) -> None:
        slot = self._claim()
        if slot is not None:
            await self._remove(keys)
            self._claimed(slot)

    def _claim(self) -> object | None:
        """A write's place among the step's writes; None when a replay finds it applied (a
        run's store has no replays: every write is applied)."""
        return True

    def _claimed(self, slot: object) -> None:
        """The write at ``slot`` is applied (counted only once it succeeded)."""

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

    def _journaled(self, read: bool = True) -> tuple[str, JournalEntry | None]:
        call_id = self._ctx._next_call_id()
        inv = self._ctx._invocation
        if read:
            inv.store_reads.add(call_id)
        return call_id, inv.journal.get(call_id)

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
        await self._ctx._step_backend.store_set(key, data)

    async def _remove(self, keys: list[str] | None) -> None:
        await self._ctx._step_backend.store_delete(keys)

    def _claim(self) -> object | None:
        return self._ctx._effect_slot(_WRITES)

    def _claimed(self, slot: object) -> None:
        self._ctx._effect_done(slot)

    @asynccontextmanager
    async def _edit(self) -> AsyncIterator[StoreEdit]:
        call_id, entry = self._journaled(read=False)
        self._ctx._invocation.consumed.add(call_id)
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
            before = copy.deepcopy(self.data)

            async def commit(changed: dict[str, Any], removed: list[str]) -> None:
                self.data.update(changed)
                self.remove(removed)
                if inv is not None:
                    inv.journal[call_id] = JournalEntry.ok(before)

            yield StoreEdit(dict(before), commit)


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


def _assign(container: dict[str, Any], path: str, value: Any) -> None:
    """Set the data at a dotted path, through plain objects and models' fields alike."""
    parts = path.split(".")
    for part in parts[:-1]:
        nxt = container.get(part)
        if not (_is_tagged_model(nxt) or (isinstance(nxt, dict) and TAG not in nxt)):
            nxt = container[part] = {}
        container = _container(nxt)
    container[parts[-1]] = value

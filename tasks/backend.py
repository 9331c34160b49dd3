"""The Context backend inside a worker: answers from Redis, parks what must wait.

Calls to distributed tools, distributed child workflows and external events are parked: the
step is suspended and these become messages. In-process tools and children run right here.
The in-process twin is ``workflows._engine.memory.MemoryBackend``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import redis

from tasks.runtime import Runtime
from workflows._engine import core
from workflows._engine.backend import MISSING, Invocation, StoreEdit, call_tool_inline
from workflows._engine.inprocess import run_child_inline
from workflows._engine.records import (
    ChildCall,
    Effect,
    JournalEntry,
    SleepCall,
    ToolCall,
    WaitCall,
)
from workflows.codec import arguments_data, decode_event, dumps, encode_event, to_jsonable
from workflows.context import state_type_of
from workflows.errors import RunError
from workflows.events import Event
from workflows.step import Mode
from workflows.tools import ToolSpec
from workflows.workflow import Workflow

STATE_LOCK_SECONDS = 60.0  # how long an edit_state block may hold the run's state lock


class RedisBackend:
    """StepBackend for one step invocation in a worker; ``effects`` are applied by the hop."""

    def __init__(
        self,
        rt: Runtime,
        run_id: str,
        root: str,
        workflow: type[Workflow],
    ) -> None:
        self.rt = rt
        self.run_id = run_id
        self.root = root
        self.spec = workflow.spec
        self.state_type = state_type_of(workflow)
        self.effects: list[Effect] = []
        # Redis failing under one of Baton's calls from the step's code: the store is away,
        # which is no failure of the step; the step task re-raises it (the message comes back)
        # whatever the step's code did with it
        self.store_error: redis.RedisError | None = None

    @contextmanager
    def _store(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            self.store_error = exc
            raise

    async def call_tool(
        self, inv: Invocation, call_id: str, spec: ToolSpec, args: dict[str, Any]
    ) -> Any:
        if self.rt.placement.tool_mode(spec) == "inprocess":
            return await call_tool_inline(inv, call_id, spec, args, from_journal=True)
        return await inv.parking.park(ToolCall(call_id, spec.name, arguments_data(args)))

    async def run_child(
        self, inv: Invocation, call_id: str, workflow: str, start: Event, mode: Mode | None
    ) -> Any:
        if self.rt.placement.child_mode(workflow, mode) == "distributed":
            return await inv.parking.park(ChildCall(call_id, workflow, encode_event(start)))
        return await run_child_inline(inv, call_id, workflow, start, self.run_id, answerable=False)

    async def wait_event(
        self,
        inv: Invocation,
        call_id: str,
        event_type: type[Event],
        waiter_event: Event | None,
        requirements: dict[str, Any],
    ) -> Event:
        waiter = encode_event(waiter_event) if waiter_event is not None else None
        call = WaitCall(call_id, event_type.type_tag, to_jsonable(requirements), waiter)
        result: Event = await inv.parking.park(call)
        return result

    async def sleep(self, inv: Invocation, call_id: str, seconds: float) -> None:
        """A durable timer: the step parks (its worker slot is freed) and the timer's answer,
        journaled by the timer pump once due, resumes it (``tasks.timers``)."""
        await inv.parking.park(SleepCall(call_id, seconds))

    def effect(self, inv: Invocation, effect: Effect) -> None:
        self.effects.append(effect)

    def collect(
        self, inv: Invocation, call_id: str, buffer_id: str, event: Event, expected: list[str]
    ) -> list[Event] | None:
        """The COLLECT script decides (see ``tasks.scripts``) and journals the answer."""
        k = self.rt.keys
        counts: dict[str, int] = {}
        for tag in expected:
            counts[tag] = counts.get(tag, 0) + 1
        pairs = [x for tag, n in counts.items() for x in (tag, n)]
        with self._store():
            answer = self.rt.script("COLLECT")(
                keys=[
                    k.journal(self.run_id, inv.id),
                    k.buffer(self.run_id, buffer_id),
                    k.counts(self.run_id, buffer_id),
                ],
                args=[
                    call_id,
                    type(event).type_tag,
                    dumps(event),
                    self.rt.settings.retention_seconds,
                    *pairs,
                ],
            )
        entry = inv.journal[call_id] = JournalEntry.from_json(answer)
        if entry.value is None:
            return None
        return core.arrange([decode_event(e) for e in entry.value], expected)

    async def store_get(self, key: str) -> Any:
        with self._store():
            raw = self.rt.redis.hget(self.rt.keys.store(self.run_id), key)
        return MISSING if raw is None else json.loads(raw)

    async def store_all(self) -> dict[str, Any]:
        with self._store():
            raw = self.rt.redis.hgetall(self.rt.keys.store(self.run_id))
        return {key: json.loads(value) for key, value in raw.items()}

    async def store_set(self, key: str, value: Any) -> None:
        with self._store():
            self.rt.redis.hset(self.rt.keys.store(self.run_id), key, dumps(value))

    async def store_delete(self, keys: list[str] | None) -> None:
        store = self.rt.keys.store(self.run_id)
        with self._store():
            if keys is None:
                self.rt.redis.delete(store)
            elif keys:
                self.rt.redis.hdel(store, *keys)

    @asynccontextmanager
    async def store_edit(self, inv: Invocation, call_id: str) -> AsyncIterator[StoreEdit]:
        """Hold the run's state lock (a Redis key with our token, expiring, so a dead worker's
        lock frees itself) while the block edits; commit in the EDIT script, which writes only
        while the lock is still ours."""
        k = self.rt.keys
        lock, token = k.state_lock(self.run_id), uuid.uuid4().hex
        pause = 0.002
        while True:
            with self._store():
                if self.rt.redis.set(lock, token, nx=True, px=int(STATE_LOCK_SECONDS * 1000)):
                    break
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)
        committed = False

        before = await self.store_all()

        async def commit(changed: dict[str, Any], removed: list[str]) -> None:
            nonlocal committed
            entry = JournalEntry.ok(before)
            pairs = [x for key, data in changed.items() for x in (key, dumps(data))]
            with self._store():
                done = self.rt.script("EDIT")(
                    keys=[lock, k.store(self.run_id), k.journal(self.run_id, inv.id)],
                    args=[
                        token,
                        call_id,
                        entry.to_json(),
                        self.rt.settings.retention_seconds,
                        len(removed),
                        *removed,
                        *pairs,
                    ],
                )
            if not int(done):
                raise RunError(
                    f"run {self.run_id}: an edit_state block held the state lock over "
                    f"{STATE_LOCK_SECONDS:.0f}s and lost it; its changes were not written"
                )
            committed = True
            inv.journal[call_id] = entry

        try:
            yield StoreEdit(dict(before), commit)
        finally:
            if not committed:
                with self._store():
                    self.rt.script("UNLOCK")(keys=[lock], args=[token])

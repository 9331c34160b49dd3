"""The in-process StepBackend: answers a step's Context from the run's memory.

Tools and child workflows run right here; a ``wait_for_event`` parks the step until
:meth:`InProcessRun.deliver` answers it. The distributed twin is ``tasks.backend.RedisBackend``.
"""

from __future__ import annotations

import asyncio
import copy
import time
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from workflows._engine import core
from workflows._engine.backend import MISSING, Invocation, StoreEdit, call_tool_inline
from workflows._engine.records import Effect, EffectKind, JournalEntry, WaitCall
from workflows.codec import decode_event, encode_event
from workflows.errors import ConfigurationError
from workflows.events import Event

if TYPE_CHECKING:
    from workflows._engine.inprocess import InProcessRun
    from workflows.step import Mode
    from workflows.tools import ToolSpec


class MemoryBackend:
    """StepBackend for the steps of one in-process run."""

    def __init__(self, run: InProcessRun) -> None:
        self.run = run
        self.run_id = run.run_id
        self.state_type = run.state.state_type
        self.spec = run.spec

    async def call_tool(
        self, inv: Invocation, call_id: str, spec: ToolSpec, args: dict[str, Any]
    ) -> Any:
        return await call_tool_inline(inv, call_id, spec, args)

    async def run_child(
        self, inv: Invocation, call_id: str, workflow: str, start: Event, mode: Mode | None
    ) -> Any:
        from workflows._engine.inprocess import run_child_inline  # inprocess imports this module

        return await run_child_inline(inv, call_id, workflow, start, self.run_id, self.run.root)

    async def wait_event(
        self,
        inv: Invocation,
        call_id: str,
        event_type: type[Event],
        waiter_event: Event | None,
        requirements: dict[str, Any],
    ) -> Event:
        from workflows._engine.inprocess import Waiter

        run = self.run
        if not run.root.answerable:
            raise ConfigurationError(
                f"{type(run.workflow).name} waits for an event, but it runs in-process inside a "
                "worker where no event can reach it; run it as a distributed child workflow"
            )
        waiter = encode_event(waiter_event) if waiter_event is not None else None
        call = WaitCall(call_id, event_type.type_tag, requirements, waiter)
        if any(w.inv.id == inv.id and w.call_id == call_id for w in run.root.waiters):
            # a replay of a step whose other waits were answered: this one waits already
            return await inv.parking.park(call)  # type: ignore[no-any-return]
        if waiter_event is not None:
            run.log.append(waiter_event)
            run.publish(waiter_event)
        run.root.waiters.append(Waiter(run, inv, call_id, event_type, requirements, waiter_event))
        return await inv.parking.park(call)  # type: ignore[no-any-return]

    async def sleep(self, inv: Invocation, call_id: str, seconds: float) -> None:
        """An asyncio sleep, journaled first with its wake-up time (wall clock): a step
        restored from a snapshot (``Context.to_dict``) replays it and sleeps what is left."""
        inv.journal[call_id] = JournalEntry.ok(time.time() + seconds)
        await asyncio.sleep(seconds)

    def effect(self, inv: Invocation, effect: Effect) -> None:
        run = self.run
        run.log.append(effect.event)
        if effect.kind is EffectKind.STREAM:
            run.publish(effect.event)
        else:
            run.dispatch(core.route_sent(run.spec, inv.id, effect.pos, effect.event, effect.step))

    def collect(
        self, inv: Invocation, call_id: str, buffer_id: str, event: Event, expected: list[str]
    ) -> list[Event] | None:
        buffers = self.run.buffers
        buffer = buffers.setdefault(buffer_id, [])
        buffer.append((type(event).type_tag, encode_event(event)))
        chosen = None
        if len(buffer) >= len(expected):  # else not all in yet: skip the O(n) match
            chosen = core.collect_match([tag for tag, _ in buffer], expected)
        if chosen is None:
            inv.journal[call_id] = JournalEntry.ok(None)
            return None
        taken = [buffer[i][1] for i in chosen]
        used = set(chosen)
        buffers[buffer_id] = [b for i, b in enumerate(buffer) if i not in used]
        inv.journal[call_id] = JournalEntry.ok(taken)
        return [decode_event(e) for e in taken]

    async def store_get(self, key: str) -> Any:
        # a copy: the journal keeps what was read, whatever the store becomes
        value = self.run.state.data.get(key, MISSING)
        return value if value is MISSING else copy.deepcopy(value)

    async def store_all(self) -> dict[str, Any]:
        return copy.deepcopy(self.run.state.data)

    async def store_set(self, key: str, value: Any) -> None:
        self.run.state.data[key] = value

    async def store_delete(self, keys: list[str] | None) -> None:
        self.run.state.remove(keys)

    def store_edit(self, inv: Invocation, call_id: str) -> AbstractAsyncContextManager[StoreEdit]:
        return self.run.state.edit(inv, call_id)

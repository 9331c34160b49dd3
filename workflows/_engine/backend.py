"""The backend interface: what a Context needs from whichever runtime drives the run.

The in-process runtime answers from memory (``MemoryBackend``); the Celery runtime
(``tasks/``) from Redis (``RedisBackend``), suspending a step where an answer is not in yet.
Steps see only :class:`workflows.Context`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from workflows._engine.records import Effect, Journal, JournalEntry, ParkedCall
from workflows.codec import from_data
from workflows.errors import ToolError
from workflows.events import Event
from workflows.tools import tool_error_from_info

if TYPE_CHECKING:
    from pydantic import BaseModel

    from workflows._engine.graph import WorkflowSpec
    from workflows.step import Mode
    from workflows.tools import ToolSpec

MISSING: Any = object()


class Parking:
    """Where a backend parks calls it cannot answer yet, and how the executor notices."""

    def __init__(self) -> None:
        self.calls: list[ParkedCall] = []
        self.wake: asyncio.Future[None] | None = None

    async def park(self, call: ParkedCall) -> Any:
        """Register ``call`` and wait forever (the step is cancelled and replayed later)."""
        self.calls.append(call)
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)
        await asyncio.get_running_loop().create_future()


@dataclass
class Invocation:
    """One execution of one step on one input; ``id`` is stable across replays and redelivery.

    ``journal`` maps call ids to recorded answers; ``effects_done`` counts, per branch, the
    effects already applied, so a replay never applies them twice. ``first_started`` (monotonic
    seconds) is when its first attempt began, where the runtime keeps it (in-process).
    """

    id: str
    step: str
    event: Event | list[Event]
    attempt: int = 1
    journal: Journal = field(default_factory=dict)
    effects_done: dict[str, int] = field(default_factory=dict)
    parking: Parking = field(default_factory=Parking)
    first_started: float | None = None
    # in-process: tool errors as raised (a class the data cannot name included), for a replay
    raised: dict[str, ToolError] = field(default_factory=dict)

    # call ids of this execution's store reads: a retry reads the store afresh; and of its
    # fan-ins and committed edits: answers a retry keeps (the events they took are gone)
    store_reads: set[str] = field(default_factory=set)
    consumed: set[str] = field(default_factory=set)

    def forget_errors(self) -> None:
        """Before a retry: keep the calls that completed before anything the retry must do
        again, per branch — before the first failed call and the first store read (a retry
        reads the store as it is now). Later answers go too: the retry may take another path,
        and a kept answer would then answer the wrong call — but for fan-in answers and
        committed edits, which cannot be taken again. Store writes are applied again."""
        cut: dict[str, int] = {}
        for call_id, entry in self.journal.items():
            if entry.failed or call_id in self.store_reads:
                branch, n = self._position(call_id)
                cut[branch] = min(n, cut.get(branch, n))
        self.journal = {
            k: v
            for k, v in self.journal.items()
            if k in self.consumed or _before(self._position(k), cut)
        }
        self.effects_done = {k: n for k, n in self.effects_done.items() if not k.startswith("w:")}
        self.store_reads, self.consumed = set(), set()

    def _position(self, call_id: str) -> tuple[str, int]:
        """(branch, n) of a call id ``<invocation>[.<branch>].<n>``."""
        branch, _, n = call_id[len(self.id) + 1 :].rpartition(".")
        return branch, int(n) if n.isdigit() else 0


def _before(position: tuple[str, int], cut: dict[str, int]) -> bool:
    branch, n = position
    return n < cut.get(branch, n + 1)


@dataclass(frozen=True)
class StoreEdit:
    """An ``edit_state`` block's view of the store: every key's data as read under the run's
    state lock, and how to commit its changed and removed keys (journaling the data the block
    started from, so a replayed step edits that again and writes nothing)."""

    data: dict[str, Any]
    commit: Callable[[dict[str, Any], list[str]], Awaitable[None]]


class StepBackend(Protocol):
    """What a Context asks of its runtime. Store values are ``codec.to_data`` data."""

    run_id: str
    state_type: type[BaseModel] | None
    spec: WorkflowSpec

    async def call_tool(
        self, inv: Invocation, call_id: str, spec: ToolSpec, args: dict[str, Any]
    ) -> Any: ...
    async def run_child(
        self, inv: Invocation, call_id: str, workflow: str, start: Event, mode: Mode | None
    ) -> Any: ...
    async def wait_event(
        self,
        inv: Invocation,
        call_id: str,
        event_type: type[Event],
        waiter_event: Event | None,
        requirements: dict[str, Any],
    ) -> Event: ...
    async def sleep(self, inv: Invocation, call_id: str, seconds: float) -> None: ...
    def effect(self, inv: Invocation, effect: Effect) -> None: ...
    def collect(
        self, inv: Invocation, call_id: str, buffer_id: str, event: Event, expected: list[str]
    ) -> list[Event] | None: ...
    async def store_get(self, key: str) -> Any: ...
    async def store_all(self) -> dict[str, Any]: ...
    async def store_set(self, key: str, value: Any) -> None: ...
    async def store_delete(self, keys: list[str] | None) -> None: ...
    def store_edit(
        self, inv: Invocation, call_id: str
    ) -> AbstractAsyncContextManager[StoreEdit]: ...


async def call_tool_inline(
    inv: Invocation,
    call_id: str,
    spec: ToolSpec,
    args: dict[str, Any],
    from_journal: bool = False,
) -> Any:
    """Run a tool here, under its retry policy, and journal its value or its error as data.

    A step's first execution sees the error its replays will see: the one raised, kept on
    ``inv`` (in-process), or with ``from_journal`` (a worker, where a replay may run in another
    process) the one the journaled data rebuilds."""
    try:
        value = await spec.invoke(args, call_id)
    except ToolError as exc:
        info = exc.to_info(exc.attempts)
        inv.journal[call_id] = JournalEntry.error(info)
        if from_journal:
            raise tool_error_from_info(info) from exc
        inv.raised[call_id] = exc
        raise
    inv.journal[call_id] = JournalEntry.ok(value)
    return from_data(value)

"""The runtime interface: what a Context needs from whichever runtime drives the run.

The in-process runtime answers from memory; the Celery runtime (``tasks/``) from Redis,
suspending a step where an answer is not in yet. Steps see only :class:`workflows.Context`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from workflows.events import Event

if TYPE_CHECKING:
    from workflows.step import Mode
    from workflows.tools import ToolSpec

MISSING: Any = object()


@dataclass
class Invocation:
    """One execution of one step on one input; ``id`` is stable across replays and redelivery.

    ``journal`` maps call ids to recorded answers (``{"ok": v}``, ``{"error": info}``,
    ``{"event": envelope}``); ``effects_done`` counts, per branch, the effects already
    applied, so a replay never applies them twice.
    """

    id: str
    step: str
    event: Event | list[Event]
    attempt: int = 1
    journal: dict[str, Any] = field(default_factory=dict)
    effects_done: dict[str, int] = field(default_factory=dict)
    parking: Any = None

    def forget_errors(self) -> None:
        """Before a retry: keep completed calls, but let failed ones run again."""
        self.journal = {k: v for k, v in self.journal.items() if "error" not in v}


class StepBackend(Protocol):
    """What a Context asks of its runtime."""

    run_id: str

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
    def effect(
        self, inv: Invocation, pos: str, kind: str, event: Event, step: str | None
    ) -> None: ...
    def collect(
        self, inv: Invocation, call_id: str, buffer_id: str, event: Event, expected: list[str]
    ) -> list[Event] | None: ...
    async def store_get(self, key: str) -> Any: ...
    async def store_set(self, key: str, value: Any) -> None: ...
    async def store_delete(self, key: str) -> None: ...

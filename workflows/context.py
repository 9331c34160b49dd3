"""The Context a step receives: the same API in-process and distributed.

Every call that waits for the world (tools, child workflows, external events, store reads,
fan-in) gets a deterministic call id from its position in the step and is journaled, so a step
that is resumed or redelivered replays to where it was without repeating anything. Effects
(``send_event``, stream writes) are numbered the same way and applied once.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from workflows._engine.backend import MISSING, Invocation, StepBackend
from workflows._engine.core import arrange
from workflows._engine.executor import branch_path
from workflows._engine.records import Effect, EffectKind, EntryKind, JournalEntry
from workflows.codec import decode_event, to_jsonable
from workflows.errors import (
    ChildWorkflowError,
    ErrorInfo,
    PayloadError,
    ToolError,
    UnknownWorkflowError,
)
from workflows.events import Event, StartEvent
from workflows.step import Mode
from workflows.tools import get_tool, tool_error_from_info
from workflows.workflow import get_workflow

E = TypeVar("E", bound=Event)


class ToolResult(BaseModel):
    """A tool call's outcome as data: the value, or the error."""

    ok: bool
    value: Any = None
    error: ErrorInfo | None = None


class Store:
    """Run-scoped JSON state. Keys may be dotted paths (``"a.b"``)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    async def get(self, path: str, default: Any = MISSING) -> Any:
        """The value at ``path``; a missing key without a default raises ValueError."""
        call_id = self._ctx._next_call_id()
        entry = self._ctx._inv.journal.get(call_id)
        if entry is None:
            head, _, rest = path.partition(".")
            value = await self._ctx._backend.store_get(head)
            value = _descend(value, rest) if rest and value is not MISSING else value
            entry = JournalEntry.ok(value) if value is not MISSING else JournalEntry.missing()
            self._ctx._inv.journal[call_id] = entry
        if entry.kind is EntryKind.MISSING:
            if default is MISSING:
                raise ValueError(f"no value in the store at {path!r}")
            return default
        return entry.value

    async def set(self, path: str, value: Any) -> None:
        """Set ``path`` to a JSON value (dotted paths create nested objects)."""
        value = to_jsonable(value)
        head, _, rest = path.partition(".")
        if rest:
            current = await self._ctx._backend.store_get(head)
            container = current if isinstance(current, dict) else {}
            _assign(container, rest, value)
            value = container
        await self._ctx._backend.store_set(head, value)

    async def delete(self, key: str) -> None:
        await self._ctx._backend.store_delete(key)


class Context:
    """What a step uses to reach its run: store, events, tools, child workflows."""

    def __init__(self, backend: StepBackend, invocation: Invocation) -> None:
        self._backend = backend
        self._inv = invocation
        self._seq: dict[str, int] = {}
        self._fx: dict[str, int] = {}
        self.store = Store(self)

    @property
    def run_id(self) -> str:
        return self._backend.run_id

    @property
    def attempt(self) -> int:
        """This step's attempt number (1 on the first try)."""
        return self._inv.attempt

    def _next_call_id(self) -> str:
        """``<invocation>.<n>``: the n-th call of the step's branch (see ``branch_path``)."""
        path = branch_path()
        n = self._seq[path] = self._seq.get(path, 0) + 1
        return f"{self._inv.id}.{path}.{n}" if path else f"{self._inv.id}.{n}"

    def _effect(self, kind: EffectKind, event: Event, step: str | None = None) -> None:
        path = branch_path()
        n = self._fx.get(path, 0)
        self._fx[path] = n + 1
        if n >= self._inv.effects_done.get(path, 0):
            self._backend.effect(self._inv, Effect(f"{path}:{n}", kind, event, step))
            self._inv.effects_done[path] = n + 1

    def send_event(self, event: Event, step: str | None = None) -> None:
        """Emit an event into the run (to ``step`` only, when named): the fan-out primitive."""
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
        entry = self._inv.journal.get(call_id)
        if entry is None:
            tags, key = _tags(expected)
            buffer = buffer_id or f"{self._inv.step}:{key}"
            got = self._backend.collect(self._inv, call_id, buffer, event, tags)
            return got
        if entry.value is None:
            return None
        return arrange([decode_event(e) for e in entry.value], _tags(expected)[0])

    async def call_tool(self, name: str, /, **kwargs: Any) -> Any:
        """Call a registered tool; its failure raises ToolError (type, message, attempts)."""
        spec = get_tool(name)
        call_id = self._next_call_id()
        entry = self._inv.journal.get(call_id)
        if entry is None:
            return await self._backend.call_tool(self._inv, call_id, spec, kwargs)
        if entry.failed:
            raise tool_error_from_info(entry.error_info())
        return entry.value

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
        start = start_event if start_event is not None else cls.make_start_event(**kwargs)
        call_id = self._next_call_id()
        entry = self._inv.journal.get(call_id)
        if entry is None:
            return await self._backend.run_child(self._inv, call_id, name, start, mode)
        if entry.failed:
            raise ChildWorkflowError.of(name, entry.error_info())
        return entry.value

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
        entry = self._inv.journal.get(call_id)
        if entry is None:
            answer = await self._backend.wait_event(
                self._inv, call_id, event_type, waiter_event, dict(requirements or {})
            )
            return answer  # type: ignore[return-value]  # the runtime matched event_type
        event = decode_event(entry.value)
        if not isinstance(event, event_type):
            raise PayloadError(f"expected {event_type.__name__}, got {type(event).__name__}")
        return event


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


def _descend(value: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def _assign(container: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        nxt = container.get(part)
        if not isinstance(nxt, dict):
            nxt = container[part] = {}
        container = nxt
    container[parts[-1]] = value

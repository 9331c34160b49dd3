"""Test a workflow end to end, in-process, as with LlamaIndex Workflows' ``WorkflowTestRunner``:
run it, collect what it streams, and return that with the result::

    result = await WorkflowTestRunner(Greeter()).run(StartEvent(name="Ada"))
    assert result.event_types[Progress] == 2
    assert result.result == "hello Ada"
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workflows.events import Event, StartEvent

if TYPE_CHECKING:
    from workflows.context import Context
    from workflows.workflow import Workflow


@dataclass
class WorkflowTestResult:
    """A finished test run: the events it streamed, in order and ending with its StopEvent
    (``collected``); how many of each exact type (``event_types``); its ``result``, as
    ``await handler`` returns it; and the run's Context (``ctx``)."""

    collected: list[Event]
    event_types: dict[type[Event], int]
    result: Any
    ctx: Context[Any]


class WorkflowTestRunner:
    """Runs one workflow instance in-process for tests; each :meth:`run` is a new run."""

    def __init__(self, workflow: Workflow) -> None:
        self._workflow = workflow

    async def run(
        self,
        start_event: StartEvent | None = None,
        ctx: Context[Any] | None = None,
        expose_internal: bool = True,
        exclude_events: Iterable[type[Event]] | None = None,
    ) -> WorkflowTestResult:
        """Run to the end and collect the streamed events; a failed run raises its error, as
        ``await handler`` does. ``start_event`` None: the workflow's start event built with no
        fields. ``ctx``: a Context whose store the run uses (memory across runs).
        ``exclude_events``: event types (exact, not subclasses) left out of ``collected``.
        ``expose_internal`` is accepted for compatibility: Baton streams no internal events."""
        excluded = frozenset(exclude_events or ())
        handler = self._workflow.run(ctx, start_event)
        collected = [
            event
            async for event in handler.stream_events(expose_internal=expose_internal)
            if type(event) not in excluded
        ]
        result = await handler
        counts = Counter(type(event) for event in collected)
        return WorkflowTestResult(collected, dict(counts), result, handler.ctx)


__all__ = ["WorkflowTestResult", "WorkflowTestRunner"]

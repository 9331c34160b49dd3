"""The step graph of a workflow class: built and validated when the class is defined."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter
from pydantic.errors import PydanticSchemaGenerationError

from workflows.errors import WorkflowValidationError
from workflows.events import Event, InputRequiredEvent, StartEvent, StopEvent, is_external
from workflows.step import StepSpec, build_spec


@dataclass
class WorkflowSpec:
    """Steps by name and the start event type, as the engine routes them."""

    name: str
    steps: dict[str, StepSpec]
    start_event: type[StartEvent]
    _routes: dict[type[Event], tuple[StepSpec, ...]] = field(default_factory=dict)

    def steps_for(self, event_type: type[Event]) -> tuple[StepSpec, ...]:
        """Steps that accept an event of this type (memoized: routing is on the hot path)."""
        found = self._routes.get(event_type)
        if found is None:
            found = tuple(s for s in self.steps.values() if issubclass(event_type, s.accepts))
            self._routes[event_type] = found
        return found


def build_workflow_spec(name: str, namespace: dict[str, Any]) -> WorkflowSpec:
    """Collect the steps of a class namespace and validate the graph, reporting all problems."""
    steps: dict[str, StepSpec] = {}
    for attr, value in namespace.items():
        options = getattr(value, "__baton_step__", None)
        if options is not None:
            steps[attr] = build_spec(name, attr, value, options)
    problems = [p for s in steps.values() for p in s.problems]
    start_problems: list[str] = []
    start = _start_event(name, steps, start_problems)
    problems.extend(start_problems)
    if not start_problems:  # the graph can be walked even when a step's signature is wrong
        problems.extend(_graph_problems(name, steps, start))
    problems.extend(_json_problems(steps))
    if problems:
        raise WorkflowValidationError(name, problems)
    return WorkflowSpec(name, steps, start)


def _start_event(name: str, steps: dict[str, StepSpec], problems: list[str]) -> type[StartEvent]:
    starts = {t for s in steps.values() for t in s.accepts if issubclass(t, StartEvent)}
    if not steps:
        problems.append(f"{name}: has no steps")
    elif not starts:
        problems.append(f"{name}: no step accepts a StartEvent")
    elif len(starts) > 1:
        names = ", ".join(sorted(t.__name__ for t in starts))
        problems.append(f"{name}: steps accept different start events ({names})")
    return next(iter(starts)) if len(starts) == 1 else StartEvent


def _graph_problems(name: str, steps: dict[str, StepSpec], start: type[Event]) -> list[str]:
    problems: list[str] = []
    accepted = [t for s in steps.values() for t in s.accepts]
    for s in steps.values():
        for emitted in s.emits:
            if issubclass(emitted, StopEvent) or _consumed(emitted, accepted):
                continue
            problems.append(f"{s.qualname}: emits {emitted.__name__}, which no step accepts")
    reached, emitted_types = _reachable(steps, start)
    for s in steps.values():
        if s.name not in reached:
            problems.append(f"{s.qualname}: unreachable from {start.__name__}")
    if not any(issubclass(t, StopEvent) for t in emitted_types):
        problems.append(f"{name}: no path from {start.__name__} to a StopEvent")
    return problems


def _consumed(emitted: type[Event], accepted: list[type[Event]]) -> bool:
    return issubclass(emitted, InputRequiredEvent) or any(issubclass(emitted, a) for a in accepted)


def _reachable(steps: dict[str, StepSpec], start: type[Event]) -> tuple[set[str], set[type[Event]]]:
    """Steps reachable from the start event (external events count as roots)."""
    available: set[type[Event]] = {start}
    reached: set[str] = set()
    changed = True
    while changed:
        changed = False
        for s in steps.values():
            if s.name in reached:
                continue
            ok = any(issubclass(t, a) for t in available for a in s.accepts)
            if ok or all(is_external(a) for a in s.accepts):
                reached.add(s.name)
                available.update(s.emits)
                changed = True
    return reached, available


def _json_problems(steps: dict[str, StepSpec]) -> list[str]:
    problems: list[str] = []
    seen: set[type[Event]] = set()
    for s in steps.values():
        for event_type in (*s.accepts, *s.emits):
            if event_type in seen:
                continue
            seen.add(event_type)
            for fname, finfo in event_type.model_fields.items():
                try:
                    TypeAdapter(finfo.annotation or Any).json_schema(mode="serialization")
                except (PydanticSchemaGenerationError, Exception):
                    problems.append(
                        f"{s.qualname}: event {event_type.__name__} field {fname!r} "
                        f"is not JSON-serializable ({finfo.annotation!r})"
                    )
    return problems

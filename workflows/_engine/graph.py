"""The step graph of a workflow class: its steps read at definition, the graph checked on use.

A step's own signature is checked when its class is defined (or when a free function is
attached to it). The graph as a whole — one start event, every step reachable, every emitted
event taken, no dead end, a path to a StopEvent, JSON-serializable fields — is checked when the
spec is first built (``Workflow.spec``), so a base class may leave it for a subclass to finish.

Routing follows LlamaIndex: an event goes to a step that takes its exact type, or a base of it
when the step accepts subclasses (``StepSpec.accepts_type``); the checks use the same rule.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import TypeAdapter

from workflows.errors import WorkflowValidationError
from workflows.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    is_external,
)
from workflows.step import GraphCheck, StepOptions, StepSpec, build_spec

_OUTPUTS = (StopEvent, InputRequiredEvent)  # events that may leave the graph


@dataclass
class WorkflowSpec:
    """Steps by name and the start event type, as the engine routes them."""

    name: str
    steps: dict[str, StepSpec]
    start_event: type[StartEvent]
    _routes: dict[type[Event], tuple[StepSpec, ...]] = field(default_factory=dict)

    def steps_for(self, event_type: type[Event]) -> tuple[StepSpec, ...]:
        """Steps an event of this type is routed to (memoized: routing is on the hot path)."""
        found = self._routes.get(event_type)
        if found is None:
            found = tuple(s for s in self.steps.values() if s.accepts_type(event_type))
            self._routes[event_type] = found
        return found

    def starts_with(self, event_type: type[Event]) -> bool:
        """Whether a run can start with an event of this type (a start step takes it)."""
        return issubclass(event_type, StartEvent) and bool(self.steps_for(event_type))

    @property
    def uses_hitl(self) -> bool:
        """Whether a step emits an ``InputRequiredEvent`` or takes a ``HumanResponseEvent``."""
        return any(
            issubclass(t, InputRequiredEvent) for s in self.steps.values() for t in s.emits
        ) or any(issubclass(t, HumanResponseEvent) for s in self.steps.values() for t in s.accepts)


def collect_steps(workflow: str, namespace: dict[str, Any]) -> dict[str, StepSpec]:
    """The ``@step`` methods of a class namespace, read (signature problems kept on each)."""
    steps: dict[str, StepSpec] = {}
    for attr, value in namespace.items():
        options = getattr(value, "__baton_step__", None)
        if options is not None:
            steps[attr] = build_spec(workflow, attr, value, options)
    return steps


def free_step(workflow: str, fn: Callable[..., Any], options: StepOptions) -> StepSpec:
    """A free function attached with ``@step(workflow=...)``: called without an instance, so
    a ``self`` parameter could never be given (a method is defined in, or assigned into, the
    class body instead)."""
    spec = replace(build_spec(workflow, fn.__name__, fn, options), free=True)
    if "self" in inspect.signature(fn).parameters:
        spec.problems.append(
            f"{spec.qualname}: a free function step is called without an instance, so it "
            "cannot take self (define it in the class body, or assign it there, instead)"
        )
    return spec


def signature_problems(steps: Iterable[StepSpec]) -> list[str]:
    """Problems of single steps, found at definition (a graph may be finished later)."""
    return [p for s in steps for p in s.problems]


def build_workflow_spec(name: str, steps: dict[str, StepSpec]) -> WorkflowSpec:
    """Validate the graph of these steps, reporting every problem at once."""
    problems = signature_problems(steps.values())
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
    for s in steps.values():
        for emitted in s.emits:
            if not _consumed(emitted, steps):
                problems.append(f"{s.qualname}: emits {emitted.__name__}, which no step accepts")
    reached, emitted_types = _reachable(steps, start)
    for s in _checked(steps, "reachability"):
        if s.name not in reached:
            problems.append(f"{s.qualname}: unreachable from {start.__name__}")
    if not any(issubclass(t, StopEvent) for t in emitted_types):
        problems.append(f"{name}: no path from {start.__name__} to a StopEvent")
        return problems  # every step would be a dead end: the line above says it all
    ending = _reaching_an_output(steps)
    for s in _checked(steps, "dead_end"):
        if s.emits and s.name not in ending:
            problems.append(f"{s.qualname}: dead end, no path to a StopEvent or InputRequiredEvent")
    return problems


def _checked(steps: dict[str, StepSpec], check: GraphCheck) -> list[StepSpec]:
    """The steps a graph check applies to: all but those that skip it."""
    return [s for s in steps.values() if check not in s.options.skip_graph_checks]


def _consumed(emitted: type[Event], steps: dict[str, StepSpec]) -> bool:
    return issubclass(emitted, _OUTPUTS) or any(s.accepts_type(emitted) for s in steps.values())


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
            ok = any(s.accepts_type(t) for t in available)
            if ok or all(is_external(a) for a in s.accepts):
                reached.add(s.name)
                available.update(s.emits)
                changed = True
    return reached, available


def _reaching_an_output(steps: dict[str, StepSpec]) -> set[str]:
    """Steps from which some path of emitted events ends in a StopEvent or InputRequiredEvent."""
    ending: set[str] = set()
    changed = True
    while changed:
        changed = False
        for s in steps.values():
            if s.name not in ending and any(_ends(t, steps, ending) for t in s.emits):
                ending.add(s.name)
                changed = True
    return ending


def _ends(emitted: type[Event], steps: dict[str, StepSpec], ending: set[str]) -> bool:
    if issubclass(emitted, _OUTPUTS):
        return True
    return any(s.name in ending and s.accepts_type(emitted) for s in steps.values())


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
                except (
                    Exception
                ):  # PydanticSchemaGenerationError, and anything else pydantic raises
                    problems.append(
                        f"{s.qualname}: event {event_type.__name__} field {fname!r} "
                        f"is not JSON-serializable ({finfo.annotation!r})"
                    )
    return problems

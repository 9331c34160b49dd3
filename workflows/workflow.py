"""The ``Workflow`` base class: steps are collected and the graph validated at class creation."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import ValidationError

from workflows._engine.graph import WorkflowSpec, build_workflow_spec
from workflows.errors import (
    ConfigurationError,
    InvalidInputError,
    UnknownWorkflowError,
    WorkflowDefinitionError,
)
from workflows.events import StartEvent
from workflows.step import Mode, StepOptions

if TYPE_CHECKING:
    from workflows._engine.handler import WorkflowHandler

_WORKFLOWS: dict[str, type[Workflow]] = {}
F = TypeVar("F", bound=Callable[..., Any])


class Workflow:
    """Subclass it and add ``@step`` methods. ``queue`` and ``mode`` set defaults for its steps."""

    name: ClassVar[str] = "Workflow"
    queue: ClassVar[str | None] = None
    mode: ClassVar[Mode | None] = None
    spec: ClassVar[WorkflowSpec]

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        cls.name = cls.__dict__.get("name", cls.__name__)
        namespace: dict[str, Any] = {}
        for base in reversed(cls.__mro__):
            namespace.update(vars(base))
        cls.spec = build_workflow_spec(cls.name, namespace)
        existing = _WORKFLOWS.get(cls.name)
        if existing is not None and existing.__module__ != cls.__module__:
            raise WorkflowDefinitionError(
                f"workflow name {cls.name!r} is defined in both {existing.__module__} and "
                f"{cls.__module__}; set a unique `name` on one of them"
            )
        _WORKFLOWS[cls.name] = cls

    def __init__(self, timeout: float | None = None, verbose: bool = False, **_: Any) -> None:
        self.timeout = timeout
        self.verbose = verbose

    @classmethod
    def make_start_event(cls, start_event: StartEvent | None = None, **kwargs: Any) -> StartEvent:
        """The run's start event, validated; a bad input names the workflow and the field."""
        if start_event is not None:
            if not isinstance(start_event, cls.spec.start_event):
                raise InvalidInputError(
                    f"{cls.name} starts with {cls.spec.start_event.__name__}, "
                    f"not {type(start_event).__name__}"
                )
            return start_event
        try:
            return cls.spec.start_event(**kwargs)
        except ValidationError as exc:
            raise InvalidInputError(f"invalid input for {cls.name}: {exc}") from exc

    def run(
        self, start_event: StartEvent | None = None, *, run_id: str | None = None, **kwargs: Any
    ) -> WorkflowHandler:
        """Start an in-process run (in a running event loop); await the handler for the result."""
        from workflows._engine.handler import start_inprocess

        return start_inprocess(self, self.make_start_event(start_event, **kwargs), run_id)

    @classmethod
    def resume(cls, snapshot: dict[str, Any]) -> WorkflowHandler:
        """Continue a paused run from ``handler.snapshot()``, in this or another process."""
        from workflows._engine.handler import resume_inprocess

        return resume_inprocess(cls(), snapshot)


def catch_error(
    fn: F | None = None, /, *, for_steps: list[str] | None = None, max_recoveries: int = 1
) -> Any:
    """Mark an error-handler step: it takes ``StepFailedEvent`` once a step's retries are spent."""
    del max_recoveries

    def mark(f: F) -> F:
        f.__baton_step__ = StepOptions()  # type: ignore[attr-defined]
        f.__baton_catch__ = set(for_steps) if for_steps else None  # type: ignore[attr-defined]
        return f

    return mark(fn) if fn is not None else mark


def get_workflow(name: str) -> type[Workflow] | None:
    return _WORKFLOWS.get(name)


def require_workflow(name: str) -> type[Workflow]:
    """The workflow registered as ``name``; an unknown name is a clear error."""
    cls = _WORKFLOWS.get(name)
    if cls is None:
        known = ", ".join(sorted(_WORKFLOWS)) or "none"
        raise UnknownWorkflowError(f"no workflow named {name!r} (registered: {known})")
    return cls


def require_constructible(cls: type[Workflow]) -> None:
    """A worker builds ``cls()`` with no arguments: refuse, before a run is written, a class
    whose ``__init__`` requires some (the run would otherwise fail on every worker)."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # no signature to read: let the worker try
        return
    try:
        signature.bind()
    except TypeError:
        required = [p.name for p in signature.parameters.values() if _required(p)]
        raise ConfigurationError(
            f"workflow {cls.name} cannot run distributed: a worker builds it with no "
            f"arguments, but its __init__ requires: {', '.join(required)}"
        ) from None


def _required(param: inspect.Parameter) -> bool:
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return param.default is param.empty and param.kind not in variadic


def all_workflows() -> dict[str, type[Workflow]]:
    return dict(_WORKFLOWS)

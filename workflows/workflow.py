"""The ``Workflow`` base class.

A class's steps are read when it is defined, and a step's signature problems raise then. The
graph is checked when the class is first used — its first run, a submit, a worker start,
``validate()`` or ``baton check`` — so a base class may leave it for subclasses to complete.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import ValidationError

from workflows._engine.graph import (
    WorkflowSpec,
    build_workflow_spec,
    collect_steps,
    free_step,
    signature_problems,
)
from workflows.errors import (
    ConfigurationError,
    InvalidInputError,
    UnknownWorkflowError,
    WorkflowDefinitionError,
    WorkflowValidationError,
)
from workflows.events import StartEvent
from workflows.factories import has_factory, workflow_instance
from workflows.step import Mode, StepOptions, StepSpec

if TYPE_CHECKING:
    from workflows._engine.handler import WorkflowHandler
    from workflows.context import Context
    from workflows.resource import ResourceManager

_WORKFLOWS: dict[str, type[Workflow]] = {}
F = TypeVar("F", bound=Callable[..., Any])


class _LazySpec:
    """``Workflow.spec``: the class's step graph, built and validated on first use, then kept
    until a step is attached. Each class has its own (``_spec``, set per class)."""

    def __get__(self, instance: Workflow | None, owner: type[Workflow]) -> WorkflowSpec:
        spec = owner._spec
        if spec is None:
            steps = {**owner._method_steps, **owner._free_steps}
            spec = owner._spec = build_workflow_spec(owner.name, steps)
        return spec


class Workflow:
    """Subclass it and add ``@step`` methods. ``queue`` and ``mode`` set defaults for its steps.

    ``class Base(Workflow, abstract=True)`` is a base class only: it is not registered by name.
    """

    name: ClassVar[str] = "Workflow"
    queue: ClassVar[str | None] = None
    mode: ClassVar[Mode | None] = None
    spec = _LazySpec()
    _spec: ClassVar[WorkflowSpec | None] = None
    _method_steps: ClassVar[dict[str, StepSpec]] = {}
    _free_steps: ClassVar[dict[str, StepSpec]] = {}

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = cls.__dict__.get("name", cls.__name__)
        namespace: dict[str, Any] = {}
        for base in reversed(cls.__mro__):
            namespace.update(vars(base))
        cls._method_steps = collect_steps(cls.name, namespace)
        cls._free_steps = {}  # LlamaIndex: a free function step is not inherited
        cls._spec = None
        problems = signature_problems(cls._method_steps.values())
        if problems:
            raise WorkflowValidationError(cls.name, problems)
        if abstract:
            return
        existing = _WORKFLOWS.get(cls.name)
        if existing is not None and _same_source(existing, cls):
            return  # ``python -m pkg.flows`` runs as __main__ a module its package imported
        if existing is not None and existing.__module__ != cls.__module__:
            raise WorkflowDefinitionError(
                f"workflow name {cls.name!r} is defined in both {existing.__module__} and "
                f"{cls.__module__}; set a unique `name` on one of them"
            )
        _WORKFLOWS[cls.name] = cls

    def __init__(
        self,
        timeout: float | None = None,
        verbose: bool = False,
        resource_manager: ResourceManager | None = None,
        **_: Any,
    ) -> None:
        self.timeout = timeout
        self.verbose = verbose
        self._resource_manager = resource_manager  # None: the process's (workflows.resource)

    @classmethod
    def add_step(cls, fn: Callable[..., Any]) -> None:
        """Attach a free-function step (what ``@step(workflow=cls)`` does); its signature is
        checked now, the graph on the next use of ``cls.spec``."""
        options = getattr(fn, "__baton_step__", None)
        if not isinstance(options, StepOptions):
            raise WorkflowDefinitionError(f"{fn.__qualname__} is not a @step")
        if fn.__name__ in cls._method_steps or fn.__name__ in cls._free_steps:
            raise WorkflowDefinitionError(f"{cls.name} already has a step named {fn.__name__!r}")
        spec = free_step(cls.name, fn, options)
        if spec.problems:
            raise WorkflowValidationError(cls.name, spec.problems)
        cls._free_steps[spec.name] = spec
        cls._spec = None

    @classmethod
    def validate(
        cls, *, validate_resource_configs: bool = True, validate_resources: bool = False
    ) -> bool:
        """Check the step graph now, as a first run, a submit or a worker start would: raises
        :class:`WorkflowValidationError` naming every problem. Returns whether the workflow
        uses human-in-the-loop events, as LlamaIndex's does (its resource options are ignored).
        """
        del validate_resource_configs, validate_resources
        return cls.spec.uses_hitl

    @classmethod
    def make_start_event(cls, start_event: StartEvent | None = None, **kwargs: Any) -> StartEvent:
        """The run's start event, validated; a bad input names the workflow and the field."""
        if start_event is not None:
            if not cls.spec.starts_with(type(start_event)):
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
        self,
        ctx: Context[Any] | StartEvent | None = None,
        start_event: StartEvent | None = None,
        *,
        run_id: str | None = None,
        **kwargs: Any,
    ) -> WorkflowHandler:
        """Start an in-process run; await the handler for the result.

        ``ctx``: a ``Context(self)`` whose store the run uses and keeps (memory across runs);
        restored with ``Context.from_dict`` while a run was paused for input, the run goes on
        from there. Outside an event loop the returned handler is a coroutine that starts the
        run when driven (``asyncio.run(wf.run(...))``).
        """
        from workflows._engine.handler import resume_inprocess, start_inprocess

        if isinstance(ctx, StartEvent):  # Baton's older signature: run(start_event, ...)
            ctx, start_event = None, ctx
        if ctx is not None and ctx._paused is not None:
            if start_event is not None or kwargs:
                raise InvalidInputError(
                    "this Context holds a run paused for input: run(ctx=...) resumes it, "
                    "without a start event or inputs"
                )
            paused = ctx._paused
            ctx._paused = None
            return _in_loop(lambda: resume_inprocess(self, paused, ctx))
        start = self.make_start_event(start_event, **kwargs)
        return _in_loop(lambda: start_inprocess(self, start, run_id, ctx))

    @classmethod
    def resume(cls, snapshot: dict[str, Any]) -> WorkflowHandler:
        """Continue a paused run from ``handler.snapshot()``, in this or another process."""
        from workflows._engine.handler import resume_inprocess

        return resume_inprocess(workflow_instance(cls), snapshot)


def _same_source(a: type, b: type) -> bool:
    """One class defined twice from one file: as its module and as ``__main__``."""
    if "__main__" not in (a.__module__, b.__module__) or a.__module__ == b.__module__:
        return False
    try:
        return inspect.getfile(a) == inspect.getfile(b) and a.__qualname__ == b.__qualname__
    except (TypeError, OSError):
        return False


def _in_loop(start: Callable[[], WorkflowHandler]) -> WorkflowHandler:
    """Start now in the running loop, or defer to when ``asyncio.run`` drives the handler."""
    from workflows._engine.handler import DeferredRun

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return DeferredRun(start)  # type: ignore[return-value]  # awaitable like a handler
    return start()


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
    """The workflow registered as ``name``; an unknown name is a clear error that says where
    a workflow gets registered: by importing the module that defines it."""
    cls = _WORKFLOWS.get(name)
    if cls is None:
        known = ", ".join(sorted(_WORKFLOWS)) or "none"
        raise UnknownWorkflowError(
            f"no workflow named {name!r} (registered: {known}); the module defining it must be "
            "in BATON_IMPORTS (for workers) and imported by the submitting process"
        )
    return cls


def require_constructible(cls: type[Workflow]) -> None:
    """A worker builds ``cls()`` with no arguments, unless a factory is registered for it
    (``register_factory``): refuse, before a run is written, a class without one whose
    ``__init__`` requires some (the run would otherwise fail on every worker)."""
    if has_factory(cls):
        return
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


@dataclass(frozen=True)
class WorkflowCheck:
    """How a registered workflow's graph checked out: ``problems`` is empty when it is valid;
    ``base_of`` names the registered subclasses of an invalid one (a base class, skipped)."""

    workflow: str
    problems: list[str]
    base_of: list[str]

    @property
    def failed(self) -> bool:
        return bool(self.problems) and not self.base_of


def check_workflows() -> list[WorkflowCheck]:
    """Validate every registered workflow, by name. An invalid one that other registered
    workflows subclass is an incomplete base: reported, but not a failure."""
    checks = []
    for name, cls in sorted(_WORKFLOWS.items()):
        try:
            cls.validate()
            problems: list[str] = []
        except WorkflowValidationError as exc:
            problems = exc.problems
        subclasses = [] if not problems else _registered_subclasses(cls)
        checks.append(WorkflowCheck(name, problems, subclasses))
    return checks


def runnable_workflows() -> dict[str, type[Workflow]]:
    """The registered workflows a worker serves: all but incomplete bases. Any other invalid
    workflow raises one :class:`WorkflowValidationError` naming every problem of each."""
    checks = check_workflows()
    failed = [c for c in checks if c.failed]
    if failed:
        names = ", ".join(c.workflow for c in failed)
        raise WorkflowValidationError(names, [p for c in failed for p in c.problems])
    return {c.workflow: _WORKFLOWS[c.workflow] for c in checks if not c.problems}


def _registered_subclasses(cls: type[Workflow]) -> list[str]:
    return sorted(n for n, c in _WORKFLOWS.items() if c is not cls and issubclass(c, cls))

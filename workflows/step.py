"""The ``@step`` decorator and the spec it attaches to a step method (or free function).

A step's accepted and emitted event types come from its type hints; they are read when the
workflow class is defined, or the function attached (see ``workflows._engine.graph``).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args, overload

from workflows.errors import WorkflowDefinitionError
from workflows.events import Event, StopEvent
from workflows.rate_limit import RateLimit, check_limit_options
from workflows.resource import Resource, resource_params, resource_problems
from workflows.retry import NO_RETRY, Retry, RetryPolicy, StepRetry, step_retry

if TYPE_CHECKING:
    from workflows.workflow import Workflow

Mode = Literal["inprocess", "distributed"]
GraphCheck = Literal["reachability", "dead_end"]
"""Graph checks one step may skip (LlamaIndex's names)."""
F = TypeVar("F", bound=Callable[..., Any])  # async, or sync (run on a worker thread)
StepKey = Callable[[Any], Any]
"""A limit's key function: of the step's input event (for a ``list[E]`` batch step, the list)."""


@dataclass(frozen=True)
class StepOptions:
    """What ``@step(...)`` was given (the retry option already checked and wrapped)."""

    queue: str | None = None
    retry: StepRetry = NO_RETRY
    timeout: float | None = None
    num_workers: int = 4
    accept_event_subclasses: bool = False
    skip_graph_checks: frozenset[GraphCheck] = frozenset()
    rate: RateLimit | None = None
    rate_key: StepKey | None = None
    concurrency: int | None = None
    concurrency_key: StepKey | None = None


@dataclass
class StepSpec:
    """A step as the engine sees it: name, event types, options and how to call it."""

    name: str
    workflow: str
    fn: Callable[..., Awaitable[Any]]
    accepts: tuple[type[Event], ...]
    emits: tuple[type[Event], ...]
    options: StepOptions
    takes_ctx: bool
    event_param: str
    batch: bool = False
    returns_list: bool = False
    problems: list[str] = field(default_factory=list)
    ctx_param: str = "ctx"
    free: bool = False  # attached with @step(workflow=...): called without an instance
    resources: tuple[tuple[str, Resource[Any]], ...] = ()  # (parameter, resource)
    sync: bool = False  # a plain ``def``: run on a worker thread

    def accepts_type(self, event_type: type[Event]) -> bool:
        """Whether an event of this type is routed here: its exact type is one the step takes,
        or a subclass of one when the step opted in (never a StopEvent: it ends the run)."""
        if event_type in self.accepts:
            return True
        return (
            self.options.accept_event_subclasses
            and issubclass(event_type, self.accepts)
            and not issubclass(event_type, StopEvent)
        )

    @property
    def qualname(self) -> str:
        return f"{self.workflow}.{self.name}"

    def rate_key_of(self, event: Event | list[Event]) -> str:
        """The rate limit's key for an input: ``rate_key(event)``, or ``""`` (one limit)."""
        key = self.options.rate_key
        return "" if key is None else str(key(event))

    def concurrency_key_of(self, event: Event | list[Event]) -> str:
        """The concurrency limit's key for an input: ``concurrency_key(event)``, or ``""``."""
        key = self.options.concurrency_key
        return "" if key is None else str(key(event))


@overload
def step(fn: F, /) -> F: ...
@overload
def step(
    *,
    workflow: type[Workflow] | None = None,
    queue: str | None = None,
    retry: Retry | RetryPolicy | None = None,
    timeout: float | None = None,
    num_workers: int = 4,
    retry_policy: Retry | RetryPolicy | None = None,
    accept_event_subclasses: bool = False,
    skip_graph_checks: Iterable[GraphCheck] | None = None,
    rate_limit: str | None = None,
    rate_key: StepKey | None = None,
    concurrency: int | None = None,
    concurrency_key: StepKey | None = None,
) -> Callable[[F], F]: ...


def step(
    fn: F | None = None,
    /,
    *,
    workflow: type[Workflow] | None = None,
    queue: str | None = None,
    retry: Retry | RetryPolicy | None = None,
    timeout: float | None = None,
    num_workers: int = 4,
    retry_policy: Retry | RetryPolicy | None = None,
    accept_event_subclasses: bool = False,
    skip_graph_checks: Iterable[GraphCheck] | None = None,
    rate_limit: str | None = None,
    rate_key: StepKey | None = None,
    concurrency: int | None = None,
    concurrency_key: StepKey | None = None,
) -> F | Callable[[F], F]:
    """Mark a method as a step (bare, or with options); with ``workflow=``, a free function.

    ``retry`` and ``retry_policy`` (LlamaIndex's name) are the same option: a :class:`Retry`, or
    any object with LlamaIndex's ``next(elapsed_time, attempts, error)``; anything else fails
    here, when the class is defined, not in the middle of a run.

    A free function is a step of ``workflow``, attached to that class only (not to its
    subclasses, as in LlamaIndex). A function that takes ``self`` first may instead be assigned
    into a workflow's class body (``go = step(shared)``): it is that class's method step, like
    one defined there (LlamaIndex refuses this form). An event is routed to a step only when
    its type is exactly one the step takes, unless ``accept_event_subclasses``.
    ``skip_graph_checks`` turns off the ``"reachability"`` or ``"dead_end"`` check for this step.

    ``rate_limit`` (``"5/s"``, ``"60/m"``, ``"100/h"``) spaces the step's starts (one per
    attempt: a resume after a tool, child or event answer is not charged), per value of
    ``rate_key(event)`` when given; ``concurrency`` (a positive int) lets at most that many of
    its deliveries run its code at once, per value of ``concurrency_key(event)``. Both hold
    across every worker distributed and per process in-process (``docs/distributed.md``).
    """
    policy = retry if retry is not None else retry_policy
    rate = check_limit_options(rate_limit, rate_key, concurrency, concurrency_key, "the event")

    def mark(f: F) -> F:
        name = f.__qualname__.rsplit("<locals>.", 1)[-1]  # Flow.step, even in a function
        checked = NO_RETRY if policy is None else step_retry(policy, name)
        skipped = _graph_checks(name, skip_graph_checks)
        options = StepOptions(
            queue,
            checked,
            timeout,
            num_workers,
            accept_event_subclasses,
            skipped,
            rate,
            rate_key,
            concurrency,
            concurrency_key,
        )
        f.__baton_step__ = options  # type: ignore[attr-defined]
        if _defined_in_class(f):
            return f  # a method: its class collects it (``workflow=`` is ignored, as in LlamaIndex)
        if workflow is not None:
            workflow.add_step(f)
        elif not _takes_self(f):
            raise WorkflowDefinitionError(
                f"{name}: a free function step needs @step(workflow=SomeWorkflow) (or, to "
                "assign it into a workflow's class body, a first parameter named self)"
            )
        return f

    return mark(fn) if fn is not None else mark


def _defined_in_class(fn: Callable[..., Any]) -> bool:
    """Defined in a class body (``Flow.go``, ``test.<locals>.Flow.go``), not a free function."""
    parts = fn.__qualname__.split(".")
    return len(parts) > 1 and parts[-2] != "<locals>"


def _takes_self(fn: Callable[..., Any]) -> bool:
    """A function defined elsewhere and assigned into a class body (``go = step(shared)``) is
    a method all the same: it takes ``self`` first. Without ``self`` it is a free function."""
    return next(iter(_parameters(fn)), None) == "self"


def _parameters(fn: Callable[..., Any]) -> list[str]:
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # no signature to read: build_spec reports the step
        return []


def _graph_checks(step_name: str, names: Iterable[str] | None) -> frozenset[GraphCheck]:
    given, valid = set(names or ()), get_args(GraphCheck)
    unknown = sorted(given.difference(valid))
    if unknown:
        raise WorkflowDefinitionError(
            f"{step_name}: skip_graph_checks has unknown check(s) {', '.join(map(repr, unknown))}"
            f" (a step may skip {' or '.join(map(repr, valid))})"
        )
    return frozenset(c for c in valid if c in given)


def build_spec(workflow: str, name: str, fn: Callable[..., Any], options: StepOptions) -> StepSpec:
    """Read a step's signature; problems are collected on the spec, not raised."""
    culprit = f"{workflow}.{name}"
    problems: list[str] = []
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        problems.append(f"{culprit}: a step cannot be a generator; return its event(s)")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # unresolved forward references
        hints = {}
        problems.append(f"{culprit}: cannot resolve type hints ({exc})")
    resources = resource_params(fn)
    problems.extend(resource_problems(culprit, resources))
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.name != "self" and p.name not in resources
    ]
    takes_ctx, ctx_param, event_param, batch = False, "ctx", "", False
    accepts: tuple[type[Event], ...] = ()
    for param in params:
        hint = hints.get(param.name)
        if _is_context(hint) or (hint is None and param.name in {"ctx", "context"}):
            takes_ctx, ctx_param = True, param.name
            continue
        types_, is_list = _event_types(hint)
        if types_:
            event_param, accepts, batch = param.name, types_, is_list
        elif hint is not None and param.default is param.empty:
            problems.append(
                f"{culprit}: parameter {param.name!r} is not a Context, an Event or a resource "
                "(Annotated[T, Resource(factory)])"
            )
    if not accepts:
        problems.append(f"{culprit}: no parameter is annotated with an Event type")
    emits, returns_list = _event_types(hints.get("return"))
    return StepSpec(
        name,
        workflow,
        fn,
        accepts,
        emits,
        options,
        takes_ctx,
        event_param,
        batch,
        returns_list,
        problems,
        ctx_param,
        resources=tuple(resources.items()),
        sync=not _is_async(fn),
    )


def _is_async(fn: Callable[..., Any]) -> bool:
    """An ``async def``, also under a sync decorator that keeps ``__wrapped__`` (it returns the
    coroutine); anything else runs on a worker thread."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(inspect.unwrap(fn))


def _is_context(hint: Any) -> bool:
    return getattr(hint, "__name__", "") == "Context"


def _event_types(hint: Any) -> tuple[tuple[type[Event], ...], bool]:
    """Event classes named by a hint (unions flattened); True when it is ``list[E]``."""
    if hint is None:
        return (), False
    origin = typing.get_origin(hint)
    if origin is list:
        inner, _ = _event_types(typing.get_args(hint)[0])
        return inner, True
    if origin in (typing.Union, types.UnionType):
        found: list[type[Event]] = []
        is_list = False
        for arg in typing.get_args(hint):
            sub, sub_list = _event_types(arg)
            found.extend(sub)
            is_list = is_list or sub_list
        return tuple(found), is_list
    if isinstance(hint, type) and issubclass(hint, Event):
        return (hint,), False
    return (), False

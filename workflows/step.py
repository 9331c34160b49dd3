"""The ``@step`` decorator and the spec it attaches to a step method.

A step's accepted and emitted event types come from its type hints; they are read when the
workflow class is defined (see ``workflows._engine.graph``).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, overload

from workflows.events import Event
from workflows.retry import NO_RETRY, Retry, RetryPolicy, StepRetry, step_retry

Mode = Literal["inprocess", "distributed"]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


@dataclass(frozen=True)
class StepOptions:
    """What ``@step(...)`` was given (the retry option already checked and wrapped)."""

    queue: str | None = None
    retry: StepRetry = NO_RETRY
    timeout: float | None = None
    num_workers: int = 4


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

    @property
    def qualname(self) -> str:
        return f"{self.workflow}.{self.name}"


@overload
def step(fn: F, /) -> F: ...
@overload
def step(
    *,
    queue: str | None = None,
    retry: Retry | RetryPolicy | None = None,
    timeout: float | None = None,
    num_workers: int = 4,
    retry_policy: Retry | RetryPolicy | None = None,
) -> Callable[[F], F]: ...


def step(
    fn: F | None = None,
    /,
    *,
    queue: str | None = None,
    retry: Retry | RetryPolicy | None = None,
    timeout: float | None = None,
    num_workers: int = 4,
    retry_policy: Retry | RetryPolicy | None = None,
) -> F | Callable[[F], F]:
    """Mark an async method as a step (bare, or with options).

    ``retry`` and ``retry_policy`` (LlamaIndex's name) are the same option: a :class:`Retry`, or
    any object with LlamaIndex's ``next(elapsed_time, attempts, error)``; anything else fails
    here, when the class is defined, not in the middle of a run.
    """
    policy = retry if retry is not None else retry_policy

    def mark(f: F) -> F:
        name = f.__qualname__.rsplit("<locals>.", 1)[-1]  # Flow.step, even in a function
        checked = NO_RETRY if policy is None else step_retry(policy, name)
        f.__baton_step__ = StepOptions(queue, checked, timeout, num_workers)  # type: ignore[attr-defined]
        return f

    return mark(fn) if fn is not None else mark


def build_spec(workflow: str, name: str, fn: Callable[..., Any], options: StepOptions) -> StepSpec:
    """Read a step's signature; problems are collected on the spec, not raised."""
    culprit = f"{workflow}.{name}"
    problems: list[str] = []
    if not inspect.iscoroutinefunction(fn):
        problems.append(f"{culprit}: a step must be an async function")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # unresolved forward references
        hints = {}
        problems.append(f"{culprit}: cannot resolve type hints ({exc})")
    params = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
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
            problems.append(f"{culprit}: parameter {param.name!r} is not a Context or an Event")
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
    )


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

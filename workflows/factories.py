"""Workflow factories: how a worker builds a workflow whose ``__init__`` needs arguments.

In-process you build the instance yourself (``MyFlow(llm=llm).run()``). Distributed, a worker
builds it, and by default calls ``MyFlow()``. Register a factory next to the class, in the
module both the submitting process and the workers import::

    class MyFlow(Workflow):
        def __init__(self, llm: LLM, **kwargs: Any) -> None: ...

    register_factory(MyFlow, lambda: MyFlow(llm=make_llm()))

A process calls the factory once, the first time it needs the workflow, and reuses the
instance for every step and run after that (several at once on an asyncio or threads worker):
steps must not keep per-run state on ``self``. A factory that raises, or returns something
else than an instance of the class, is a ConfigurationError naming the workflow. A raise may
pass (a model server briefly down), so it is retryable, unless what the factory raised is a
Baton error that is not: on a worker, the step that needed the workflow fails under its retry
policy (asked about the factory's own exception), and without a retry the run fails with the
ConfigurationError; in-process, a child run's parent step gets it, under its own policy. A
wrong type is never retried. A failure is not kept: the next attempt calls the factory again.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar, cast, overload

from workflows.errors import BatonError, ConfigurationError, WorkflowDefinitionError

if TYPE_CHECKING:
    from workflows.workflow import Workflow

W = TypeVar("W", bound="Workflow")

_factories: dict[type[Workflow], Callable[[], Workflow]] = {}
_instances: dict[type[Workflow], Workflow] = {}
_lock = threading.RLock()  # reentrant: a factory may build another workflow it uses


@overload
def register_factory(workflow: type[W], factory: Callable[[], W], /) -> Callable[[], W]: ...
@overload
def register_factory(workflow: type[W], /) -> Callable[[Callable[[], W]], Callable[[], W]]: ...


def register_factory(
    workflow: type[W], factory: Callable[[], W] | None = None, /
) -> Callable[[], W] | Callable[[Callable[[], W]], Callable[[], W]]:
    """Build ``workflow`` with ``factory()`` (no arguments) wherever Baton builds it: workers
    running its steps, child runs started in-process, ``Workflow.resume``. Also a decorator
    (``@register_factory(MyFlow)`` over a function); either way the factory is returned as is.
    A class (not its subclasses) has one factory: registering again replaces it."""

    _check_workflow(workflow)

    def register(fn: Callable[[], W]) -> Callable[[], W]:
        _check_factory(workflow, fn)
        with _lock:
            _factories[workflow] = fn
            _instances.pop(workflow, None)
        return fn

    return register(factory) if factory is not None else register


def has_factory(workflow: type[Workflow]) -> bool:
    """Whether a factory is registered for exactly this class."""
    return workflow in _factories


def workflow_instance(workflow: type[W]) -> W:
    """The instance to run ``workflow``'s steps on: its factory's (built once in this process,
    then reused), or a new ``workflow()`` when it has none."""
    factory = _factories.get(workflow)
    if factory is None:
        return workflow()
    with _lock:
        instance = _instances.get(workflow)
        if instance is None:
            instance = _instances[workflow] = _build(workflow, factory)
    return cast(W, instance)  # _build checked it is a `workflow`


def _build(workflow: type[Workflow], factory: Callable[[], Workflow]) -> Workflow:
    culprit = f"workflow {workflow.name}: its factory {_name(factory)}"
    try:
        instance = factory()
    except Exception as exc:
        error = ConfigurationError(f"{culprit} raised {type(exc).__name__}: {exc}")
        # what it raised may pass (a model server briefly down): a step retry policy may retry
        error.retryable = not isinstance(exc, BatonError) or exc.retryable
        raise error from exc
    if not isinstance(instance, workflow):
        raise ConfigurationError(
            f"{culprit} returned {type(instance).__name__}, not a {workflow.__name__}"
        )
    return instance


def _check_workflow(workflow: object) -> None:
    from workflows.workflow import Workflow  # here: workflow.py imports this module

    if not (isinstance(workflow, type) and issubclass(workflow, Workflow)):
        raise WorkflowDefinitionError(f"register_factory: {workflow!r} is not a Workflow subclass")


def _check_factory(workflow: type[Workflow], factory: object) -> None:
    """A definition error, at registration, for what could never build the workflow."""
    if not callable(factory):
        raise WorkflowDefinitionError(
            f"register_factory({workflow.name}): the factory must be callable with no "
            f"arguments; got {type(factory).__name__}"
        )
    try:
        inspect.signature(factory).bind()
    except ValueError:  # no signature to read: the first call will tell
        return
    except TypeError:
        raise WorkflowDefinitionError(
            f"register_factory({workflow.name}): the factory {_name(factory)} must be "
            "callable with no arguments"
        ) from None


def _name(factory: object) -> str:
    return str(getattr(factory, "__qualname__", type(factory).__name__))

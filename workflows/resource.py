"""Resources: objects a step takes as parameters, built by a factory and shared.

::

    def make_llm() -> LLM:  # sync or async; may itself take resources
        return LLM(model="...")

    class Ask(Workflow):
        @step
        async def think(self, ev: Question, llm: Annotated[LLM, Resource(make_llm)]) -> Answer:
            ...

A factory runs the first time a step needs its resource. By default the value is cached for the
process and the event loop it was built on: every step, run and workflow instance on that loop
shares one (a worker process, whose tasks all run on one loop, builds it once), while code on
another loop (a second ``asyncio.run``, a test, a thread's loop) gets its own, so an async client
is never used on a loop it is not bound to. ``Workflow(resource_manager=...)`` keeps the cache
in that manager instead, keyed the same way. ``Resource(factory, cache=False)`` builds a value
for each step invocation. Nothing crosses the wire: every worker process builds its own. A
factory that raises fails the step that needed it, under the step's retry policy, and runs
again next time. The values of a closed loop are dropped when a new loop first builds one,
so repeated ``asyncio.run`` calls do not pile them up.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import typing
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar, cast, overload

from workflows.errors import WorkflowDefinitionError

T = TypeVar("T")
Params = Sequence[tuple[str, "Resource[Any]"]]

__all__ = ["Resource", "ResourceManager"]

_MISSING: Any = object()


class Resource(Generic[T]):
    """Marks a step parameter as a resource: ``Annotated[T, Resource(factory, cache=True)]``."""

    __slots__ = ("_deps", "cache", "factory", "name")

    @overload
    def __init__(self, factory: Callable[..., Awaitable[T]], cache: bool = True) -> None: ...
    @overload
    def __init__(self, factory: Callable[..., T], cache: bool = True) -> None: ...
    def __init__(self, factory: Callable[..., Any], cache: bool = True) -> None:
        if not callable(factory):
            raise TypeError(f"Resource needs a factory (a callable), not {factory!r}")
        self.factory = factory
        self.cache = cache
        self.name = _name(factory)
        self._deps: dict[str, Resource[Any]] | None = None

    def __repr__(self) -> str:
        return f"Resource({self.name}, cache={self.cache})"

    def dependencies(self) -> dict[str, Resource[Any]]:
        """The factory's parameters that are resources themselves (read once)."""
        if self._deps is None:
            self._deps = _factory_params(self.factory)[0]
        return self._deps


class ResourceManager:
    """Builds resources and keeps the cached ones, for each event loop apart. One per process
    is used unless a workflow is given its own (``Workflow(resource_manager=...)``)."""

    def __init__(self) -> None:
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopCache] = (
            weakref.WeakKeyDictionary()
        )
        self._named: dict[str, Any] = {}
        self._lock = threading.Lock()  # the loops of several threads may add themselves

    async def set(self, name: str, val: Any) -> None:
        """Use ``val`` for the cached resources whose factory is named ``name`` (its
        ``__qualname__``), on every event loop: how a test puts a fake in place of the real
        thing."""
        self._named[name] = val

    async def get(self, resource: Resource[T]) -> T:
        """The resource's value, built (with what it depends on) if not cached yet."""
        return await self._get(resource, {}, ())  # type: ignore[no-any-return]

    def get_all(self) -> dict[str, Any]:
        """The values cached for the running event loop (outside one: for every loop still
        open) and those ``set``, by factory name."""
        try:
            loops = [asyncio.get_running_loop()]
        except RuntimeError:
            loops = [loop for loop in list(self._loops.keys()) if not loop.is_closed()]
        caches = [c for c in map(self._loops.get, loops) if c is not None]
        return {**{_name(f): v for c in caches for f, v in c.values.items()}, **self._named}

    def ready(self, params: Params) -> dict[str, Any] | None:
        """The values for a step's resource parameters when all are cached and built for the
        running loop (the common case, answered without awaiting), else None."""
        cache = None if self._named else self._loops.get(asyncio.get_running_loop())
        if cache is None:
            return None
        values = cache.values
        found: dict[str, Any] = {}
        for param, resource in params:
            value = values.get(resource.factory, _MISSING) if resource.cache else _MISSING
            if value is _MISSING:
                return None
            found[param] = value
        return found

    async def resolve(self, params: Params) -> dict[str, Any]:
        """The values for a step's resource parameters; a value not cached is built once for
        the invocation, however many parameters (or factories) take it."""
        scope: dict[Callable[..., Any], Any] = {}
        return {param: await self._get(r, scope, ()) for param, r in params}

    async def _get(
        self, resource: Resource[Any], scope: dict[Callable[..., Any], Any], chain: tuple[Any, ...]
    ) -> Any:
        if resource.factory in chain:
            names = " -> ".join(_name(f) for f in (*chain, resource.factory))
            raise WorkflowDefinitionError(f"resource factories depend on each other: {names}")
        if resource.cache:
            value = self._named.get(resource.name, _MISSING) if self._named else _MISSING
            if value is _MISSING:
                cache = self._cache()
                value = cache.values.get(resource.factory, _MISSING)
                if value is _MISSING:  # shielded: one step cancelled must not cancel the build
                    value = await asyncio.shield(self._build_once(cache, resource, chain))
            return value
        if resource.factory not in scope:
            scope[resource.factory] = await self._build(resource, scope, chain)
        return scope[resource.factory]

    def _cache(self) -> _LoopCache:
        """The running loop's cache; a new loop first drops the caches of closed ones (their
        values may hold their loop, so the weak key alone would not let them go)."""
        loop = asyncio.get_running_loop()
        cache = self._loops.get(loop)
        if cache is None:
            with self._lock:
                for ref in self._loops.keyrefs():
                    old = ref()
                    if old is not None and old.is_closed():
                        self._loops.pop(old, None)
                cache = self._loops.setdefault(loop, _LoopCache())
        return cache

    def _build_once(
        self, cache: _LoopCache, resource: Resource[Any], chain: tuple[Any, ...]
    ) -> asyncio.Task[Any]:
        """The build of a cached resource: steps needing it at once share one build."""
        task = cache.building.get(resource.factory)
        if task is None or task.done():  # done: cancelled before it started, so never removed
            task = asyncio.get_running_loop().create_task(
                self._build_cached(cache, resource, chain)
            )
            task.add_done_callback(_retrieve)
            cache.building[resource.factory] = task
        return task

    async def _build_cached(
        self, cache: _LoopCache, resource: Resource[Any], chain: tuple[Any, ...]
    ) -> Any:
        try:
            value = cache.values[resource.factory] = await self._build(resource, {}, chain)
            return value
        finally:
            if cache.building.get(resource.factory) is asyncio.current_task():
                del cache.building[resource.factory]

    async def _build(
        self, resource: Resource[Any], scope: dict[Callable[..., Any], Any], chain: tuple[Any, ...]
    ) -> Any:
        chain = (*chain, resource.factory)
        args = {p: await self._get(d, scope, chain) for p, d in resource.dependencies().items()}
        value = resource.factory(**args)
        return await value if inspect.iscoroutine(value) else value


class _LoopCache:
    """What a manager keeps for one event loop: its values by factory (names may collide) and
    the builds under way. Touched only on that loop's thread."""

    __slots__ = ("building", "values")

    def __init__(self) -> None:
        self.values: dict[Callable[..., Any], Any] = {}
        self.building: dict[Callable[..., Any], asyncio.Task[Any]] = {}


def _name(factory: Callable[..., Any]) -> str:
    """How LlamaIndex names a resource (``ResourceManager.set`` takes this name)."""
    return str(getattr(factory, "__qualname__", type(factory).__name__))


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a failed build's error as seen: the steps awaiting it got it (or were cancelled)."""
    if not task.cancelled():
        task.exception()


class _Process:
    """The process's manager. Module-level because the cache must outlive workflow instances
    and runs (a worker builds a new instance per step); a forked child starts empty, so it
    never uses a connection its parent opened."""

    manager = ResourceManager()

    @classmethod
    def forget(cls) -> None:
        cls.manager = ResourceManager()


if hasattr(os, "register_at_fork"):  # not on Windows, where nothing forks
    os.register_at_fork(after_in_child=_Process.forget)


def manager_for(workflow: object) -> ResourceManager:
    """The manager a workflow instance's steps use: its own, else the process's."""
    own = getattr(workflow, "_resource_manager", None)
    return own if isinstance(own, ResourceManager) else _Process.manager


def resource_in(hint: Any) -> Resource[Any] | None:
    """The Resource in an ``Annotated[T, Resource(...)]`` hint, else None."""
    if typing.get_origin(hint) is not Annotated:
        return None
    return next((m for m in hint.__metadata__ if isinstance(m, Resource)), None)


def resource_params(fn: Callable[..., Any]) -> dict[str, Resource[Any]]:
    """The parameters of ``fn`` annotated as resources (none when its hints do not resolve:
    the caller reports that)."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:
        return {}
    found = {name: resource_in(hint) for name, hint in hints.items() if name != "return"}
    return {name: r for name, r in found.items() if r is not None}


def resource_problems(culprit: str, params: dict[str, Resource[Any]]) -> list[str]:
    """What is wrong with a step's resources and what they depend on: a factory parameter that
    is neither a resource nor defaulted, hints that do not resolve, a dependency cycle."""
    problems: list[str] = []
    done: set[Any] = set()

    def visit(resource: Resource[Any], path: tuple[Any, ...]) -> None:
        if resource.factory in path:
            cycle = " -> ".join(_name(f) for f in (*path, resource.factory))
            problems.append(f"{culprit}: resource factories depend on each other: {cycle}")
            return
        if resource.factory in done:
            return
        done.add(resource.factory)
        deps, own = _factory_params(resource.factory)
        resource._deps = deps
        problems.extend(f"{culprit}: {p}" for p in own)
        for dep in deps.values():
            visit(dep, (*path, resource.factory))

    for resource in params.values():
        visit(resource, ())
    return problems


def _factory_params(factory: Callable[..., Any]) -> tuple[dict[str, Resource[Any]], list[str]]:
    """A factory's resource parameters, and what is wrong with its other parameters."""
    name = _name(factory)
    target = cast(Any, factory).__init__ if isinstance(factory, type) else factory
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except NameError as exc:
        return {}, [f"cannot resolve the type hints of resource factory {name} ({exc})"]
    except Exception:  # not a plain function (a partial, a callable object): no hints
        hints = {}
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins): call it bare
        return {}, []
    deps: dict[str, Resource[Any]] = {}
    problems: list[str] = []
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    for param in params:
        dep = resource_in(hints.get(param.name))
        if dep is not None:
            deps[param.name] = dep
        elif param.default is param.empty and param.kind not in variadic:
            problems.append(
                f"resource factory {name} takes {param.name!r}, which is neither a "
                "Resource nor has a default (a factory gets only other resources)"
            )
    return deps, problems

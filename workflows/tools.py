"""Tools: typed functions a step calls by name, in-process or as their own Celery task.

Arguments are validated by pydantic from the function's signature; each tool exports a JSON
schema (what an LLM function-calling agent needs). A tool that declares a parameter typed
:class:`ToolContext` receives the call's stable idempotency key and attempt number. A tool's
exception reaches the calling step as a ToolError that is also an instance of the exception's
class (``except KeyError`` works), rebuilt from data when the tool ran as its own task.
"""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from workflows._error_root import traceback_text
from workflows.codec import to_data
from workflows.errors import (
    ErrorInfo,
    PayloadError,
    ToolError,
    ToolTimeout,
    UnknownToolError,
    WorkflowDefinitionError,
    error_from_info,
)
from workflows.rate_limit import RateKey, RateLimit, check_limit_options, wait_turn
from workflows.retry import NO_RETRY, Retry
from workflows.step import Mode

F = TypeVar("F", bound=Callable[..., Any])
SyncMode = Literal["inline", "thread", "auto"]
_TOOLS: dict[str, ToolSpec] = {}


@dataclass(frozen=True)
class ToolContext:
    """Given to a tool that asks for it: ``call_id`` is the same on every attempt of one call."""

    call_id: str
    attempt: int
    tool: str


@dataclass(frozen=True)
class RemoteTask:
    """A tool backed by an existing Celery task (``app.interop.tool_from_task``): called
    distributed, the task's own message goes to its own queue. ``key_kwarg``: the keyword the
    call id is passed as (an idempotency key the task opted into), if any; ``app``: the task's
    Celery app, opaque here (``workflows`` never imports Celery)."""

    task: str
    queue: str
    key_kwarg: str | None
    app: Any


@dataclass
class ToolSpec:
    """A registered tool."""

    name: str
    fn: Callable[..., Any]
    args_model: type[BaseModel]
    ctx_param: str | None
    queue: str | None
    timeout: float | None
    retry: Retry
    mode: Mode | None
    description: str
    rate: RateLimit | None = None
    rate_key: RateKey | None = None
    concurrency: int | None = None
    concurrency_key: RateKey | None = None
    remote: RemoteTask | None = None  # a Celery task's, when built by ``tool_from_task``

    def concurrency_of(self, args: dict[str, Any]) -> str:
        """The concurrency limit's key for a call: ``concurrency_key`` of its validated
        arguments (defaults filled in), or ``""`` (one limit for every call)."""
        if self.concurrency_key is None:
            return ""
        return str(self.concurrency_key(self.validate_args(args)))

    def limit_key(self, args: dict[str, Any]) -> str:
        """The rate limit's key for a call: ``rate_key`` of its validated arguments (defaults
        filled in), or ``""`` (one limit for every call)."""
        if self.rate_key is None:
            return ""
        return str(self.rate_key(self.validate_args(args)))

    def json_schema(self) -> dict[str, Any]:
        """OpenAI-style function schema: name, description, parameters."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.args_model.model_json_schema(),
        }

    def validate_args(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            model = self.args_model.model_validate(args)
        except ValidationError as exc:
            raise ToolError(
                f"invalid arguments for tool {self.name}: {exc}",
                tool=self.name,
                type="InvalidArguments",
                retryable=False,
            ) from exc
        return {name: getattr(model, name) for name in type(model).model_fields}

    async def invoke_once(
        self, args: dict[str, Any], call_id: str, attempt: int, sync: SyncMode = "auto"
    ) -> Any:
        """One attempt: validate, call (bounded by the timeout), check the result is JSON.

        A sync tool runs ``"inline"`` on this thread (a prefork worker, where Celery's soft
        time limit interrupts it), on a ``"thread"`` (a threads or asyncio worker: it must not
        stall the loop, and asyncio enforces the timeout), or ``"auto"`` (in-process: inline
        unless a timeout needs a thread).
        """
        kwargs = self.validate_args(args)
        if self.ctx_param:
            kwargs[self.ctx_param] = ToolContext(call_id, attempt, self.name)
        if sync == "inline" and not inspect.iscoroutinefunction(self.fn):
            result = self.fn(**kwargs)
        else:
            result = await self._bounded(kwargs, sync)
        try:
            return to_data(result)  # typed: a model comes back a model (codec.from_data)
        except PayloadError as exc:
            raise ToolError(str(exc), tool=self.name, type="PayloadError") from exc

    async def _bounded(self, kwargs: dict[str, Any], sync: SyncMode) -> Any:
        """The call, on a task of its own, under the timeout. Only the timeout's expiry is a
        ToolTimeout: a TimeoutError the tool raises itself is its own exception."""
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                return await asyncio.ensure_future(self._call(kwargs, sync))
        except TimeoutError:
            if not deadline.expired():
                raise
            raise ToolTimeout(
                f"tool {self.name} timed out after {self.timeout}s",
                tool=self.name,
                type="ToolTimeout",
            ) from None

    async def _call(self, kwargs: dict[str, Any], sync: SyncMode) -> Any:
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(**kwargs)
        if self.timeout is None and sync == "auto":
            return self.fn(**kwargs)
        return await asyncio.to_thread(self.fn, **kwargs)

    async def invoke(self, args: dict[str, Any], call_id: str) -> Any:
        """Every attempt under the retry policy; the last failure is raised as a ToolError."""
        attempt = 1
        while True:
            try:
                if self.rate is not None:  # in-process: limited per process (rate_limit.py)
                    await wait_turn(self.name, self.limit_key(args), self.rate)
                return await self.invoke_once(args, call_id, attempt)
            except Exception as exc:
                error = as_tool_error(self.name, exc, attempt)
                if not (error.retryable and self.retry.allows(attempt + 1)):
                    raise error from exc
            attempt += 1
            await asyncio.sleep(self.retry.delay_before(attempt))


def as_tool_error(tool: str, exc: BaseException, attempts: int) -> ToolError:
    """Any exception from a tool, as a ToolError carrying type, message, attempts and the
    formatted traceback; for an Exception outside Baton's tree also an instance of its class,
    with it as data."""
    if isinstance(exc, ToolError):
        exc.attempts = attempts
        if exc.traceback is None:  # a ToolError raised here (bad arguments, a timeout)
            exc.traceback = traceback_text(exc)
        return exc
    return ToolError.of(tool, exc, attempts)


def tool_error_from_info(info: ErrorInfo) -> ToolError:
    """The ToolError a step sees for a journaled failure (a ToolTimeout when it timed out):
    also an instance of the tool exception's class when it is imported here."""
    cls = ToolTimeout if info.details.get("type") == "ToolTimeout" else ToolError
    error = error_from_info(info.model_copy(update={"type": cls.__name__}))
    return error if isinstance(error, ToolError) else cls._from_info(info)


@overload
def tool(fn: F, /) -> F: ...
@overload
def tool(
    *,
    name: str | None = None,
    queue: str | None = None,
    timeout: float | None = None,
    retry: Retry | None = None,
    mode: Mode | None = None,
    rate_limit: str | None = None,
    rate_key: RateKey | None = None,
    concurrency: int | None = None,
    concurrency_key: RateKey | None = None,
) -> Callable[[F], F]: ...


def tool(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    queue: str | None = None,
    timeout: float | None = None,
    retry: Retry | None = None,
    mode: Mode | None = None,
    rate_limit: str | None = None,
    rate_key: RateKey | None = None,
    concurrency: int | None = None,
    concurrency_key: RateKey | None = None,
) -> F | Callable[[F], F]:
    """Register a typed function as a tool (bare, or with options).

    ``rate_limit`` (``"5/s"``, ``"60/m"``, ``"100/h"``) spaces its calls across every worker,
    per value of ``rate_key(args)`` when given (a function of the call's arguments).
    ``concurrency`` (a positive int) lets at most that many of its calls run at once across
    every worker, per value of ``concurrency_key(args)`` when given (distributed only)."""
    rate = check_limit_options(rate_limit, rate_key, concurrency, concurrency_key, "the arguments")

    def register(f: F) -> F:
        spec = _build(f, name or f.__name__, queue, timeout, retry or NO_RETRY, mode)
        spec.rate, spec.rate_key = rate, rate_key
        spec.concurrency, spec.concurrency_key = concurrency, concurrency_key
        _TOOLS[spec.name] = spec
        f.__baton_tool__ = spec  # type: ignore[attr-defined]
        return f

    return register(fn) if fn is not None else register


def _build(
    fn: Callable[..., Any],
    name: str,
    queue: str | None,
    timeout: float | None,
    retry: Retry,
    mode: Mode | None,
) -> ToolSpec:
    hints = typing.get_type_hints(fn)
    fields: dict[str, Any] = {}
    ctx_param = None
    for param in inspect.signature(fn).parameters.values():
        hint = hints.get(param.name, Any)
        if hint is ToolContext:
            ctx_param = param.name
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise WorkflowDefinitionError(f"tool {name}: *args/**kwargs are not supported")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hint, default)
    model = create_model(f"{name}_args", __config__=ConfigDict(extra="forbid"), **fields)
    doc = inspect.getdoc(fn) or ""
    return ToolSpec(name, fn, model, ctx_param, queue, timeout, retry, mode, doc)


def get_tool(name: str) -> ToolSpec:
    """The tool registered as ``name``; an unregistered name is a clear error."""
    try:
        return _TOOLS[name]
    except KeyError:
        known = ", ".join(sorted(_TOOLS)) or "none"
        raise UnknownToolError(f"no tool named {name!r} (registered: {known})", tool=name) from None


def all_tools() -> dict[str, ToolSpec]:
    return dict(_TOOLS)

"""Baton's one rooted error tree.

Every error a user can meet derives from :class:`BatonError`, so ``except BatonError`` catches
them all. Errors that cross the wire travel as data (:class:`ErrorInfo`) and are rebuilt on the
other side with :func:`error_from_info`::

    BatonError
    ├── WorkflowDefinitionError        a workflow or tool is defined wrongly
    │   └── WorkflowValidationError    the step graph is invalid (lists every problem)
    ├── ConfigurationError             settings or topology are wrong
    │   └── TopologyError              the topology file is missing or inconsistent
    ├── InvalidInputError              a start payload / event / tool argument is invalid
    │   ├── UnknownWorkflowError
    │   ├── UnknownToolError
    │   ├── ContextSerdeError          context data (``Context.from_dict``) that cannot be read
    │   └── PayloadError               not JSON, too large, or an unknown event type tag
    │       └── UnknownEventTypeError
    ├── StoreUnavailableError          Redis cannot be reached
    └── RunError                       a run (or part of it) failed
        ├── StepFailedError            a step raised after its retries were spent
        ├── ToolError                  a tool call failed (type, message, attempts)
        │   └── ToolTimeout
        ├── WorkflowTimeoutError
        ├── WorkflowRuntimeError       the run was used wrongly while it ran
        │   └── WorkflowStepDoesNotExistError
        ├── RunCancelledError          (alias: WorkflowCancelledByUser)
        └── ChildWorkflowError         a child workflow failed; carries the child's error

LlamaIndex Workflows re-raises a step's own exception, so its users write ``except KeyError``.
When a step raised an Exception that is not a Baton error, the StepFailedError (and a parent's
ChildWorkflowError) is also an instance of that exception's class, with its ``args`` and
attributes — in-process, and on a client that has imported the class (see ``_original``); so
is the ToolError a step sees when a tool raised one.
``WorkflowConfigurationError`` (LlamaIndex's name) is an alias of WorkflowDefinitionError.
"""

from __future__ import annotations

from typing import Any, Self, TypeVar

from pydantic import BaseModel, Field, ValidationError

from workflows._original import (
    OriginalException,
    attributes,
    baton_class,
    combined_class,
    describe,
    instantiate,
    original_class,
    resolve,
)


class ErrorInfo(BaseModel):
    """An error as data: what crosses the wire and what the run hash stores."""

    type: str
    message: str
    attempts: int = 1
    retryable: bool = True
    details: dict[str, Any] = Field(default_factory=dict)


class BatonError(Exception):
    """Root of every Baton error. Subclasses add typed, keyword-only fields (``_fields``) that
    travel in ``ErrorInfo.details`` and are restored by :func:`error_from_info`."""

    retryable: bool = True
    _fields: tuple[str, ...] = ()

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    @property
    def details(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._fields}

    def to_info(self, attempts: int = 1) -> ErrorInfo:
        return ErrorInfo(
            type=baton_class(type(self)).__name__,  # a combined class travels as its Baton class
            message=self.message,
            attempts=attempts,
            retryable=self.retryable,
            details=_jsonable(self.details),
        )

    @classmethod
    def _from_info(cls, info: ErrorInfo) -> Self:
        known = {k: v for k, v in info.details.items() if k in cls._fields}
        return cls(info.message, **known)

    def _original_data(self) -> OriginalException | None:
        """The step exception this error stands for, as data; None for most errors."""
        return None

    def _note(self) -> str:
        """The note a rebuilt original exception carries, so its traceback says where it was
        raised."""
        return self.message


class WorkflowDefinitionError(BatonError):
    """A workflow, step or tool is defined wrongly (found at import time)."""

    retryable = False


class WorkflowValidationError(WorkflowDefinitionError):
    """The step graph is invalid; ``problems`` lists every problem, each naming its culprit."""

    _fields: tuple[str, ...] = ("workflow", "problems")

    def __init__(self, workflow: str, problems: list[str]) -> None:
        text = f"workflow {workflow} is invalid:\n" + "\n".join(f"  - {p}" for p in problems)
        super().__init__(text)
        self.workflow = workflow
        self.problems = problems

    @classmethod
    def _from_info(cls, info: ErrorInfo) -> Self:
        return cls(str(info.details.get("workflow", "?")), list(info.details.get("problems", [])))


class ConfigurationError(BatonError):
    """Settings or the queue topology are wrong."""

    retryable = False


class TopologyError(ConfigurationError):
    """The topology file is missing, not YAML, or describes an inconsistent topology."""


class InvalidInputError(BatonError):
    """Bad input: rejected before anything runs or is written."""

    retryable = False


class UnknownWorkflowError(InvalidInputError):
    """No workflow is registered under that name."""

    _fields: tuple[str, ...] = ("workflow",)

    def __init__(self, message: str = "", *, workflow: str = "") -> None:
        super().__init__(message)
        self.workflow = workflow


class UnknownToolError(InvalidInputError):
    """No tool is registered under that name."""

    _fields: tuple[str, ...] = ("tool",)

    def __init__(self, message: str = "", *, tool: str = "") -> None:
        super().__init__(message)
        self.tool = tool


class ContextSerdeError(InvalidInputError):
    """Context data (``Context.from_dict``, ``Client.submit(context=...)``) of another workflow,
    version or shape (LlamaIndex's name)."""


class PayloadError(InvalidInputError):
    """A payload is not JSON, is too large, or is malformed. ``payload`` keeps what was received."""

    _fields: tuple[str, ...] = ("payload",)

    def __init__(self, message: str = "", *, payload: Any = None) -> None:
        super().__init__(message)
        self.payload = payload


class UnknownEventTypeError(PayloadError):
    """An event's type tag names no registered event class."""

    _fields: tuple[str, ...] = ("payload", "tag")

    def __init__(self, message: str = "", *, tag: str = "", payload: Any = None) -> None:
        super().__init__(message, payload=payload)
        self.tag = tag


class StoreUnavailableError(BatonError):
    """The Redis store cannot be reached."""


class RunError(BatonError):
    """A run, a step or a call failed."""


class StepFailedError(RunError):
    """A step raised and its retries are spent; ``cause`` is the step's own error as data
    when it was a Baton error, ``original`` when it was any other Exception (and then this
    error is an instance of that exception's class too, wherever the class is known)."""

    _fields: tuple[str, ...] = ("step", "cause_type", "attempts", "cause", "original")

    def __init__(
        self,
        message: str = "",
        *,
        step: str = "",
        cause_type: str = "",
        attempts: int = 1,
        cause: ErrorInfo | dict[str, Any] | None = None,
        original: OriginalException | dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.step = step
        self.cause_type = cause_type
        self.attempts = attempts
        self.cause = ErrorInfo.model_validate(cause) if isinstance(cause, dict) else cause
        self.original = _original_or_none(original)

    def _original_data(self) -> OriginalException | None:
        return self.original


class ToolError(RunError):
    """A tool call failed; a step may catch it. ``type`` is the original exception's class name.

    When the tool raised an Exception that is not a Baton error, ``original`` holds it as data
    and the error is also an instance of its class (with its ``args`` and attributes) wherever
    the class is known, as a StepFailedError is: a step ported from LlamaIndex keeps its
    ``except KeyError`` around ``ctx.call_tool``."""

    _fields: tuple[str, ...] = ("tool", "type", "attempts", "retryable", "original")

    def __init__(
        self,
        message: str = "",
        *,
        tool: str = "",
        type: str | None = None,
        attempts: int = 1,
        retryable: bool = True,
        original: OriginalException | dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.tool = tool
        self.type = type or self.__class__.__name__
        self.attempts = attempts
        self.retryable = retryable
        self.original = _original_or_none(original)

    @classmethod
    def of(cls, tool: str, exc: BaseException, attempts: int = 1) -> ToolError:
        """The error a step sees when tool ``tool`` raised ``exc`` (not a ToolError), also an
        instance of ``exc``'s class when that is an Exception outside Baton's tree."""
        err = cls(
            str(exc),
            tool=tool,
            type=type(exc).__name__,
            attempts=attempts,
            retryable=not isinstance(exc, BatonError) or exc.retryable,
            original=original_of(exc),
        )
        return _with_original(err, exc)

    def to_info(self, attempts: int | None = None) -> ErrorInfo:
        return super().to_info(attempts or self.attempts)

    @classmethod
    def _from_info(cls, info: ErrorInfo) -> Self:
        d = info.details
        return cls(
            info.message,
            tool=str(d.get("tool", "")),
            type=str(d.get("type", info.type)),
            attempts=info.attempts,
            retryable=bool(d.get("retryable", info.retryable)),
            original=d.get("original"),
        )

    def _original_data(self) -> OriginalException | None:
        return self.original

    def _note(self) -> str:
        return f"raised by tool {self.tool}"


class ToolTimeout(ToolError):
    """A tool call ran past its timeout."""


class WorkflowTimeoutError(RunError):
    """A run, or a step, ran past its timeout."""

    _fields: tuple[str, ...] = ("step",)

    def __init__(self, message: str = "", *, step: str | None = None) -> None:
        super().__init__(message)
        self.step = step


class WorkflowRuntimeError(RunError):
    """A run was used wrongly while it ran (LlamaIndex's name): e.g. its events streamed a
    second time, or an event sent to a step it does not have."""

    retryable = False


class WorkflowStepDoesNotExistError(WorkflowRuntimeError):
    """An event was sent to a step the workflow does not have."""


class RunCancelledError(RunError):
    """The run was cancelled."""

    retryable = False


class ChildWorkflowError(RunError):
    """A child workflow failed; ``child_error`` is the child's own error as data."""

    _fields: tuple[str, ...] = ("workflow", "child_error")

    def __init__(
        self,
        message: str = "",
        *,
        workflow: str = "",
        child_error: ErrorInfo | dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.workflow = workflow
        self.child_error = (
            ErrorInfo.model_validate(child_error) if isinstance(child_error, dict) else child_error
        )

    @classmethod
    def of(
        cls, workflow: str, info: ErrorInfo, original: BaseException | None = None
    ) -> ChildWorkflowError:
        """The error a step sees when its child workflow ``workflow`` ended with ``info``: also
        an instance of the child step's exception class when known (``original``: the child's
        error itself, in-process)."""
        err = cls(
            f"child workflow {workflow} failed: {info.type}: {info.message}",
            workflow=workflow,
            child_error=info,
        )
        return _with_original(err, original)

    def _original_data(self) -> OriginalException | None:
        info = self.child_error
        if info is None or info.type != StepFailedError.__name__:
            return None
        return _original_or_none(info.details.get("original"))


WorkflowCancelledByUser = RunCancelledError
WorkflowConfigurationError = WorkflowDefinitionError


_E = TypeVar("_E", bound=BatonError)

_ERROR_TYPES: dict[str, type[BatonError]] = {
    cls.__name__: cls
    for cls in (
        BatonError,
        WorkflowDefinitionError,
        WorkflowValidationError,
        ConfigurationError,
        TopologyError,
        InvalidInputError,
        UnknownWorkflowError,
        UnknownToolError,
        ContextSerdeError,
        PayloadError,
        UnknownEventTypeError,
        StoreUnavailableError,
        RunError,
        StepFailedError,
        ToolError,
        ToolTimeout,
        WorkflowTimeoutError,
        WorkflowRuntimeError,
        WorkflowStepDoesNotExistError,
        RunCancelledError,
        ChildWorkflowError,
    )
}


def error_from_info(info: ErrorInfo, original: BaseException | None = None) -> BatonError:
    """Rebuild an error from data; a foreign type becomes the closest Baton error with its data
    (a ToolError when it came from a tool, else a RunError). A step failure whose original
    exception class is known (``original``, the exception itself, when in the same process)
    comes back as an instance of that class too."""
    cls = _ERROR_TYPES.get(info.type)
    if cls is None:
        if "tool" in info.details:
            return ToolError._from_info(info)
        return RunError(info.message)
    if cls is StepFailedError and "attempts" not in info.details:
        info = info.model_copy(update={"details": {**info.details, "attempts": info.attempts}})
    return _with_original(cls._from_info(info), original)


def type_name(exc: BaseException) -> str:
    """The name an error goes by in Baton's messages and data: a Baton error that is also an
    instance of a step's exception class goes by its Baton class (``StepFailedError``)."""
    return baton_class(type(exc)).__name__


def original_of(exc: BaseException) -> OriginalException | None:
    """A step's exception as data to rebuild it from: for an Exception that is not a Baton
    error, or a Baton error standing for one; else None."""
    cls = original_class(exc)
    if not issubclass(cls, Exception) or issubclass(cls, BatonError):
        return None
    return describe(exc)


def _with_original(err: _E, source: BaseException | None) -> _E:
    """``err`` as an instance of its original exception's class too, when that class is known:
    ``source``'s (the exception itself) or, else, the class its data names if imported here.
    Baton's fields and ``message`` win over original attributes of the same name."""
    data = err._original_data()
    if data is None:
        return err
    cls = original_class(source) if source is not None else resolve(data.type)
    combined = (
        None if cls is None or issubclass(cls, BatonError) else combined_class(type(err), cls)
    )
    if combined is None:
        return err
    if source is not None:
        exc = instantiate(combined, source.args, attributes(source))
    else:
        exc = instantiate(combined, tuple(data.args), data.attrs)
    if not isinstance(exc, type(err)):
        return err
    vars(exc).update(vars(err))
    exc.__notes__ = [*getattr(exc, "__notes__", []), err._note()]  # tracebacks say where
    return exc


def _original_or_none(value: OriginalException | dict[str, Any] | None) -> OriginalException | None:
    if isinstance(value, OriginalException) or value is None:
        return value
    try:
        return OriginalException.model_validate(value)
    except ValidationError:  # malformed data: the error still comes back, as a plain one
        return None


def error_info(exc: BaseException, attempts: int = 1) -> ErrorInfo:
    """Any exception as data: a Baton error's own info, else its type and message."""
    if isinstance(exc, BatonError):
        return exc.to_info(attempts)
    return ErrorInfo(type=type(exc).__name__, message=str(exc), attempts=attempts)


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in details.items():
        if isinstance(value, BaseModel):
            out[key] = value.model_dump(mode="json")
        elif isinstance(value, str | int | float | bool | list | dict) or value is None:
            out[key] = value
        else:
            out[key] = repr(value)
    return out

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
    │   └── PayloadError               not JSON, too large, or an unknown event type tag
    │       └── UnknownEventTypeError
    ├── StoreUnavailableError          Redis cannot be reached
    └── RunError                       a run (or part of it) failed
        ├── StepFailedError            a step raised after its retries were spent
        ├── ToolError                  a tool call failed (type, message, attempts)
        │   └── ToolTimeout
        ├── WorkflowTimeoutError
        ├── RunCancelledError
        └── ChildWorkflowError         a child workflow failed; carries the child's error
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, Field


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
            type=type(self).__name__,
            message=self.message,
            attempts=attempts,
            retryable=self.retryable,
            details=_jsonable(self.details),
        )

    @classmethod
    def _from_info(cls, info: ErrorInfo) -> Self:
        known = {k: v for k, v in info.details.items() if k in cls._fields}
        return cls(info.message, **known)


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
    when it was a Baton error."""

    _fields: tuple[str, ...] = ("step", "cause_type", "attempts", "cause")

    def __init__(
        self,
        message: str = "",
        *,
        step: str = "",
        cause_type: str = "",
        attempts: int = 1,
        cause: ErrorInfo | dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.step = step
        self.cause_type = cause_type
        self.attempts = attempts
        self.cause = ErrorInfo.model_validate(cause) if isinstance(cause, dict) else cause


class ToolError(RunError):
    """A tool call failed; a step may catch it. ``type`` is the original exception's class name."""

    _fields: tuple[str, ...] = ("tool", "type", "attempts", "retryable")

    def __init__(
        self,
        message: str = "",
        *,
        tool: str = "",
        type: str | None = None,
        attempts: int = 1,
        retryable: bool = True,
    ) -> None:
        super().__init__(message)
        self.tool = tool
        self.type = type or self.__class__.__name__
        self.attempts = attempts
        self.retryable = retryable

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
        )


class ToolTimeout(ToolError):
    """A tool call ran past its timeout."""


class WorkflowTimeoutError(RunError):
    """A run, or a step, ran past its timeout."""

    _fields: tuple[str, ...] = ("step",)

    def __init__(self, message: str = "", *, step: str | None = None) -> None:
        super().__init__(message)
        self.step = step


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
    def of(cls, workflow: str, info: ErrorInfo) -> ChildWorkflowError:
        """The error a step sees when its child workflow ``workflow`` ended with ``info``."""
        return cls(
            f"child workflow {workflow} failed: {info.type}: {info.message}",
            workflow=workflow,
            child_error=info,
        )


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
        PayloadError,
        UnknownEventTypeError,
        StoreUnavailableError,
        RunError,
        StepFailedError,
        ToolError,
        ToolTimeout,
        WorkflowTimeoutError,
        RunCancelledError,
        ChildWorkflowError,
    )
}


def error_from_info(info: ErrorInfo) -> BatonError:
    """Rebuild an error from data; a foreign type becomes the closest Baton error with its data
    (a ToolError when it came from a tool, else a RunError)."""
    cls = _ERROR_TYPES.get(info.type)
    if cls is None:
        if "tool" in info.details:
            return ToolError._from_info(info)
        return RunError(info.message)
    if cls is StepFailedError and "attempts" not in info.details:
        info = info.model_copy(update={"details": {**info.details, "attempts": info.attempts}})
    return cls._from_info(info)


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

"""Baton's one rooted error tree.

Every error a user can meet derives from :class:`BatonError`, so ``except BatonError`` catches
them all. Errors that cross the wire travel as data (:class:`ErrorInfo`) and are rebuilt on the
other side with :func:`error_from_info`::

    BatonError
    ├── WorkflowDefinitionError        a workflow or tool is defined wrongly
    │   └── WorkflowValidationError    the step graph is invalid (lists every problem)
    ├── ConfigurationError             settings or topology are wrong
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

from typing import Any

from pydantic import BaseModel, Field


class ErrorInfo(BaseModel):
    """An error as data: what crosses the wire and what the run hash stores."""

    type: str
    message: str
    attempts: int = 1
    retryable: bool = True
    details: dict[str, Any] = Field(default_factory=dict)


class BatonError(Exception):
    """Root of every Baton error."""

    retryable: bool = True

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_info(self, attempts: int = 1) -> ErrorInfo:
        return ErrorInfo(
            type=type(self).__name__,
            message=self.message,
            attempts=attempts,
            retryable=self.retryable,
            details=_jsonable(self.details),
        )


class WorkflowDefinitionError(BatonError):
    """A workflow, step or tool is defined wrongly (found at import time)."""

    retryable = False


class WorkflowValidationError(WorkflowDefinitionError):
    """The step graph is invalid; ``problems`` lists every problem, each naming its culprit."""

    def __init__(self, workflow: str, problems: list[str]) -> None:
        text = f"workflow {workflow} is invalid:\n" + "\n".join(f"  - {p}" for p in problems)
        super().__init__(text, workflow=workflow, problems=problems)
        self.problems = problems


class ConfigurationError(BatonError):
    """Settings or the queue topology are wrong."""

    retryable = False


class InvalidInputError(BatonError):
    """Bad input: rejected before anything runs or is written."""

    retryable = False


class UnknownWorkflowError(InvalidInputError):
    """No workflow is registered under that name."""


class UnknownToolError(InvalidInputError):
    """No tool is registered under that name."""


class PayloadError(InvalidInputError):
    """A payload is not JSON, is too large, or is malformed. ``payload`` keeps what was received."""


class UnknownEventTypeError(PayloadError):
    """An event's type tag names no registered event class."""


class StoreUnavailableError(BatonError):
    """The Redis store cannot be reached."""


class RunError(BatonError):
    """A run, a step or a call failed."""


class StepFailedError(RunError):
    """A step raised and its retries are spent."""

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message, **details)
        self.step = str(details.get("step", ""))
        self.cause_type = str(details.get("cause_type", ""))
        self.attempts = int(details.get("attempts", 1))


class ToolError(RunError):
    """A tool call failed; a step may catch it. ``type`` is the original exception's class name."""

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message, **details)
        self.tool = str(details.get("tool", ""))
        self.type = str(details.get("type", type(self).__name__))
        self.attempts = int(details.get("attempts", 1))
        self.retryable = bool(details.get("retryable", True))

    def to_info(self, attempts: int | None = None) -> ErrorInfo:
        return super().to_info(attempts or self.attempts)


class ToolTimeout(ToolError):
    """A tool call ran past its timeout."""


class WorkflowTimeoutError(RunError):
    """A run, or a step, ran past its timeout."""


class RunCancelledError(RunError):
    """The run was cancelled."""

    retryable = False


class ChildWorkflowError(RunError):
    """A child workflow failed; ``child_error`` is the child's own error as data."""

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message, **details)
        raw = details.get("child_error")
        self.child_error = ErrorInfo.model_validate(raw) if raw is not None else None


_ERROR_TYPES: dict[str, type[BatonError]] = {
    cls.__name__: cls
    for cls in (
        BatonError,
        WorkflowDefinitionError,
        WorkflowValidationError,
        ConfigurationError,
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
    """Rebuild an error from data; a foreign type becomes the closest Baton error with its data."""
    cls = _ERROR_TYPES.get(info.type)
    details = dict(info.details)
    if cls is WorkflowValidationError:
        return WorkflowValidationError(details.get("workflow", "?"), details.get("problems", []))
    if cls is None:
        cls = ToolError if "tool" in details else RunError
        details.setdefault("type", info.type)
    details.setdefault("attempts", info.attempts)
    err = cls(info.message, **details)
    return err


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

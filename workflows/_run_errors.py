"""The run errors: the branch of the tree for a run, a step or a call that failed.

Three of them can stand for a step's or a tool's own exception (``original``): StepFailedError,
ToolError and ChildWorkflowError are rebuilt as an instance of its class too (see
``_original``). All are imported from :mod:`workflows.errors`, where the whole tree is drawn.
"""

from __future__ import annotations

from typing import Any, Self

from workflows._error_root import (
    BatonError,
    ErrorInfo,
    original_of,
    traceback_text,
    with_original,
)
from workflows._original import OriginalException, original_or_none


class RunError(BatonError):
    """A run, a step or a call failed."""


class StepFailedError(RunError):
    """A step raised and its retries are spent; ``cause`` is the step's own error as data
    when it was a Baton error, ``original`` when it was any other Exception (and then this
    error is an instance of that exception's class too, wherever the class is known).
    ``traceback`` is the step exception's formatted traceback, size-capped (``traceback_text``)."""

    _fields: tuple[str, ...] = ("step", "cause_type", "attempts", "cause", "original", "traceback")

    def __init__(
        self,
        message: str = "",
        *,
        step: str = "",
        cause_type: str = "",
        attempts: int = 1,
        cause: ErrorInfo | dict[str, Any] | None = None,
        original: OriginalException | dict[str, Any] | None = None,
        traceback: str | None = None,
    ) -> None:
        super().__init__(message)
        self.step = step
        self.cause_type = cause_type
        self.attempts = attempts
        self.cause = ErrorInfo.model_validate(cause) if isinstance(cause, dict) else cause
        self.original = original_or_none(original)
        self.traceback = traceback

    def _original_data(self) -> OriginalException | None:
        return self.original


class ToolError(RunError):
    """A tool call failed; a step may catch it. ``type`` is the original exception's class name.

    When the tool raised an Exception that is not a Baton error, ``original`` holds it as data
    and the error is also an instance of its class (with its ``args`` and attributes) wherever
    the class is known, as a StepFailedError is: a step ported from LlamaIndex keeps its
    ``except KeyError`` around ``ctx.call_tool``. ``traceback`` is the tool exception's
    formatted traceback, size-capped (``traceback_text``)."""

    _fields: tuple[str, ...] = ("tool", "type", "attempts", "retryable", "original", "traceback")

    def __init__(
        self,
        message: str = "",
        *,
        tool: str = "",
        type: str | None = None,
        attempts: int = 1,
        retryable: bool = True,
        original: OriginalException | dict[str, Any] | None = None,
        traceback: str | None = None,
    ) -> None:
        super().__init__(message)
        self.tool = tool
        self.type = type or self.__class__.__name__
        self.attempts = attempts
        self.retryable = retryable
        self.original = original_or_none(original)
        self.traceback = traceback

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
            traceback=traceback_text(exc),
        )
        return with_original(err, exc)

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
            traceback=_text_or_none(d.get("traceback")),
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
        return with_original(err, original)

    def _original_data(self) -> OriginalException | None:
        info = self.child_error
        if info is None or info.type != StepFailedError.__name__:
            return None
        return original_or_none(info.details.get("original"))


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None

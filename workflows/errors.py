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

The root and error data are defined in ``_error_root`` and the run errors in ``_run_errors``;
every name is imported from here, and keeps this module as its ``__module__``.
"""

from __future__ import annotations

from typing import Any, Self

from workflows._error_root import (
    BatonError,
    ErrorInfo,
    error_info,
    original_of,
    type_name,
    with_original,
)
from workflows._original import OriginalException
from workflows._run_errors import (
    ChildWorkflowError,
    RunCancelledError,
    RunError,
    StepFailedError,
    ToolError,
    ToolTimeout,
    WorkflowRuntimeError,
    WorkflowStepDoesNotExistError,
    WorkflowTimeoutError,
)

__all__ = [
    "BatonError",
    "ChildWorkflowError",
    "ConfigurationError",
    "ContextSerdeError",
    "ErrorInfo",
    "InvalidInputError",
    "OriginalException",
    "PayloadError",
    "RunCancelledError",
    "RunError",
    "StepFailedError",
    "StoreUnavailableError",
    "ToolError",
    "ToolTimeout",
    "TopologyError",
    "UnknownEventTypeError",
    "UnknownToolError",
    "UnknownWorkflowError",
    "WorkflowCancelledByUser",
    "WorkflowConfigurationError",
    "WorkflowDefinitionError",
    "WorkflowRuntimeError",
    "WorkflowStepDoesNotExistError",
    "WorkflowTimeoutError",
    "WorkflowValidationError",
    "error_from_info",
    "error_info",
    "original_of",
    "type_name",
]


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


WorkflowCancelledByUser = RunCancelledError
WorkflowConfigurationError = WorkflowDefinitionError

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
    return with_original(cls._from_info(info), original)


# the root and the run errors are defined in private modules but known by this one, as before
# they moved: tracebacks, pickles and Celery's exception records name ``workflows.errors``
for _known in (ErrorInfo, *_ERROR_TYPES.values()):
    _known.__module__ = __name__
del _known

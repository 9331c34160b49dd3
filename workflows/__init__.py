"""Baton's programming model: event-driven workflows of async steps, tools and child workflows.

The same workflow code runs in-process (``await MyWorkflow().run(...)``) or distributed on
Celery + Redis (``app.Client().submit(...)``).
"""

from workflows.context import Context, ToolResult
from workflows.errors import (
    BatonError,
    ChildWorkflowError,
    ConfigurationError,
    ErrorInfo,
    InvalidInputError,
    PayloadError,
    RunCancelledError,
    RunError,
    StepFailedError,
    StoreUnavailableError,
    ToolError,
    ToolTimeout,
    UnknownEventTypeError,
    UnknownToolError,
    UnknownWorkflowError,
    WorkflowDefinitionError,
    WorkflowRuntimeError,
    WorkflowTimeoutError,
    WorkflowValidationError,
)
from workflows.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StepFailedEvent,
    StopEvent,
)
from workflows.factories import register_factory
from workflows.retry import Retry
from workflows.step import step
from workflows.tools import ToolContext, tool
from workflows.workflow import Workflow, catch_error

__all__ = [
    "BatonError",
    "ChildWorkflowError",
    "ConfigurationError",
    "Context",
    "ErrorInfo",
    "Event",
    "HumanResponseEvent",
    "InputRequiredEvent",
    "InvalidInputError",
    "PayloadError",
    "Retry",
    "RunCancelledError",
    "RunError",
    "StartEvent",
    "StepFailedError",
    "StepFailedEvent",
    "StopEvent",
    "StoreUnavailableError",
    "ToolContext",
    "ToolError",
    "ToolResult",
    "ToolTimeout",
    "UnknownEventTypeError",
    "UnknownToolError",
    "UnknownWorkflowError",
    "Workflow",
    "WorkflowDefinitionError",
    "WorkflowRuntimeError",
    "WorkflowTimeoutError",
    "WorkflowValidationError",
    "catch_error",
    "register_factory",
    "step",
    "tool",
]

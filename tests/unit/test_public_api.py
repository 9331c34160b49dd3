"""The public API of ``workflows`` is small and pinned."""

from __future__ import annotations

import workflows

EXPORTS = [
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


def test_workflows_exports_exactly_the_pinned_names() -> None:
    assert workflows.__all__ == EXPORTS


def test_every_exported_name_resolves_and_every_error_derives_from_baton_error() -> None:
    for name in EXPORTS:
        value = getattr(workflows, name)
        if name.endswith(("Error", "Timeout")):
            assert issubclass(value, workflows.BatonError), name

"""The Context a step receives, and the run's store behind it (``state_store``), at the
import paths LlamaIndex Workflows uses (``workflows.context.state_store.DictState``)."""

from workflows.context.context import (
    CONTEXT_VERSION,
    Context,
    ToolResult,
    context_data,
    read_context_data,
    state_type_of,
)
from workflows.context.state_store import DictState, RunState, Store

__all__ = [
    "CONTEXT_VERSION",
    "Context",
    "DictState",
    "RunState",
    "Store",
    "ToolResult",
    "context_data",
    "read_context_data",
    "state_type_of",
]

"""Small helpers for the unit tests: run a workflow to completion on a fresh event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import workflows.workflow as workflow_module
from workflows import StartEvent, Workflow


def run_sync(workflow: Workflow, start: StartEvent | None = None, **kwargs: Any) -> Any:
    """``await workflow.run(...)`` in a new event loop; returns the result or raises its error."""

    async def go() -> Any:
        return await workflow.run(start, **kwargs)

    return asyncio.run(go())


@contextmanager
def scratch_registry() -> Iterator[None]:
    """Workflows defined inside the block are forgotten after it: an invalid one left
    registered would stop every later worker registration (``create_app``) in this process."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(workflow_module, "_WORKFLOWS", dict(workflow_module._WORKFLOWS))
        yield

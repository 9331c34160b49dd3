"""Small helpers for the unit tests: run a workflow to completion on a fresh event loop."""

from __future__ import annotations

import asyncio
from typing import Any

from workflows import StartEvent, Workflow


def run_sync(workflow: Workflow, start: StartEvent | None = None, **kwargs: Any) -> Any:
    """``await workflow.run(...)`` in a new event loop; returns the result or raises its error."""

    async def go() -> Any:
        return await workflow.run(start, **kwargs)

    return asyncio.run(go())

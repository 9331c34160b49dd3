"""The queue topology as data: queues with their worker pools, routes and placement overrides.

Routing, the CLI (`baton up` starts one worker per queue) and the docker-compose check all read
this one description.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from workflows.errors import TopologyError

Pool = Literal["prefork", "threads", "solo", "asyncio"]


class QueueSpec(BaseModel):
    """A queue and the worker pool that serves it.

    ``prefork``: a process per slot (CPU-bound or isolated work; hard time limits hold).
    ``asyncio``: one event loop keeps ``concurrency`` steps and tools in flight at once
    (IO-bound, async: LLM and HTTP calls). ``threads`` and ``solo``: Celery's own."""

    pool: Pool = "prefork"
    concurrency: int = Field(default=2, ge=1)


class Topology(BaseModel):
    """Queues, the default queue, and overrides keyed ``Workflow``, ``Workflow.step``, ``tool.x``.

    Routes send a step, workflow or tool to another queue; modes move a tool or child workflow
    in-process or out of it, without touching code.
    """

    default_queue: str = "baton"
    queues: dict[str, QueueSpec] = Field(default_factory=lambda: {"baton": QueueSpec()})
    routes: dict[str, str] = Field(default_factory=dict)
    modes: dict[str, Literal["inprocess", "distributed"]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_queues(self) -> Topology:
        missing = {q for q in [self.default_queue, *self.routes.values()] if q not in self.queues}
        if missing:
            raise ValueError(f"queues used but not declared: {', '.join(sorted(missing))}")
        return self

    def queue_for(self, key: str, declared: str | None, fallback: str | None = None) -> str:
        """Config override, else the queue declared in code, else the fallback or default."""
        return self.routes.get(key) or declared or fallback or self.default_queue


def load_topology(path: Path) -> Topology:
    """Read and check a topology file; an error names the file and what is wrong."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return Topology.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise TopologyError(f"topology file {path}: {exc}") from exc

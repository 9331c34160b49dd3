"""Placement, with no I/O: which queue a step or tool runs on, in-process or distributed, and the
time limits of its task message — from code, overridden by the topology file.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from config import Topology
from tasks.protocol import TOOL_TASK_PREFIX, Message, StepArgs, ToolArgs
from workflows.step import Mode
from workflows.tools import ToolSpec, all_tools
from workflows.workflow import Workflow, require_workflow, runnable_workflows

TOOL_GRACE = 5.0  # hard limit after the soft one, for a tool to report its timeout
ASYNC_BACKSTOP = 1.0  # an async tool stops at its timeout; the soft limit is only a backstop
STEP_GRACE = 5.0  # a step's own timeout is enforced by asyncio; the hard limit after it


@dataclass(frozen=True)
class Placement:
    """Routing and limits for a topology, a default mode and the longest allowed time limit."""

    topology: Topology
    default_mode: Mode
    max_time_limit: float

    def step_queue(self, workflow: type[Workflow], step: str) -> str:
        spec = workflow.spec.steps[step]
        fallback = self.topology.routes.get(workflow.name) or workflow.queue
        return self.topology.queue_for(f"{workflow.name}.{step}", spec.options.queue, fallback)

    def tool_queue(self, spec: ToolSpec) -> str:
        fallback = "tools" if "tools" in self.topology.queues else None
        return self.topology.queue_for(tool_task_name(spec.name), spec.queue, fallback)

    def tool_mode(self, spec: ToolSpec) -> Mode:
        return self.topology.modes.get(tool_task_name(spec.name)) or spec.mode or self.default_mode

    def child_mode(self, workflow: str, requested: Mode | None) -> Mode:
        cls = require_workflow(workflow)
        return requested or self.topology.modes.get(workflow) or cls.mode or self.default_mode

    def step_limit(self, workflow: type[Workflow], step: str) -> float:
        """A step task's hard time limit: its timeout (enforced by asyncio) plus a grace."""
        timeout = workflow.spec.steps[step].options.timeout
        return self.max_time_limit if timeout is None else timeout + STEP_GRACE

    def tool_limits(self, spec: ToolSpec) -> tuple[float | None, float]:
        """A tool task's soft and hard time limits.

        A sync tool is stopped by Celery's soft limit (a signal in the pool process); an async
        one by asyncio at its timeout, with the soft limit a second later only as a backstop,
        so the signal cannot land while the timeout is being reported."""
        soft = spec.timeout
        if soft is not None and inspect.iscoroutinefunction(spec.fn):
            soft += ASYNC_BACKSTOP
        return soft, self.max_time_limit if soft is None else soft + TOOL_GRACE

    def uncovered_limits(self, visibility_timeout: float, queues: set[str]) -> list[str]:
        """Steps and tools served from ``queues`` whose hard time limit the visibility timeout
        does not cover: their message would be delivered again while they still run."""
        problems = []
        fix = (
            f"the visibility timeout ({visibility_timeout:g}s) does not cover it, so its "
            "message would be delivered again while it runs; raise BATON_MAX_TIME_LIMIT "
            "(the visibility timeout follows it) or lower the timeout"
        )
        for wf in runnable_workflows().values():
            for step in wf.spec.steps:
                limit = self.step_limit(wf, step)
                if self.step_queue(wf, step) in queues and limit >= visibility_timeout:
                    problems.append(
                        f"step {wf.name}.{step} may run {limit:g}s (its timeout plus "
                        f"{STEP_GRACE:g}s); {fix}"
                    )
        for spec in all_tools().values():
            _, hard = self.tool_limits(spec)
            if self.tool_queue(spec) in queues and hard >= visibility_timeout:
                problems.append(
                    f"tool {spec.name} may run {hard:g}s (its timeout plus grace); {fix}"
                )
        return problems

    def step_message(self, workflow: str, step: str, args: StepArgs) -> Message:
        cls = require_workflow(workflow)
        name = step_task_name(workflow, step)
        return Message(
            name, args, self.step_queue(cls, step), time_limit=self.step_limit(cls, step)
        )

    def tool_message(
        self, spec: ToolSpec, args: ToolArgs, countdown: float | None = None
    ) -> Message:
        soft, hard = self.tool_limits(spec)
        return Message(
            tool_task_name(spec.name),
            args,
            self.tool_queue(spec),
            countdown=countdown,
            soft_time_limit=soft,
            time_limit=hard,
        )


def step_task_name(workflow: str, step: str) -> str:
    """``Research.score``: how a step's task reads in Flower."""
    return f"{workflow}.{step}"


def tool_task_name(tool: str) -> str:
    """``tool.sentiment``: how a tool's task reads in Flower."""
    return f"{TOOL_TASK_PREFIX}{tool}"

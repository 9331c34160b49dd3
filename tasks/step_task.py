"""The body of every step task: load, replay, run, then persist and dispatch in one go.

Choreography: a step task persists its output events and sends the steps that accept them;
no process holds a run in memory. Per hop: one pipelined read, then one pipelined write that
also pushes the successor messages (a parked step's answers or a run's end may cost a few
more). A suspended step frees its worker; the last answer to its calls resends it.

This module runs a delivery end to end; its parts are the delivery's facts and clock
(:mod:`tasks.step_delivery`), the hop's read and write (:mod:`tasks.step_hop`), what a step
that goes on writes (:mod:`tasks.step_outcome`) and what a failed attempt leads to
(:mod:`tasks.step_failure`).
"""

from __future__ import annotations

import time

from tasks.attempts import Attempt
from tasks.backend import RedisBackend
from tasks.protocol import StepArgs, Where
from tasks.runtime import Runtime
from tasks.step_delivery import Delivery
from tasks.step_failure import cannot_build, failed
from tasks.step_hop import Hop, finish_message, load
from tasks.step_outcome import completed, effects_hop, suspended
from workflows._engine.executor import Completed, Failed, Suspended, execute
from workflows.context import Context
from workflows.errors import ConfigurationError, WorkflowTimeoutError
from workflows.factories import workflow_instance
from workflows.workflow import require_workflow


class StepTask:
    """One delivery of one step invocation."""

    def __init__(
        self,
        rt: Runtime,
        workflow: str,
        step: str,
        args: StepArgs,
        task_id: str | None = None,
        where: Where | None = None,
    ) -> None:
        cls = require_workflow(workflow)
        spec = cls.spec.steps[step]
        if where is None:  # not from a task's request (a hard limit reported by the main process)
            where = Where(rt.placement.step_queue(cls, step))
        self.delivery = Delivery(rt, cls, spec, args, task_id, time.time(), where)

    def run(self) -> Attempt | None:
        """Run the delivery; what it did (None: nothing, e.g. a duplicate)."""
        d = self.delivery
        state = load(d)
        if state is None:
            finish_message(d)
            return None
        try:
            workflow = workflow_instance(d.cls)
        except ConfigurationError as exc:  # its factory failed: this attempt cannot run
            return cannot_build(d, exc, state)
        inv = d.invocation(state)
        loaded = set(state.journal)
        backend = RedisBackend(d.rt, d.run_id, state.root, d.cls)
        outcome = d.rt.run(execute(workflow, d.step, Context(backend, inv), inv))
        hop = effects_hop(d, backend, inv)
        if isinstance(outcome, Completed):
            return completed(d, hop, inv, outcome, state.parent)
        if isinstance(outcome, Suspended):
            return suspended(d, hop, inv, outcome, loaded)
        return failed(d, hop, inv, outcome, loaded, state.parent)

    def hard_timeout(self, seconds: float) -> Attempt | None:
        """Celery killed this step at its hard time limit (sync code the step's own asyncio
        timeout could not interrupt): a timeout, retried or failed as its policy says."""
        d = self.delivery
        state = load(d)
        if state is None:
            return None
        d.started -= seconds  # the attempt began when the limit started counting
        inv = d.invocation(state)
        error = WorkflowTimeoutError(
            f"step {d.step.qualname} was stopped at its hard time limit ({seconds:g}s)",
            step=d.step.qualname,
        )
        hop = Hop(d.rt, d.run_id, state.root, d.task_id)
        return failed(d, hop, inv, Failed(error), set(state.journal), state.parent)

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

from tasks.backend import RedisBackend
from tasks.protocol import StepArgs
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
        self, rt: Runtime, workflow: str, step: str, args: StepArgs, task_id: str | None = None
    ) -> None:
        cls = require_workflow(workflow)
        self.delivery = Delivery(rt, cls, cls.spec.steps[step], args, task_id, time.time())

    def run(self) -> None:
        d = self.delivery
        state = load(d)
        if state is None:
            finish_message(d)
            return
        try:
            workflow = workflow_instance(d.cls)
        except ConfigurationError as exc:  # its factory failed: this attempt cannot run
            cannot_build(d, exc, state)
            return
        inv = d.invocation(state)
        loaded = set(state.journal)
        backend = RedisBackend(d.rt, d.run_id, state.root, d.cls)
        outcome = d.rt.run(execute(workflow, d.step, Context(backend, inv), inv))
        hop = effects_hop(d, backend, inv)
        if isinstance(outcome, Completed):
            completed(d, hop, inv, outcome, state.parent)
        elif isinstance(outcome, Suspended):
            suspended(d, hop, inv, outcome, loaded)
        else:
            failed(d, hop, inv, outcome, loaded, state.parent)

    def hard_timeout(self, seconds: float) -> None:
        """Celery killed this step at its hard time limit (sync code the step's own asyncio
        timeout could not interrupt): a timeout, retried or failed as its policy says."""
        d = self.delivery
        state = load(d)
        if state is None:
            return
        d.started -= seconds  # the attempt began when the limit started counting
        inv = d.invocation(state)
        error = WorkflowTimeoutError(
            f"step {d.step.qualname} was stopped at its hard time limit ({seconds:g}s)",
            step=d.step.qualname,
        )
        hop = Hop(d.rt, d.run_id, state.root, d.task_id)
        failed(d, hop, inv, Failed(error), set(state.journal), state.parent)

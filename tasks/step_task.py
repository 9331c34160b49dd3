"""The body of every step task: load, replay, run, then persist and dispatch in one go.

Choreography: a step task persists its output events and sends the steps that accept them;
no process holds a run in memory. Per hop: one pipelined read, then one pipelined write that
also pushes the successor messages (a parked step's answers or a run's end may cost a few
more). A suspended step frees its worker; the last answer to its calls resends it.

This module runs a delivery end to end; its parts are the delivery's facts and clock
(:mod:`tasks.step_delivery`), the hop's read and write (:mod:`tasks.step_hop`), what a step
that goes on writes (:mod:`tasks.step_outcome`) and what a failed attempt leads to
(:mod:`tasks.step_failure`). A rate- or concurrency-limited step first takes its slot and
permit (:mod:`tasks.limits`, as a tool call does); one over a limit is re-sent to wait in
Redis and its delivery ends, and a permit is given back when the delivery ends.
"""

from __future__ import annotations

import logging
import time

from tasks import limits
from tasks.attempts import Attempt
from tasks.backend import RedisBackend
from tasks.limits import Limited
from tasks.protocol import Span, SpanOutcome, StepArgs, Where
from tasks.runtime import Runtime
from tasks.step_delivery import Delivery, Loaded
from tasks.step_failure import cannot_build, failed
from tasks.step_hop import Hop, finish_message, load, write_span
from tasks.step_outcome import completed, effects_hop, suspended
from workflows._engine.backend import Invocation
from workflows._engine.executor import Completed, Failed, Suspended, execute
from workflows._engine.step_limits import RATE_STARTED
from workflows.context import Context
from workflows.errors import ConfigurationError, WorkflowTimeoutError
from workflows.factories import workflow_instance
from workflows.workflow import require_workflow

log = logging.getLogger("baton.worker")


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
            _give_back(d)  # a permit may have been handed to it while it waited
            return None
        inv = d.invocation(state)
        if d.step.options.rate is None and d.step.options.concurrency is None:
            return self._execute(state, inv)  # the hop as ever: no limit, no extra command
        try:
            keys = _limit_keys(d, inv)
        except Exception as exc:  # a key function raised: a failure of this attempt
            hop = Hop(d.rt, d.run_id, state.root, d.task_id)
            return failed(d, hop, inv, Failed(exc), set(state.journal), state.parent)
        waits = _wait_for_limits(d, state, inv, keys)
        if waits is not None:
            return waits
        try:
            return self._execute(state, inv)
        finally:  # completed, suspended, failed or retried: the permit goes back
            _give_back(d, keys[1])

    def _execute(self, state: Loaded, inv: Invocation) -> Attempt:
        """Build the workflow, run the step, and commit its hop."""
        d = self.delivery
        try:
            workflow = workflow_instance(d.cls)
        except ConfigurationError as exc:  # its factory failed: this attempt cannot run
            return cannot_build(d, exc, state)
        loaded = set(state.journal)
        backend = RedisBackend(d.rt, d.run_id, state.root, d.cls)
        outcome = d.rt.run(execute(workflow, d.step, Context(backend, inv), inv))
        if backend.store_error is not None:  # nothing written yet: the message comes back
            raise backend.store_error
        hop = effects_hop(d, backend, inv)
        if isinstance(outcome, Completed):
            return completed(d, hop, inv, outcome, state)
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
        try:
            return failed(d, hop, inv, Failed(error), set(state.journal), state.parent)
        finally:
            _give_back(d)


def _limit_keys(d: Delivery, inv: Invocation) -> tuple[str, str]:
    """The keys of the step's rate and concurrency limits for this input (the key functions
    take the step's event, or a batch step's list)."""
    opts = d.step.options
    rate_key = d.step.rate_key_of(inv.event) if opts.rate is not None else ""
    concurrency_key = d.step.concurrency_key_of(inv.event) if opts.concurrency is not None else ""
    return rate_key, concurrency_key


def _wait_for_limits(
    d: Delivery, state: Loaded, inv: Invocation, keys: tuple[str, str]
) -> Attempt | None:
    """The step's rate limit, then its concurrency limit: None, it runs now (holding a permit
    if the step is concurrency-limited); else the attempt that was re-sent to wait (a
    ``limited`` span), this delivery finished, holding no permit.

    The rate is charged once per attempt, at its first delivery: one that starts notes its
    attempt among the invocation's applied effects (``RATE_STARTED``, persisted by the hop
    that parks it), so the resumes that follow run without asking again."""
    opts, rt = d.step.options, d.rt
    if opts.rate is not None and state.effects_done.get(RATE_STARTED) != d.args.attempt:
        who = Limited("step", d.step.qualname, keys[0])
        at = rt.keys.rate_bucket(who.name, who.key, "step")
        res = rt.keys.reservation(d.run_id, d.args.inv_id, d.args.attempt, "step", at)
        wait = limits.take_slot(rt, who, opts.rate, res)
        if wait is not None:
            span = d.span(SpanOutcome.LIMITED, limits.rate_wait_text(who, opts.rate, wait))
            pipe = rt.redis.pipeline(transaction=False)
            write_span(rt, pipe, span)
            limits.wait_for_slot(rt, pipe, d.again().delayed(wait.delay), d.task_id)
            _give_back(d, keys[1])  # one handed to it while it waited goes to the next
            return _limited(d, span)
        inv.effects_done[RATE_STARTED] = d.args.attempt
    n = opts.concurrency
    if n is not None:
        who = Limited("step", d.step.qualname, keys[1])
        if not limits.take_permit(rt, who, n, _lease(d), _holder(d), d.again()):
            span = d.span(SpanOutcome.LIMITED, limits.permit_wait_text(who, n))
            pipe = rt.redis.pipeline(transaction=False)
            write_span(rt, pipe, span)
            pipe.execute()
            return _limited(d, span)
    return None


def _limited(d: Delivery, span: Span) -> Attempt:
    log.debug("step %s in run %s: %s", d.step.qualname, d.run_id, span.error)
    return Attempt(span)


def _holder(d: Delivery) -> str:
    return d.task_id or f"{d.args.inv_id}:{d.args.attempt}"


def _lease(d: Delivery) -> float:
    return limits.lease(d.rt.placement.step_limit(d.cls, d.step.name))


def _give_back(d: Delivery, key: str | None = None) -> None:
    """The delivery is over, however it ended: give back the permit it may hold, if the step
    is concurrency-limited (else nothing, and no command)."""
    n = d.step.options.concurrency
    if n is None:
        return
    if key is None:
        try:
            key = d.step.concurrency_key_of(d.event())
        except Exception:  # no key for its input: it never took a permit
            return
    who = Limited("step", d.step.qualname, key)
    limits.give_permit(d.rt, who, n, _lease(d), _holder(d))

"""What a failed attempt leads to: the step's retry policy (through ``core.react_to_failure``)
decides between another attempt, the workflow's error handler step, or failing the run.

Kept apart from the step going on (:mod:`tasks.step_outcome`): a failure may also come before
the step ran (its workflow's factory failed) or from outside it (a hard time limit).
"""

from __future__ import annotations

import logging

from tasks import runs
from tasks.attempts import Attempt
from tasks.protocol import CallAddress, LogKind, RetryNote, SpanOutcome, StepArgs, error_line
from tasks.step_delivery import Delivery, Loaded
from tasks.step_hop import Hop, finish_message
from workflows._engine import core
from workflows._engine.backend import Invocation
from workflows._engine.executor import Failed
from workflows._error_root import traceback_text
from workflows.errors import ConfigurationError, ErrorInfo, error_info, type_name

log = logging.getLogger("baton.worker")


def failed(
    d: Delivery,
    hop: Hop,
    inv: Invocation,
    outcome: Failed,
    loaded: set[str],
    parent: CallAddress | None,
) -> Attempt:
    """The step raised: retry it, hand it to the error handler step, or fail the run."""
    log_attempt(d, inv.attempt, outcome.error)
    failure: ErrorInfo | None = None
    retried = False
    for command in _react(d, inv, outcome.error):
        if isinstance(command, core.RetryStep):
            _retry(d, hop, inv, outcome.error, command, loaded)
            retried = True
        elif isinstance(command, core.Dispatch):
            hop.messages += d.deliver(command.deliveries)
            hop.mark_done(inv.id)
        elif isinstance(command, core.FailRun):
            failure = command.error
    attempt = _attempt(d, outcome.error, retried)
    if failure is None:
        hop.commit(attempt.span)
        return attempt
    # the message is finished only once the run has ended: a crash or a store error in
    # between leaves a redelivery (the step fails again), never a live run with nothing left
    # in flight
    hop.commit(attempt.span, finish=False)
    runs.fail_run(d.rt, d.run_id, failure, parent=parent)
    finish_message(d)
    return attempt


def cannot_build(d: Delivery, error: ConfigurationError, state: Loaded) -> Attempt:
    """The workflow's factory failed: a failure of this attempt, retried as the step's
    policy says of what the factory raised (it may pass: a model server briefly down).
    Else the run fails with the ConfigurationError naming the workflow (no error handler
    step: it would need the same instance). The run ends before the message is finished:
    a crash in between leaves a redelivery that finds the run ended, never a live run."""
    inv = d.invocation(state)
    log_attempt(d, inv.attempt, error)
    # the policy judges what the factory raised; a wrong type (no cause) is never retried
    cause = error.__cause__ if isinstance(error.__cause__, Exception) else error
    retry = next((c for c in _react(d, inv, cause) if isinstance(c, core.RetryStep)), None)
    attempt = _attempt(d, error, retried=retry is not None)
    if retry is None:
        info = error.to_info(d.args.attempt)
        runs.fail_run(d.rt, d.run_id, info, parent=state.parent)
        finish_message(d, attempt.span)
        return attempt
    hop = Hop(d.rt, d.run_id, state.root, d.task_id)
    _retry(d, hop, inv, error, retry, set(state.journal))
    hop.commit(attempt.span)
    return attempt


def _attempt(d: Delivery, error: BaseException, retried: bool) -> Attempt:
    outcome = SpanOutcome.RETRY if retried else SpanOutcome.FAILED
    span = d.span(outcome, error_line(type_name(error), str(error)))
    return Attempt(span, traceback_text(error))


def log_attempt(d: Delivery, attempt: int, error: BaseException) -> None:
    """One record per failed attempt, with its traceback: what a worker's log is read for."""
    log.warning(
        "step %s failed in run %s (attempt %d): %s: %s\n%s",
        d.step.qualname,
        d.run_id,
        attempt,
        type_name(error),
        error,
        traceback_text(error).rstrip("\n"),
    )


def _react(d: Delivery, inv: Invocation, error: BaseException) -> list[core.Command]:
    return core.react_to_failure(
        d.cls.spec, d.step, inv.id, inv.event, error, inv.attempt, d.elapsed()
    )


def _retry(
    d: Delivery,
    hop: Hop,
    inv: Invocation,
    error: BaseException,
    command: core.RetryStep,
    loaded: set[str],
) -> None:
    """Keep the calls a retry may keep (``Invocation.forget_errors``), drop the others from
    the stored journal too (fan-in and edit answers are written there by their scripts during
    the attempt), and send the next attempt."""
    known = loaded | set(inv.journal)
    inv.forget_errors()
    dropped = [c for c in known if c not in inv.journal]
    if dropped:
        hop.pipe.hdel(d.rt.keys.journal(d.run_id, inv.id), *dropped)
    hop.persist(inv, loaded)
    args = StepArgs(d.run_id, inv.id, d.args.payload, command.attempt, d.first_started)
    retry = d.rt.placement.step_message(d.cls.name, d.step.name, args)
    hop.messages.append(retry.delayed(command.delay or None))
    note = RetryNote(
        what="step",
        name=d.step.qualname,
        attempt=command.attempt,
        error=error_info(error, inv.attempt),
    )
    hop.log(LogKind.RETRY, note.model_dump_json())

"""The body of every tool task: run one attempt, retry by policy, answer the suspended step.

A tool's failure never fails the task: it is journaled as data (ToolError: type, message,
attempts, and the tool's own exception as ``original``: class name, args, JSON attributes) for
the calling step to handle, where it is rebuilt as an instance of that class too. The call id
is the tool's idempotency key, the same on every attempt and redelivery; a call already answered
is never executed again. A rate-limited tool's call first takes its slot; one that is early
is re-sent to wait in the timer set instead of running (``_take_slot``). A concurrency-limited
tool's call then takes a permit; one over the limit is re-sent to wait in the limit's waiting
list (``_take_permit``), and every attempt that holds one gives it back when it ends. The
Redis side of both is :mod:`tasks.limits`, shared with limited steps.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from tasks import limits, runs
from tasks.attempts import Attempt
from tasks.metric_counts import observe
from tasks.protocol import (
    LogKind,
    RetryNote,
    RunStatus,
    Span,
    SpanKind,
    SpanOutcome,
    ToolArgs,
    Where,
    error_line,
    log_fields,
)
from tasks.runtime import MAX_DELIVERIES, Runtime
from workflows._engine.records import JournalEntry
from workflows._error_root import traceback_text
from workflows.errors import ToolError, ToolTimeout
from workflows.tools import SyncMode, ToolSpec, all_tools, as_tool_error, get_tool

log = logging.getLogger("baton.worker")


def run_tool(
    rt: Runtime, name: str, args: ToolArgs, task_id: str | None = None, where: Where | None = None
) -> Attempt | None:
    """Run one attempt of a call; what it did (None: nothing, e.g. the call was answered)."""
    started = time.time()
    k, run_id = rt.keys, args.run_id
    pipe = rt.redis.pipeline(transaction=False)
    pipe.hget(k.run(run_id), "status")
    pipe.hexists(k.journal(run_id, args.inv_id), args.call_id)
    pipe.hincrby(k.deliveries(run_id), task_id or f"{args.call_id}:{args.attempt}", 1)
    pipe.hexists(k.done(run_id), args.inv_id)
    pipe.hexists(k.inflight(run_id), task_id or "")
    status, answered, delivered, step_done, in_flight = pipe.execute()
    # a message no longer in flight was finished by an earlier delivery (a duplicate, or the
    # requeue of a task whose hard time limit was already reported): nothing to do
    finished = task_id is not None and not in_flight
    if status != RunStatus.RUNNING or answered or step_done or finished:
        pipe = rt.redis.pipeline(transaction=False)
        rt.finished(pipe, run_id, task_id)
        if status != RunStatus.RUNNING:
            runs.expire_deliveries(rt, run_id, pipe)
        pipe.execute()
        if name in all_tools():  # a permit may have been handed to it while it waited
            _give_back(rt, get_tool(name), args, task_id)
        return None
    spec = get_tool(name)
    where = where or Where(rt.placement.tool_queue(spec))
    clock = _Clock(spec.name, args, where, started, rt)
    if delivered > MAX_DELIVERIES:
        err = ToolError(
            f"tool {name} was delivered {delivered} times (its worker keeps dying)",
            tool=name,
            type="WorkerLost",
            attempts=args.attempt,
            retryable=False,
        )
        span = clock.span(SpanOutcome.FAILED, err)
        runs.answer_call(rt, args.address, JournalEntry.error(err.to_info()), task_id, span)
        _give_back(rt, spec, args, task_id)
        return Attempt(span)
    value: Any = None
    waits, error = _limits(rt, spec, args, task_id, clock)
    if waits is not None:
        return waits
    if error is None:
        value, error = _attempt(rt, spec, args)
    # The soft limit's signal fires once; if it lands while the outcome is being reported,
    # report it again rather than lose it.
    attempt = None
    for _ in range(2):
        try:
            attempt = _report(rt, spec, args, task_id, value, error, clock)
            break
        except SoftTimeLimitExceeded:
            continue
    for _ in range(2):
        try:
            _give_back(rt, spec, args, task_id)
            break
        except SoftTimeLimitExceeded:
            continue
    if error is not None:
        _log_failure(spec.name, args, error)
    return attempt


def _limits(
    rt: Runtime, spec: ToolSpec, args: ToolArgs, task_id: str | None, clock: _Clock
) -> tuple[Attempt | None, ToolError | None]:
    """The tool's rate limit, then its concurrency limit: (the attempt that waits instead of
    running, or None; the call's failure when a limit's key cannot be computed)."""
    if spec.rate is not None:
        try:
            key = spec.limit_key(args.args)
        except Exception as exc:  # invalid arguments, or the rate_key function raised
            return None, as_tool_error(spec.name, exc, args.attempt)
        early = _take_slot(rt, spec, args, key, task_id, clock)
        if early is not None:
            return early, None
    if spec.concurrency is not None:
        try:
            key = spec.concurrency_of(args.args)
        except Exception as exc:  # invalid arguments, or the concurrency_key function raised
            return None, as_tool_error(spec.name, exc, args.attempt)
        waits = _take_permit(rt, spec, args, key, task_id, clock)
        if waits is not None:
            return waits, None
    return None, None


def _take_slot(
    rt: Runtime, spec: ToolSpec, args: ToolArgs, key: str, task_id: str | None, clock: _Clock
) -> Attempt | None:
    """Take (or find) this attempt's slot under the tool's rate limit. None: it starts now;
    else the message was re-sent to wait in the timer set until it is due (no worker holds
    it), this delivery is finished, and its span says so."""
    assert spec.rate is not None
    who = limits.Limited("tool", spec.name, key)
    reservation = rt.keys.reservation(
        args.run_id, args.call_id, args.attempt, bucket=rt.keys.rate_bucket(spec.name, key)
    )
    wait = limits.take_slot(rt, who, spec.rate, reservation)
    if wait is None:
        return None
    what = limits.rate_wait_text(who, spec.rate, wait)
    span = replace(clock.span(SpanOutcome.LIMITED), error=what)
    pipe = rt.redis.pipeline(transaction=False)
    pipe.rpush(rt.keys.spans(args.run_id), span.to_json())
    message = rt.placement.tool_message(spec, args, wait.delay)  # a new task id
    limits.wait_for_slot(rt, pipe, message, task_id)
    log.debug("tool %s in run %s (attempt %d): %s", spec.name, args.run_id, args.attempt, what)
    return Attempt(span)


def _holder(args: ToolArgs, task_id: str | None) -> str:
    return task_id or f"{args.call_id}:{args.attempt}"


def _lease(rt: Runtime, spec: ToolSpec) -> float:
    return limits.lease(rt.placement.tool_limits(spec)[1])


def _take_permit(
    rt: Runtime, spec: ToolSpec, args: ToolArgs, key: str, task_id: str | None, clock: _Clock
) -> Attempt | None:
    """Take a permit of the tool's concurrency limit. None: it runs now; else the message was
    re-framed (a new task id) onto the limit's waiting list, where no worker holds it, this
    delivery is finished, and its span says so."""
    assert spec.concurrency is not None
    who = limits.Limited("tool", spec.name, key)
    message = rt.placement.tool_message(spec, args)  # a new task id, used only if it waits
    n, holder = spec.concurrency, _holder(args, task_id)
    if limits.take_permit(rt, who, n, _lease(rt, spec), holder, message):
        return None
    what = limits.permit_wait_text(who, n)
    span = replace(clock.span(SpanOutcome.LIMITED), error=what)
    rt.redis.rpush(rt.keys.spans(args.run_id), span.to_json())
    log.debug("tool %s in run %s (attempt %d): %s", spec.name, args.run_id, args.attempt, what)
    return Attempt(span)


def _give_back(rt: Runtime, spec: ToolSpec, args: ToolArgs, task_id: str | None) -> None:
    """The attempt is over: give its permit back, if the tool is concurrency-limited."""
    if spec.concurrency is None:
        return
    try:
        key = spec.concurrency_of(args.args)
    except Exception:  # its arguments never named a key: it never took a permit
        return
    who = limits.Limited("tool", spec.name, key)
    limits.give_permit(rt, who, spec.concurrency, _lease(rt, spec), _holder(args, task_id))


def hard_timeout(
    rt: Runtime, name: str, args: ToolArgs, task_id: str, seconds: float, where: Where | None = None
) -> Attempt | None:
    """Celery killed the attempt at its hard time limit (the tool ignored the soft one)."""
    if not rt.redis.hexists(rt.keys.inflight(args.run_id), task_id):
        return None  # it reported before the kill landed
    spec = get_tool(name)
    where = where or Where(rt.placement.tool_queue(spec))
    clock = _Clock(spec.name, args, where, time.time() - seconds, rt)
    timeout = ToolTimeout(
        f"tool {name} was stopped at its hard time limit ({seconds:g}s)",
        tool=name,
        type="ToolTimeout",
        attempts=args.attempt,
    )
    attempt = _report(rt, spec, args, task_id, None, timeout, clock)
    _give_back(rt, spec, args, task_id)
    return attempt


class _Clock:
    """One attempt's span, from its start to the report that ends it."""

    def __init__(
        self, name: str, args: ToolArgs, where: Where, started: float, rt: Runtime
    ) -> None:
        self.name, self.args, self.where, self.started, self.rt = name, args, where, started, rt

    def span(self, outcome: SpanOutcome, error: ToolError | None = None) -> Span:
        """The attempt's span, also counted in the metrics (``tasks.metric_counts``)."""
        a = self.args
        span = Span(
            SpanKind.TOOL,
            self.name,
            a.run_id,
            a.inv_id,
            a.call_id,
            a.attempt,
            self.where.queue,
            self.where.worker,
            self.started,
            time.time(),
            outcome,
            "" if error is None else error_line(error.type, error.message),
        )
        observe(self.rt, span)
        return span


def _attempt(rt: Runtime, spec: ToolSpec, args: ToolArgs) -> tuple[Any, ToolError | None]:
    """One attempt: the tool's value, or its failure as a ToolError."""
    # Celery's soft limit is a signal, delivered to the main thread only (prefork, solo); on a
    # pool thread a sync tool runs on a thread of its own, bounded by asyncio instead.
    sync: SyncMode = "inline" if threading.current_thread() is threading.main_thread() else "thread"
    try:
        coro = spec.invoke_once(args.args, args.call_id, args.attempt, sync)
        return rt.run(coro), None
    except SoftTimeLimitExceeded as exc:
        timeout = ToolTimeout(
            f"tool {spec.name} timed out after {spec.timeout}s",
            tool=spec.name,
            type="ToolTimeout",
            attempts=args.attempt,
            traceback=traceback_text(exc),  # where the tool was when its time ran out
        )
        return None, timeout
    except Exception as exc:
        return None, as_tool_error(spec.name, exc, args.attempt)


def _log_failure(name: str, args: ToolArgs, error: ToolError) -> None:
    """One record per failed attempt, with the tool's traceback."""
    log.warning(
        "tool %s failed in run %s (attempt %d): %s: %s\n%s",
        name,
        args.run_id,
        args.attempt,
        error.type,
        error.message,
        (error.traceback or "").rstrip("\n"),
    )


def _report(
    rt: Runtime,
    spec: ToolSpec,
    args: ToolArgs,
    task_id: str | None,
    value: Any,
    error: ToolError | None,
    clock: _Clock,
) -> Attempt:
    """Answer the call, or send the next attempt when the policy allows one."""
    if error is None:
        span = clock.span(SpanOutcome.COMPLETED)
        runs.answer_call(rt, args.address, JournalEntry.ok(value), task_id, span)
        return Attempt(span)
    attempt = args.attempt
    if error.retryable and spec.retry.allows(attempt + 1):
        delay = spec.retry.delay_before(attempt + 1)
        message = rt.placement.tool_message(spec, replace(args, attempt=attempt + 1), delay or None)
        note = RetryNote(
            what="tool", name=spec.name, attempt=attempt + 1, error=error.to_info(attempt)
        )
        span = clock.span(SpanOutcome.RETRY, error)
        pipe = rt.redis.pipeline(transaction=False)
        pipe.xadd(rt.keys.events(args.run_id), log_fields(LogKind.RETRY, note.model_dump_json()))
        pipe.rpush(rt.keys.spans(args.run_id), span.to_json())
        rt.send([message], pipe)
        rt.finished(pipe, args.run_id, task_id)
        pipe.execute()
        if not message.countdown:  # pushed at once, not held in the timer set
            rt.ring(rt.keys.bucket_of(args.run_id))
        return Attempt(span, error.traceback or "")
    span = clock.span(SpanOutcome.FAILED, error)
    entry = JournalEntry.error(error.to_info(attempt))
    runs.answer_call(rt, args.address, entry, task_id, span)
    return Attempt(span, error.traceback or "")

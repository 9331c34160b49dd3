"""Task-backed tools, distributed: a plain Celery task's message out, its answer back.

A step's call of a tool built by ``tool_from_task`` is a Baton tool message like any other (in
flight, in the done marker, resent by the reaper) but is framed, by :func:`push_call` (the
publisher's sender for that tool), as the plain task's own message on its own queue: keyword
arguments from the call, the call id in the ``baton_call_id`` header (and as the keyword the
task opted into), and two callbacks carrying a :class:`CallTicket`: ``link`` =
``baton.answer`` and ``link_error`` = ``baton.answer_error``, Baton tasks on Baton's queue.
In the same round trip a durable timer (``tasks.timers``) schedules ``baton.tool_timeout``.

- **Answer** (``baton.answer``): journals the value with COMPLETE; a second answer of the call
  (a redelivered task, a late attempt) is ignored there.
- **Failure** (``baton.answer_error``, ``baton.tool_timeout``): only while the attempt is still
  in flight (its task id in the run's in-flight hash) and the call is open; a retry by the
  tool's policy sends the task again (a new task id, the next attempt) atomically with taking
  the attempt out of flight (``CLAIM``), so an error and a timeout racing send one retry; else
  the call is answered with the error as data (``ToolError``, ``ToolTimeout``).

The plain worker needs no Baton code. Its failure's type, message and traceback are read from
its app's result backend when it stores them as JSON; without one the step gets a
``TaskFailed`` error naming the task id.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import Any

from tasks import runs
from tasks.batch import Batch
from tasks.interop_wire import TaskMessage, frame_task, signature_dict
from tasks.metric_counts import observe
from tasks.protocol import (
    InflightRecord,
    LogKind,
    Message,
    RetryNote,
    RunStatus,
    Span,
    SpanKind,
    SpanOutcome,
    TimerEntry,
    ToolArgs,
    error_line,
    log_fields,
)
from tasks.protocol.interop import CallTicket
from tasks.runtime import Runtime, now
from workflows._engine.records import JournalEntry
from workflows.errors import ConfigurationError, ToolError, ToolTimeout
from workflows.tools import RemoteTask, ToolSpec, get_tool

log = logging.getLogger("baton.interop")

ANSWER = "baton.answer"
ANSWER_ERROR = "baton.answer_error"
TIMEOUT = "baton.tool_timeout"
CALL_HEADER = "baton_call_id"

# KEYS: the run's in-flight hash. ARGV: the attempt's task id, the writes (Batch JSON).
# Takes the attempt out of flight and applies the writes (its retry), or does nothing if an
# earlier failure or timeout of the attempt already did.
CLAIM = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
for _, c in ipairs(cjson.decode(ARGV[2])) do redis.call(unpack(c)) end
return 1
"""


def interop_queue(rt: Runtime) -> str:
    """The Baton queue the interop tasks (answers, timeouts, canvas runs) are served on."""
    return rt.topology.default_queue


def remote_of(spec: ToolSpec) -> RemoteTask:
    if spec.remote is None:
        raise ValueError(f"tool {spec.name} is not backed by a Celery task")
    return spec.remote


def time_limit(rt: Runtime, spec: ToolSpec) -> float:
    """How long an attempt may take before its timer answers it: the tool's timeout, else the
    longest time limit (always below the visibility timeout, so the reaper never takes a
    running attempt for lost)."""
    return spec.timeout if spec.timeout is not None else rt.placement.max_time_limit


def broker_mismatch(rt: Runtime, spec: ToolSpec) -> str:
    """Why the plain app would never see the calls (or Baton its answers), or ``""``: it must
    read the queue lists Baton pushes to and push its callbacks where Baton's workers read,
    so it needs Baton's queue key prefix (and Redis)."""
    remote = remote_of(spec)
    if not rt.settings.broker.startswith(("redis://", "rediss://", "unix://")):
        return ""  # a separate AMQP broker (the outbox): queues are names, not prefixed keys
    options = remote.app.conf.broker_transport_options or {}
    theirs, ours = options.get("global_keyprefix", ""), rt.publisher.key_prefix
    if theirs == ours:
        return ""
    return (
        f"tool {spec.name}: Celery app {remote.app.main!r} has queue key prefix {theirs!r} "
        f"but Baton's is {ours!r}; set its broker_transport_options global_keyprefix to "
        f"{ours!r} (app.interop.broker_options() gives the settings to share)"
    )


def push_call(rt: Runtime, spec: ToolSpec, pipe: Any, m: Message, delay: float = 0.0) -> None:
    """On ``pipe`` (a pipeline or a Batch): the plain task's message for Baton message ``m``
    (pushed, or held in the timer set for ``delay`` seconds), and its attempt's timeout timer.
    A plain app that does not share Baton's broker is a ConfigurationError (nothing is sent)."""
    a = m.args
    assert isinstance(a, ToolArgs)
    remote = remote_of(spec)
    problem = broker_mismatch(rt, spec)
    if problem:
        raise ConfigurationError(problem)
    queue = interop_queue(rt)
    sent = now() + delay  # the attempt starts when its message is released
    ticket = CallTicket(a.run_id, a.inv_id, a.call_id, spec.name, a.attempt, m.task_id, sent)
    kwargs = dict(a.args)
    if remote.key_kwarg:
        kwargs[remote.key_kwarg] = a.call_id
    plain = TaskMessage(
        remote.task,
        m.queue,
        kwargs=kwargs,
        task_id=m.task_id,
        headers={CALL_HEADER: a.call_id, "baton_run": a.run_id, "baton_attempt": a.attempt},
        link=[signature_dict(ANSWER, [ticket.dump()], queue)],
        link_error=[signature_dict(ANSWER_ERROR, [ticket.dump()], queue)],
        # past its timeout the attempt is answered (or retried) already: not worth starting
        expires=delay + time_limit(rt, spec),
    )
    bucket = rt.keys.bucket_of(a.run_id)  # the timers and outbox of the run's writes
    key, envelope = frame_task(rt.publisher, plain, bucket)
    guard = TaskMessage(TIMEOUT, queue, [ticket.dump()])
    guard_key, guard_envelope = frame_task(rt.publisher, guard, bucket)
    server = rt.server_time()
    timers = rt.keys.timers(bucket)
    if delay > 0:
        pipe.zadd(timers, {TimerEntry(key, envelope).dump(): server + delay})
    else:
        pipe.lpush(key, envelope)  # the caller rings the relays' bell once this is written
    due = server + delay + time_limit(rt, spec)
    pipe.zadd(timers, {TimerEntry(guard_key, guard_envelope).dump(): due})


def answered(rt: Runtime, result: Any, data: Any, origin: str) -> None:
    """``baton.answer``: the plain task returned ``result`` (JSON) for the ticket's call."""
    t = CallTicket.parse(data)
    k = rt.keys
    pipe = rt.redis.pipeline(transaction=False)
    pipe.hexists(k.inflight(t.run), t.task_id)
    pipe.hexists(k.journal(t.run, t.inv), t.call)
    pipe.exists(k.wait(t.run, t.inv))
    in_flight, journaled, parked = pipe.execute()
    if not in_flight and (journaled or not parked):
        log.info("tool %s in run %s: a late answer of attempt %d ignored", t.tool, t.run, t.attempt)
        return  # the attempt timed out and the call was answered (or the step went on)
    span = _span(rt, t, SpanOutcome.COMPLETED, origin)
    runs.answer_call(rt, t.address, JournalEntry.ok(result), t.task_id, span)


def failed(rt: Runtime, task_id: str, data: Any, origin: str) -> None:
    """``baton.answer_error``: the plain task ``task_id`` failed (Celery sends its errback the
    task id only); its error is read from its app's result backend if it can be."""
    t = CallTicket.parse(data)
    spec = get_tool(t.tool)
    settle(rt, spec, t, failure_of(spec, task_id or t.task_id, t.attempt), origin)


def timed_out(rt: Runtime, data: Any) -> None:
    """``baton.tool_timeout``: the attempt's time is up; a no-op if it was answered."""
    t = CallTicket.parse(data)
    spec = get_tool(t.tool)
    error = ToolTimeout(
        f"tool {spec.name} (Celery task {remote_of(spec).task}) did not answer within "
        f"{time_limit(rt, spec):g}s",
        tool=spec.name,
        type="ToolTimeout",
        attempts=t.attempt,
    )
    settle(rt, spec, t, error, "")


def settle(rt: Runtime, spec: ToolSpec, t: CallTicket, error: ToolError, origin: str) -> None:
    """A failed attempt still in flight and a call still open: retry by policy, else answer
    the call with ``error``. Anything else (a stale attempt, an answered call, an ended run)
    only takes the attempt out of flight."""
    k = rt.keys
    pipe = rt.redis.pipeline(transaction=False)
    pipe.hget(k.inflight(t.run), t.task_id)
    pipe.hget(k.run(t.run), "status")
    pipe.hexists(k.journal(t.run, t.inv), t.call)
    pipe.exists(k.wait(t.run, t.inv))
    raw, status, journaled, parked = pipe.execute()
    if raw is None:
        return  # settled already: timed out, retried, or answered
    if status != RunStatus.RUNNING or journaled or not parked:
        rt.redis.hdel(k.inflight(t.run), t.task_id)
        return
    record = InflightRecord.from_json(raw)
    if error.retryable and spec.retry.allows(t.attempt + 1):
        _retry(rt, spec, t, record.message, error, origin)
        return
    span = _span(rt, t, SpanOutcome.FAILED, origin, error)
    runs.answer_call(rt, t.address, JournalEntry.error(error.to_info(t.attempt)), t.task_id, span)
    log.warning("tool %s failed in run %s (attempt %d): %s", t.tool, t.run, t.attempt, error)


def _retry(
    rt: Runtime, spec: ToolSpec, t: CallTicket, sent: Message, error: ToolError, origin: str
) -> None:
    """Send the next attempt (after the policy's delay) as the attempt leaves flight: one
    script, so only one of an error and a timeout racing sends it."""
    attempt = t.attempt + 1
    delay = spec.retry.delay_before(attempt)
    args = sent.args
    assert isinstance(args, ToolArgs)
    message = rt.placement.tool_message(spec, replace(args, attempt=attempt))
    note = RetryNote(what="tool", name=spec.name, attempt=attempt, error=error.to_info(t.attempt))
    span = _span(rt, t, SpanOutcome.RETRY, origin, error)
    inflight = rt.keys.inflight(t.run)
    writes = Batch()
    writes.hset(inflight, message.task_id, InflightRecord(now() + delay, message).to_json())
    writes.xadd(rt.keys.events(t.run), log_fields(LogKind.RETRY, note.model_dump_json()))
    writes.commands.append(["RPUSH", rt.keys.spans(t.run), span.to_json()])
    push_call(rt, spec, writes, message, delay)
    claim = rt.redis.register_script(CLAIM)
    claim(keys=[inflight], args=[t.task_id, writes.to_json()])
    if not delay:  # pushed at once: tell the relays (a cluster), after the write
        rt.ring(rt.keys.bucket_of(t.run))


def _span(
    rt: Runtime, t: CallTicket, outcome: SpanOutcome, origin: str, error: ToolError | None = None
) -> Span:
    """The attempt's span: from when its message was sent to its answer, on the plain queue."""
    spec = get_tool(t.tool)
    span = Span(
        SpanKind.TOOL,
        t.tool,
        t.run,
        t.inv,
        t.call,
        t.attempt,
        rt.placement.tool_queue(spec),
        origin,
        t.sent,
        time.time(),
        outcome,
        "" if error is None else error_line(error.type, error.message),
    )
    observe(rt, span)
    return span


def failure_of(spec: ToolSpec, task_id: str, attempt: int) -> ToolError:
    """The plain task's failure as a ToolError: type, message and traceback from its app's
    result backend (JSON only, read once: nothing waits), else a ``TaskFailed`` naming it."""
    remote = remote_of(spec)
    meta = _stored_meta(remote.app, task_id)
    exc = meta.get("result") if isinstance(meta, dict) else None
    if not isinstance(exc, dict) or "exc_type" not in exc:
        return ToolError(
            f"Celery task {remote.task}[{task_id}] failed (its app stores no result to say "
            "why: see its worker's log or Flower)",
            tool=spec.name,
            type="TaskFailed",
            attempts=attempt,
        )
    exc_type = str(exc["exc_type"])
    args = exc.get("exc_message")
    args = list(args) if isinstance(args, list | tuple) else [args]
    message = " ".join(str(a) for a in args) if args else exc_type
    module = str(exc.get("exc_module") or "builtins")
    return ToolError(
        message,
        tool=spec.name,
        type=exc_type,
        attempts=attempt,
        original={"type": f"{module}:{exc_type}", "args": args},
        traceback=str(meta.get("traceback") or "") or None,
    )


def _stored_meta(app: Any, task_id: str) -> Any:
    """A task's stored result as raw JSON data (never unpickled, no class imported), or None."""
    backend = getattr(app, "backend", None)
    if backend is None or getattr(backend, "serializer", None) != "json":
        return None
    try:
        raw = backend.get(backend.get_key_for_task(task_id))
        return None if raw is None else json.loads(raw)
    except Exception:  # no key-value backend, or it is away: the error says less, that's all
        log.debug("could not read the stored failure of task %s", task_id, exc_info=True)
        return None

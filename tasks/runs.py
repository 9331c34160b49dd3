"""Run-level operations on Redis: create, finish, fail, cancel, answer a suspended call.

Shared by step tasks, tool tasks, the reaper and the client, so a run changes state one way only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import redis

from tasks import canvas_end, scripts
from tasks.batch import Batch
from tasks.protocol import (
    CallAddress,
    LogKind,
    Message,
    RunRecord,
    RunStatus,
    Span,
    StepArgs,
    log_fields,
)
from tasks.runtime import Runtime, now
from workflows._engine import core
from workflows._engine.records import JournalEntry
from workflows.codec import dumps, encode_event, to_data
from workflows.errors import (
    ErrorInfo,
    RunCancelledError,
    StoreUnavailableError,
    WorkflowTimeoutError,
)
from workflows.events import Event
from workflows.workflow import require_workflow

log = logging.getLogger("baton.runs")

SUBMIT_MARGIN = 0.5  # seconds before the client's timeout that a submit stops being accepted


def start_messages(rt: Runtime, workflow: str, run_id: str, start: Event) -> list[Message]:
    """Step messages for a run's start event (one per step accepting it)."""
    cls = require_workflow(workflow)
    deliveries = core.route(cls.spec, run_id, [(start, None)], batch=False)
    return delivery_messages(rt, workflow, run_id, deliveries)


def delivery_messages(
    rt: Runtime, workflow: str, run_id: str, deliveries: Sequence[core.Delivery]
) -> list[Message]:
    out = []
    for d in deliveries:
        payload = (
            [encode_event(e) for e in d.event]
            if isinstance(d.event, list)
            else encode_event(d.event)
        )
        args = StepArgs(run_id, d.invocation_id, payload)
        out.append(rt.placement.step_message(workflow, d.step, args))
    return out


def create_run(
    rt: Runtime,
    workflow: str,
    run_id: str,
    start: Event,
    *,
    parent: CallAddress | None = None,
    root: str | None = None,
    deadline: float | None = None,
    idempotency_key: str | None = None,
    pipe: Any = None,
    store: dict[str, str] | None = None,
    fields: dict[str, str] | None = None,
) -> tuple[str, bool]:
    """Write a new run and send its first steps; returns (run id, created).

    ``store``: the store the run starts with (key -> JSON), an earlier run's to continue it.
    ``fields``: more fields of the run hash (``canvas``: the Celery canvas a run continues,
    ``tasks.interop_canvas``).

    Given ``pipe``, the writes join the caller's round trip (a child run created by a step).
    Otherwise it is a submit (:func:`submit_writes`): all or nothing within the submit timeout;
    with an idempotency key already used, nothing is written and the existing run id returned.
    """
    envelope = dumps(start, rt.settings.max_payload_bytes)
    messages = start_messages(rt, workflow, run_id, start)
    k, ts = rt.keys, now()
    module = require_workflow(workflow).__module__
    status = RunStatus.RUNNING
    record = RunRecord(
        run_id, workflow, status, ts, ts, root or run_id, parent, deadline, envelope, module=module
    )
    writes = Batch()
    bucket = k.bucket_of(run_id)
    writes.hset(k.run(run_id), mapping=record.fields())
    writes.zadd(k.runs(bucket), {run_id: ts})
    # the index holds what retention keeps: trimmed as it grows, one run's worth at a time
    writes.zremrangebyscore(k.runs(bucket), "-inf", ts - rt.settings.retention_seconds)
    # gone after the last run's retention
    writes.expire(k.runs(bucket), rt.settings.retention_seconds)
    writes.xadd(k.events(run_id), log_fields(LogKind.EVENT, envelope))
    writes.sadd(k.live(bucket), run_id)
    if store:
        writes.hset(k.store(run_id), mapping=store)
    if fields:
        writes.hset(k.run(run_id), mapping=fields)
    if parent is not None:
        writes.sadd(k.children(parent.run), run_id)
    rt.send(messages, writes)
    if pipe is not None:
        writes.apply(pipe)  # the caller rings the bell once it is sent (a step's ``Hop``)
        return run_id, True
    created = submit_writes(rt, run_id, writes, idempotency_key)
    if created[1]:
        rt.ring(bucket)
    return created


def submit_writes(
    rt: Runtime, run_id: str, writes: Batch, idempotency_key: str | None
) -> tuple[str, bool]:
    """Apply a new run's writes in the CREATE script: all of them, or none once the submit
    timeout has passed (a frozen Redis runs late commands when it wakes up; by then the client
    was told the submit failed, so they must do nothing)."""
    timeout = rt.settings.submit_timeout
    k = rt.keys
    claim = k.idempotency(idempotency_key) if idempotency_key is not None else k.run(run_id)
    try:
        # the reply must be back before the client gives up: the script stops accepting a
        # little before the client's own timeout
        deadline = rt.server_time() + timeout - min(SUBMIT_MARGIN, timeout / 4)
        keys = [k.run(run_id), claim]
        args = [repr(deadline), run_id, rt.settings.retention_seconds, writes.to_json()]
        if rt.keys.buckets:
            outcome, existing = _create_replicated(rt, keys, args, timeout)
        else:
            outcome, existing = rt.script("CREATE", rt.submit_redis)(keys=keys, args=args)
    except redis.TimeoutError as exc:
        raise StoreUnavailableError(
            f"submit: Redis did not answer within {timeout}s (BATON_SUBMIT_TIMEOUT); "
            "no run was created, it is safe to retry"
        ) from exc
    if int(outcome) == 0:
        raise StoreUnavailableError(
            f"submit: Redis took longer than {timeout}s (BATON_SUBMIT_TIMEOUT) to take the run; "
            "no run was created, it is safe to retry"
        )
    return str(existing), int(outcome) == 1 and str(existing) == run_id


REPLICA_WAIT = 1.0  # seconds a cluster submit waits for a replica to hold the new run


def _create_replicated(
    rt: Runtime, keys: list[str], args: list[Any], timeout: float
) -> tuple[Any, Any]:
    """``CREATE`` on a cluster, then ``WAIT`` for one replica on the same connection: a run
    whose submit returned survives its master's failover (replication is asynchronous; a
    step's lost write is repaired by the reaper from its in-flight record, a lost run would
    be gone). With no replica in time, the run is kept and a warning logged."""

    def create(node: Any) -> list[Any]:
        pipe = node.pipeline(transaction=False)  # one connection: WAIT sees the write
        pipe.eval(scripts.CREATE, len(keys), *keys, *args)
        pipe.wait(1, int(min(REPLICA_WAIT, timeout / 2) * 1000))
        return list(pipe.execute())

    # a retry after a failover writes nothing twice: CREATE finds the run (or its claim)
    (outcome, existing), replicas = rt.on_submit_node(keys[0], create)
    if int(outcome) == 1 and not int(replicas):
        log.warning("submit: no replica confirmed run %s in time", args[1])
    return outcome, existing


def _finish(
    rt: Runtime, run_id: str, status: RunStatus, end: str, field: str, value: str, pipe: Any
) -> Any:
    """The FINISH script (see ``tasks.scripts``): final status, end entry, result or error."""
    return rt.script("FINISH")(
        keys=[rt.keys.run(run_id), rt.keys.events(run_id)],
        args=[status.value, now(), end, field, value],
        client=pipe,
    )


def finish_run(rt: Runtime, run_id: str, result: Any, stop: Event, pipe: Any) -> JournalEntry:
    """Mark the run completed and log its StopEvent on ``pipe``, atomically (first end wins).

    Returns the answer for its parent; the caller runs :func:`after_end` with the script's reply.
    """
    value = to_data(result)  # typed: a model comes back a model (codec.from_data)
    _finish(rt, run_id, RunStatus.COMPLETED, dumps(stop), "result", dumps(value), pipe)
    return JournalEntry.ok(value)


def after_end(
    rt: Runtime, run_id: str, ended: Any, parent: CallAddress | None, answer: JournalEntry
) -> None:
    """Once a run ended: answer its parent, then expire its keys (both idempotent). The run
    leaves the live set last: if this fails half-way (Redis gone), the reaper finds the ended
    run still live and settles it again (:func:`settle_ended`)."""
    if ended and parent is not None:
        answer_call(rt, parent, answer)
    if ended:
        _expire(rt, run_id)


def settle_ended(rt: Runtime, run_id: str, status: RunStatus) -> None:
    """An ended run still in the live set: its end's follow-up was cut short. Answer its
    parent again and expire its keys (both idempotent)."""
    parent = CallAddress.from_field(rt.redis.hget(rt.keys.run(run_id), "parent"))
    if parent is not None:
        reanswer_parent(rt, run_id, status, parent)
    _expire(rt, run_id)


def reanswer_parent(rt: Runtime, run_id: str, status: RunStatus, parent: CallAddress) -> None:
    """A finished child's message came again: its parent may not have heard (crash window)."""
    result, error = rt.redis.hmget(rt.keys.run(run_id), ["result", "error"])
    if status is RunStatus.COMPLETED and result is not None:
        answer_call(rt, parent, JournalEntry.ok(json.loads(result)))
    elif error is not None:
        answer_call(rt, parent, JournalEntry.error(ErrorInfo.model_validate_json(error)))


def fail_run(
    rt: Runtime,
    run_id: str,
    error: ErrorInfo,
    status: RunStatus = RunStatus.FAILED,
    parent: CallAddress | None = None,
    tell_parent: bool = True,
) -> bool:
    """Mark the run failed or cancelled (first end wins) and tell its parent (read from the run
    hash unless given; ``tell_parent=False`` for a child cancelled with its parent)."""
    text = error.model_dump_json()
    ended = _finish(rt, run_id, status, text, "error", text, None)
    if tell_parent and parent is None:
        raw = rt.redis.hget(rt.keys.run(run_id), "parent")
        parent = CallAddress.from_field(raw)
    after_end(rt, run_id, ended, parent if tell_parent else None, JournalEntry.error(error))
    return bool(ended)


def fail_past_deadline(rt: Runtime, run_id: str, parent: CallAddress | None = None) -> None:
    """A run ran past its deadline: fail it, and stop its children too."""
    error = WorkflowTimeoutError(f"run {run_id} ran past its deadline")
    fail_run(rt, run_id, error.to_info(), parent=parent)
    cancel_children(rt, run_id)


def answer_call(
    rt: Runtime,
    address: CallAddress,
    entry: JournalEntry,
    task_id: str | None = None,
    span: Span | None = None,
) -> None:
    """Journal a suspended call's answer; the last answer resumes the step (exactly once: the
    script itself sends the resume).

    ``task_id``: the tool task that answered, done with its message in the same script;
    ``span``: its attempt's span, written in the same round trip.
    """
    k = rt.keys
    keys = [k.journal(address.run, address.inv), k.wait(address.run, address.inv)]
    keys.append(k.inflight(address.run))
    args = [address.call_id, entry.to_json(), task_id or ""]
    if span is not None:  # in the script: a pipeline carrying a script costs a round trip more
        keys.append(k.spans(span.run))
        args.append(span.to_json())
    unsent = rt.script("COMPLETE")(keys=keys, args=args)
    rt.ring(k.bucket_of(address.run))  # the last answer pushed the resume
    if unsent:  # parked by a Baton that did not frame resumes yet (a rolling upgrade)
        rt.send([Message.from_json(unsent)])


def cancel_run(rt: Runtime, run_id: str, top: bool = True) -> bool:
    """Cancel a run and its children: status first (checked at every task start), then revoke.

    A cancelled child answers its parent (which sees a ChildWorkflowError); the children of a
    cancelled run do not need to."""
    info = RunCancelledError(f"run {run_id} was cancelled").to_info()
    changed = fail_run(rt, run_id, info, status=RunStatus.CANCELLED, tell_parent=top)
    task_ids = list(rt.redis.hkeys(rt.keys.inflight(run_id)))
    if task_ids:
        rt.app.control.revoke(task_ids)
    cancel_children(rt, run_id)
    return changed


def cancel_children(rt: Runtime, run_id: str) -> None:
    for child in rt.redis.smembers(rt.keys.children(run_id)):
        cancel_run(rt, str(child), top=False)


def expire_deliveries(rt: Runtime, run_id: str, pipe: Any = None) -> None:
    """A message came for a run that has ended (or expired): the delivery count it just
    bumped may have made that key anew, with no expiry, so give it one."""
    client = rt.redis if pipe is None else pipe
    client.expire(rt.keys.deliveries(run_id), rt.settings.retention_seconds)


def _expire(rt: Runtime, run_id: str) -> None:
    """Expire a finished run's keys and drop its waiters from the root run (none can be
    answered any more; a stale one would swallow an event meant for a live step)."""
    r, k = rt.redis, rt.keys
    root, canvas = r.hmget(k.run(run_id), ["root", "canvas"])
    root = root or run_id
    # a run that is a step of a Celery canvas continues it (same read: no cost for others)
    settled = not canvas or canvas_end.continue_canvas(rt, run_id, canvas)
    stale = [f for f in r.hkeys(k.waiters(root)) if f.startswith(f"{run_id}|")]
    pipe = r.pipeline(transaction=False)
    if stale:
        pipe.hdel(k.waiters(root), *stale)
    for key in k.run_keys(run_id):
        pipe.expire(key, rt.settings.retention_seconds)
    if settled:
        pipe.srem(k.live(k.bucket_of(run_id)), run_id)  # last: the reaper settles it until then
    pipe.execute()

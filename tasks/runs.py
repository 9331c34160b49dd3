"""Run-level operations on Redis: create, finish, fail, cancel, answer a suspended call.

Shared by step tasks, tool tasks and the client, so a run changes state one way only.
"""

from __future__ import annotations

import json
from typing import Any

from tasks.runtime import Message, Runtime, now
from workflows._engine import core
from workflows.codec import dumps, encode_event
from workflows.errors import ErrorInfo
from workflows.events import Event
from workflows.workflow import require_workflow

FINAL = ("completed", "failed", "cancelled")


def start_messages(rt: Runtime, workflow: str, run_id: str, start: Event) -> list[Message]:
    """Step messages for a run's start event (one per step accepting it)."""
    cls = require_workflow(workflow)
    deliveries = core.route(cls.spec, run_id, [(start, None)], batch=False)
    return delivery_messages(rt, workflow, run_id, deliveries)


def delivery_messages(
    rt: Runtime,
    workflow: str,
    run_id: str,
    deliveries: list[core.Delivery] | tuple[core.Delivery, ...],
) -> list[Message]:
    out = []
    for d in deliveries:
        payload = (
            [encode_event(e) for e in d.event]
            if isinstance(d.event, list)
            else encode_event(d.event)
        )
        out.append(rt.step_message(workflow, d.step, [run_id, d.invocation_id, payload, 1]))
    return out


def create_run(
    rt: Runtime,
    workflow: str,
    run_id: str,
    start: Event,
    *,
    parent: dict[str, Any] | None = None,
    root: str | None = None,
    deadline: float | None = None,
    idempotency_key: str | None = None,
    pipe: Any = None,
) -> tuple[str, bool]:
    """Write a new run and send its first steps; returns (run id, created).

    With an idempotency key already used, nothing is written and the existing run id returned.
    Given ``pipe``, the writes join the caller's round trip (a child run created by a step).
    """
    r, k = rt.redis, rt.keys
    envelope = dumps(start, rt.settings.max_payload_bytes)
    if idempotency_key is not None:
        ok = r.set(
            k.idempotency(idempotency_key), run_id, nx=True, ex=rt.settings.retention_seconds
        )
        if not ok:
            existing = r.get(k.idempotency(idempotency_key))
            return str(existing), False
    messages = start_messages(rt, workflow, run_id, start)
    ts = now()
    fields: dict[str, Any] = {
        "workflow": workflow,
        "status": "running",
        "input": envelope,
        "created": ts,
        "updated": ts,
        "root": root or run_id,
        "parent": json.dumps(parent) if parent else "",
        "deadline": deadline or "",
    }
    own = pipe is None
    pipe = r.pipeline(transaction=True) if own else pipe
    pipe.hset(k.run(run_id), mapping=fields)
    pipe.zadd(k.runs(), {run_id: ts})
    pipe.xadd(k.events(run_id), {"k": "event", "e": envelope})
    pipe.sadd(k.live(), run_id)
    if parent:
        pipe.sadd(k.children(parent["run"]), run_id)
    rt.send(messages, pipe)
    if own:
        try:
            pipe.execute()
        except Exception:
            if idempotency_key is not None:  # nothing half-written: free the key again
                r.delete(k.idempotency(idempotency_key))
            raise
    return run_id, True


def finish_args(status: str, end: str, field: str, value: str) -> list[Any]:
    """ARGV of the FINISH script: the final status, the end entry, the result or error."""
    return [status, now(), end, field, value]


def finish_run(
    rt: Runtime, run_id: str, result: Any, stop: Event, parent: str, pipe: Any = None
) -> int:
    """Mark the run completed and log its StopEvent, in one atomic step (first end wins).

    Given ``pipe`` the script joins it and the caller runs :func:`after_end` with its result.
    """
    value = encode_event(result) if isinstance(result, Event) else result
    args = finish_args("completed", dumps(stop), "result", dumps(value))
    ended = rt.script("FINISH")(
        keys=[rt.keys.run(run_id), rt.keys.events(run_id)], args=args, client=pipe
    )
    if pipe is None:
        after_end(rt, run_id, ended, parent, {"ok": value})
        return int(ended or 0)
    return 0  # known once the caller's pipeline ran


def after_end(rt: Runtime, run_id: str, ended: Any, parent: str, answer: dict[str, Any]) -> None:
    """Once a run ended: expire its keys and answer its parent (both idempotent)."""
    if ended:
        _expire(rt, run_id)
    if ended and parent:
        answer_call(rt, json.loads(parent), answer)


def reanswer_parent(rt: Runtime, run_id: str, status: str, parent: str) -> None:
    """A finished child's message came again: its parent may not have heard (crash window)."""
    result, error = rt.redis.hmget(rt.keys.run(run_id), ["result", "error"])
    if status == "completed" and result is not None:
        answer_call(rt, json.loads(parent), {"ok": json.loads(result)})
    elif error is not None:
        answer_call(rt, json.loads(parent), {"error": json.loads(error)})


def fail_run(
    rt: Runtime, run_id: str, error: ErrorInfo, status: str = "failed", parent: str | None = None
) -> bool:
    """Mark the run failed or cancelled (first end wins) and tell its parent."""
    text = error.model_dump_json()
    ended = rt.script("FINISH")(
        keys=[rt.keys.run(run_id), rt.keys.events(run_id)],
        args=finish_args(status, text, "error", text),
    )
    if parent is None:
        parent = str(rt.redis.hget(rt.keys.run(run_id), "parent") or "")
    after_end(rt, run_id, ended, parent, {"error": error.model_dump()})
    return bool(ended)


def answer_call(
    rt: Runtime, where: dict[str, Any], answer: dict[str, Any], task_id: str | None = None
) -> None:
    """Journal a suspended call's answer; the last answer resumes the step (exactly once).

    ``task_id``: the tool task that answered, done with its message in the same script.
    """
    run_id, inv = where["run"], where["inv"]
    resume = rt.script("COMPLETE")(
        keys=[rt.keys.journal(run_id, inv), rt.keys.wait(run_id, inv), rt.keys.inflight(run_id)],
        args=[where["call_id"], json.dumps(answer, separators=(",", ":")), task_id or ""],
    )
    if resume:
        rt.send([Message.from_json(json.loads(resume))])


def cancel_run(rt: Runtime, run_id: str, top: bool = True) -> bool:
    """Cancel a run and its children: status first (checked at every task start), then revoke."""
    from workflows.errors import RunCancelledError

    info = RunCancelledError(f"run {run_id} was cancelled").to_info()
    # a cancelled child answers its parent (which sees a ChildWorkflowError); the children of
    # a cancelled run do not need to
    changed = fail_run(rt, run_id, info, status="cancelled", parent=None if top else "")
    task_ids = list(rt.redis.hkeys(rt.keys.inflight(run_id)))
    if task_ids:
        rt.app.control.revoke(task_ids)
    cancel_children(rt, run_id)
    return changed


def cancel_children(rt: Runtime, run_id: str) -> None:
    for child in rt.redis.smembers(rt.keys.children(run_id)):
        cancel_run(rt, str(child), top=False)


def _expire(rt: Runtime, run_id: str) -> None:
    """Expire a finished run's keys and drop its waiters from the root run (none can be
    answered any more; a stale one would swallow an event meant for a live step)."""
    r, k = rt.redis, rt.keys
    root = r.hget(k.run(run_id), "root") or run_id
    stale = [f for f in r.hkeys(k.waiters(root)) if f.startswith(f"{run_id}|")]
    pipe = r.pipeline(transaction=False)
    if stale:
        pipe.hdel(k.waiters(root), *stale)
    pipe.srem(k.live(), run_id)
    for key in rt.keys.run_keys(run_id):
        pipe.expire(key, rt.settings.retention_seconds)
    pipe.execute()

"""The body of every tool task: run one attempt, retry by policy, answer the suspended step.

A tool's failure never fails the task: it is journaled as data (ToolError: type, message,
attempts) for the calling step to handle. The call id is the tool's idempotency key, the same
on every attempt and redelivery; a call already answered is never executed again.
"""

from __future__ import annotations

from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from tasks import runs
from tasks.runtime import Runtime
from tasks.stepper import MAX_DELIVERIES, run_async
from workflows.errors import ToolError, ToolTimeout
from workflows.tools import ToolSpec, as_tool_error, get_tool


def run_tool(
    rt: Runtime,
    name: str,
    run_id: str,
    inv: str,
    call_id: str,
    args: dict[str, Any],
    attempt: int,
    task_id: str | None = None,
) -> None:
    k = rt.keys
    pipe = rt.redis.pipeline(transaction=False)
    pipe.hget(k.run(run_id), "status")
    pipe.hexists(k.journal(run_id, inv), call_id)
    pipe.hincrby(k.deliveries(run_id), task_id or f"{call_id}:{attempt}", 1)
    pipe.hexists(k.done(run_id), inv)
    status, answered, delivered, step_done = pipe.execute()
    if status != "running" or answered or step_done:
        pipe = rt.redis.pipeline(transaction=False)
        rt.finished(pipe, run_id, task_id)
        pipe.execute()
        return
    spec = get_tool(name)
    where = {"run": run_id, "inv": inv, "call_id": call_id}
    if delivered > MAX_DELIVERIES:
        err = ToolError(
            f"tool {name} was delivered {delivered} times (its worker keeps dying)",
            tool=name,
            type="WorkerLost",
            attempts=attempt,
            retryable=False,
        )
        runs.answer_call(rt, where, {"error": err.to_info(attempt).model_dump()}, task_id)
        return
    value: Any = None
    error: ToolError | None = None
    try:
        value = run_async(spec.invoke_once(args, call_id, attempt, in_worker=True))
    except SoftTimeLimitExceeded:
        error = ToolTimeout(
            f"tool {name} timed out after {spec.timeout}s",
            tool=name,
            type="ToolTimeout",
            attempts=attempt,
        )
    except Exception as exc:
        error = as_tool_error(name, exc, attempt)
    # The soft limit's signal fires once; if it lands while the outcome is being reported,
    # report it again rather than lose it.
    for _ in range(2):
        try:
            _report(rt, spec, where, args, attempt, task_id, value, error)
            return
        except SoftTimeLimitExceeded:
            continue


def _report(
    rt: Runtime,
    spec: ToolSpec,
    where: dict[str, Any],
    args: dict[str, Any],
    attempt: int,
    task_id: str | None,
    value: Any,
    error: ToolError | None,
) -> None:
    """Answer the call, or send the next attempt when the policy allows one."""
    if error is None:
        runs.answer_call(rt, where, {"ok": value}, task_id)
        return
    run_id = where["run"]
    if error.retryable and spec.retry.allows(attempt + 1):
        delay = spec.retry.delay_before(attempt + 1)
        retry_args = [run_id, where["inv"], where["call_id"], args, attempt + 1]
        message = rt.tool_message(spec, retry_args, delay or None)
        pipe = rt.redis.pipeline(transaction=False)
        pipe.xadd(
            rt.keys.events(run_id), {"k": "retry", "e": error.to_info(attempt).model_dump_json()}
        )
        rt.send([message], pipe)
        rt.finished(pipe, run_id, task_id)
        pipe.execute()
        return
    runs.answer_call(rt, where, {"error": error.to_info(attempt).model_dump()}, task_id)

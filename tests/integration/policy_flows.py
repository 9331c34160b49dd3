"""Workflows with LlamaIndex-style retry policies, imported by the workers of
``test_retry_policies_distributed`` (a queue of their own, so no other worker takes them)."""

from __future__ import annotations

from workflows import Context, StartEvent, StopEvent, Workflow, step
from workflows.retry_policy import retry_policy, stop_after_delay, wait_fixed

QUEUE = "policies"


class RetryAtOnce:
    """LlamaIndex's protocol: retry at once until three attempts have failed."""

    def next(self, elapsed_time: float, attempts: int, error: Exception) -> float | None:
        return 0.0 if attempts < 3 else None


class BrokenPolicy:
    def next(self, elapsed_time: float, attempts: int, error: Exception) -> float | None:
        raise KeyError("policy bug")


class DistPolicyRetried(Workflow):
    queue = QUEUE

    @step(retry_policy=RetryAtOnce())
    async def wobble(self, ctx: Context, ev: StartEvent) -> StopEvent:
        if ctx.attempt < 3:
            raise ConnectionError(f"attempt {ctx.attempt} failed")
        return StopEvent(result=ctx.attempt)


class DistPolicyBroken(Workflow):
    queue = QUEUE

    @step(retry_policy=BrokenPolicy())
    async def explode(self, ev: StartEvent) -> StopEvent:
        raise ValueError("step broke")


class DistPolicyUntilDeadline(Workflow):
    """Fails every time; its policy stops once a second has passed since the first attempt,
    which a worker can tell only if the first attempt's start travels with the retries."""

    queue = QUEUE

    @step(retry_policy=retry_policy(wait=wait_fixed(0.2), stop=stop_after_delay(1.0)))
    async def keep_failing(self, ctx: Context, ev: StartEvent) -> StopEvent:
        info = ctx.retry_info()
        raise ConnectionError(f"retry {info.retry_number} began at {info.elapsed_seconds:.3f}s")

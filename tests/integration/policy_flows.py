"""Workflows with LlamaIndex-style retry policies, imported by the workers of
``test_retry_policies_distributed`` (a queue of their own, so no other worker takes them)."""

from __future__ import annotations

from workflows import Context, StartEvent, StopEvent, Workflow, step

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

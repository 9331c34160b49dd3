"""LlamaIndex-style retry policies (an object with ``next(elapsed_time, attempts, error)``):
accepted by ``@step``, asked after every failure, and a policy that misbehaves ends the run
with an error instead of hanging it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from workflows import (
    Context,
    StartEvent,
    StepFailedError,
    StopEvent,
    Workflow,
    WorkflowDefinitionError,
    step,
)
from workflows._engine.core import FailRun, RetryStep, react_to_failure

PROMPT = 5.0  # a run that ends "promptly" ends well within this; one that hangs never does


def run_within(workflow: Workflow, seconds: float = PROMPT) -> Any:
    """Run to the end, but never wait past ``seconds`` (a hang fails the test, not the suite)."""

    async def go() -> Any:
        return await asyncio.wait_for(workflow.run(), seconds)

    return asyncio.run(go())


class UpToThree:
    """LlamaIndex's protocol: retry at once until three attempts have failed."""

    def __init__(self) -> None:
        self.asked: list[tuple[float, int, str]] = []

    def next(self, elapsed_time: float, attempts: int, error: Exception) -> float | None:
        self.asked.append((elapsed_time, attempts, str(error)))
        return 0.0 if attempts < 3 else None


def test_a_llamaindex_style_policy_is_asked_after_each_failure_and_its_delay_used() -> None:
    policy = UpToThree()

    class PolicyRetried(Workflow):
        @step(retry_policy=policy)
        async def wobble(self, ctx: Context, ev: StartEvent) -> StopEvent:
            if ctx.attempt < 3:
                raise ConnectionError(f"attempt {ctx.attempt} failed")
            return StopEvent(result=ctx.attempt)

    assert run_within(PolicyRetried()) == 3
    assert [(attempts, error) for _, attempts, error in policy.asked] == [
        (1, "attempt 1 failed"),
        (2, "attempt 2 failed"),
    ]
    elapsed = [e for e, _, _ in policy.asked]
    assert 0.0 <= elapsed[0] <= elapsed[1]  # seconds since the first attempt started


def test_a_policy_returning_none_stops_the_retries_and_the_run_fails() -> None:
    policy = UpToThree()

    class PolicyExhausted(Workflow):
        @step(retry_policy=policy)
        async def explode(self, ev: StartEvent) -> StopEvent:
            raise ValueError("boom")

    with pytest.raises(StepFailedError) as info:
        run_within(PolicyExhausted())
    assert info.value.attempts == 3
    assert [a for _, a, _ in policy.asked] == [1, 2, 3]


class RaisingPolicy:
    def next(self, elapsed_time: float, attempts: int, error: Exception) -> float | None:
        raise KeyError("policy bug")


class StringPolicy:
    def next(self, elapsed_time: float, attempts: int, error: Exception) -> Any:
        return "soon"


class NegativePolicy:
    def next(self, elapsed_time: float, attempts: int, error: Exception) -> float | None:
        return -1.0


class PolicyRaises(Workflow):
    @step(retry_policy=RaisingPolicy())
    async def explode(self, ev: StartEvent) -> StopEvent:
        raise ValueError("step broke")


class PolicyReturnsText(Workflow):
    @step(retry_policy=StringPolicy())
    async def explode(self, ev: StartEvent) -> StopEvent:
        raise ValueError("step broke")


class PolicyReturnsNegative(Workflow):
    @step(retry_policy=NegativePolicy())
    async def explode(self, ev: StartEvent) -> StopEvent:
        raise ValueError("step broke")


@pytest.mark.parametrize(
    ("workflow", "why"),
    [
        (PolicyRaises, "RaisingPolicy.next raised KeyError: 'policy bug'"),
        (PolicyReturnsText, "StringPolicy.next returned 'soon'"),
        (PolicyReturnsNegative, "NegativePolicy.next returned -1.0"),
    ],
)
def test_a_policy_that_raises_or_returns_no_delay_fails_the_run_promptly_saying_why(
    workflow: type[Workflow], why: str
) -> None:
    with pytest.raises(StepFailedError) as info:
        run_within(workflow())
    message = info.value.message  # str() is the step's own ValueError, as in LlamaIndex
    assert message.startswith(f"step {workflow.name}.explode failed after 1 attempt(s): ")
    assert "ValueError: step broke" in message and why in message
    assert "\n" not in message


def test_the_core_fails_the_step_when_its_policy_cannot_decide() -> None:
    spec = PolicyRaises.spec
    [cmd] = react_to_failure(spec, spec.steps["explode"], "inv", StartEvent(), ValueError("x"), 1)
    assert isinstance(cmd, FailRun)
    assert cmd.error.type == "StepFailedError" and "RaisingPolicy.next raised" in cmd.error.message


def test_the_core_passes_elapsed_time_and_failures_to_the_policy() -> None:
    policy = UpToThree()

    class Elapsed(Workflow):
        @step(retry_policy=policy)
        async def go(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    go = Elapsed.spec.steps["go"]
    [cmd] = react_to_failure(Elapsed.spec, go, "inv", StartEvent(), OSError("x"), 2, elapsed=4.5)
    assert cmd == RetryStep(0.0, 3)
    assert policy.asked == [(4.5, 2, "x")]


class NoNext:
    pass


class WrongNext:
    def next(self) -> float:
        return 1.0


@pytest.mark.parametrize(
    ("policy", "kind"), [(NoNext(), "NoNext"), (WrongNext(), "WrongNext"), ("3 times", "str")]
)
def test_a_retry_policy_without_a_usable_next_method_is_a_definition_error(
    policy: Any, kind: str
) -> None:
    with pytest.raises(WorkflowDefinitionError) as info:

        class BadPolicyFlow(Workflow):
            @step(retry_policy=policy)
            async def go(self, ev: StartEvent) -> StopEvent:
                return StopEvent()

    message = str(info.value)
    assert "BadPolicyFlow.go" in message and kind in message and "next(" in message
    assert "\n" not in message


def test_the_llamaindex_retry_policy_protocol_is_importable_for_type_hints() -> None:
    from workflows.retry_policy import RetryPolicy

    policy: RetryPolicy = UpToThree()
    assert policy.next(0.0, 3, ValueError()) is None

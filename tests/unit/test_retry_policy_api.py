"""LlamaIndex's retry-policy API (``workflows.retry_policy``): every public name, the numbers
LlamaIndex's own package gives for the same calls, policies asked with the real elapsed time in
a run, ``ctx.retry_info()``, and the wire form that carries a first attempt's start time."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

import workflows.retry_policy as rp
from tasks.protocol import Message, StepArgs
from tests.unit import retry_policy_cases
from workflows import Context, PayloadError, StartEvent, StepFailedError, StopEvent, Workflow, step
from workflows.retry import RetryInfo

GOLDEN = Path(__file__).with_name("retry_policy_llama.json")
LLAMAINDEX_NAMES = {  # dir(workflows.retry_policy) in llama-index-workflows 2.26.1, less imports
    "ConstantDelayRetryPolicy",
    "ExponentialBackoffRetryPolicy",
    "RetryCondition",
    "RetryInfo",
    "RetryPolicy",
    "StopCondition",
    "WaitStrategy",
    "retry_all",
    "retry_always",
    "retry_any",
    "retry_if_exception",
    "retry_if_exception_cause_type",
    "retry_if_exception_message",
    "retry_if_exception_type",
    "retry_if_not_exception_message",
    "retry_if_not_exception_type",
    "retry_never",
    "retry_policy",
    "retry_unless_exception_type",
    "stop_after_attempt",
    "stop_after_delay",
    "stop_all",
    "stop_any",
    "stop_before_delay",
    "stop_never",
    "time_unit_type",
    "wait_chain",
    "wait_combine",
    "wait_exponential",
    "wait_exponential_jitter",
    "wait_fixed",
    "wait_full_jitter",
    "wait_incrementing",
    "wait_none",
    "wait_random",
    "wait_random_exponential",
}


def run_within(workflow: Workflow, seconds: float = 5.0) -> Any:
    async def go() -> Any:
        return await asyncio.wait_for(workflow.run(), seconds)

    return asyncio.run(go())


# --- the API and its numbers ------------------------------------------------------------------


def test_every_public_name_of_llamaindex_retry_policy_module_is_exported() -> None:
    assert set(rp.__all__) >= LLAMAINDEX_NAMES
    assert all(getattr(rp, name) is not None for name in rp.__all__)


@pytest.mark.parametrize("family", ["conditions", "waits", "stops", "policies"])
def test_every_part_gives_the_numbers_llamaindex_gives_for_the_same_calls(family: str) -> None:
    recorded = json.loads(GOLDEN.read_text())[family]
    ours = retry_policy_cases.numbers()[family]
    assert ours.keys() == recorded.keys()
    for case in recorded:
        assert ours[case] == recorded[case], case


def test_a_policy_counts_failures_from_one_and_its_wait_counts_retries_from_zero() -> None:
    seen: list[int] = []

    def wait(attempts: int, *, seed: int | None = None) -> float:
        seen.append(attempts)
        return 0.5

    policy = rp.retry_policy(wait=wait, stop=rp.stop_after_attempt(3))
    assert [policy.next(0.0, n, ValueError()) for n in (1, 2, 3)] == [0.5, 0.5, None]
    assert seen == [0, 1, 2]


def test_the_same_seed_gives_the_same_jitter_and_no_seed_draws_afresh() -> None:
    wait = rp.wait_random_exponential(multiplier=1, max=60)
    assert wait(5, seed=3) == wait(5, seed=3) != wait(5, seed=4)
    assert len({wait(5) for _ in range(20)}) > 1


def test_stop_before_delay_counts_the_wait_about_to_be_made() -> None:
    policy = rp.retry_policy(wait=rp.wait_fixed(3), stop=rp.stop_before_delay(10))
    assert policy.next(6.9, 1, ValueError()) == 3.0
    assert policy.next(7.0, 1, ValueError()) is None


def test_conditions_compose_with_plain_functions_on_either_side() -> None:
    def transient(error: BaseException) -> bool:
        return isinstance(error, ConnectionError)

    either = transient | rp.retry_if_exception_message(match="again")
    both = rp.retry_if_exception_message(match="again") & transient
    assert [either(ConnectionError("x")), either(ValueError("again")), either(ValueError())] == [
        True,
        True,
        False,
    ]
    assert [both(ConnectionError("again")), both(ValueError("again"))] == [True, False]


def test_misuse_of_a_part_is_refused_where_it_is_built() -> None:
    with pytest.raises(TypeError, match="exactly one"):
        rp.retry_if_exception_message()
    with pytest.raises(TypeError, match="exactly one"):
        rp.retry_if_exception_message(message="a", match="a")
    with pytest.raises(ValueError, match="at least one"):
        rp.wait_chain()


def test_an_exponential_wait_reaches_its_cap_instead_of_overflowing() -> None:
    assert rp.wait_exponential(max=60)(5000) == 60.0
    assert rp.wait_exponential_jitter(max=60)(5000, seed=1) == 60.0


def test_the_ready_made_policies_are_retry_policies_and_do_not_warn() -> None:
    # LlamaIndex deprecates both (DeprecationWarning); Baton keeps them: warnings are errors here
    constant = rp.ConstantDelayRetryPolicy(maximum_attempts=2, delay=90)
    backoff = rp.ExponentialBackoffRetryPolicy(jitter=False)
    assert isinstance(constant, rp.RetryPolicy) and isinstance(backoff, rp.RetryPolicy)
    assert isinstance(rp.retry_policy(), rp.RetryPolicy)
    assert [constant.next(0.0, n, ValueError()) for n in (1, 2)] == [90.0, None]
    assert [backoff.next(0.0, n, ValueError()) for n in (1, 2, 3, 5)] == [1.0, 2.0, 4.0, None]


# --- in a run ---------------------------------------------------------------------------------


def test_a_composed_policy_retries_only_the_errors_its_condition_accepts() -> None:
    class ApiOnlyConnections(Workflow):
        @step(
            retry_policy=rp.retry_policy(
                retry=rp.retry_if_exception_type(ConnectionError),
                wait=rp.wait_none(),
                stop=rp.stop_after_attempt(5),
            )
        )
        async def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
            if ctx.attempt == 1:
                raise ConnectionError("flaky")
            raise ValueError("broken for good")

    with pytest.raises(StepFailedError, match=r"after 2 attempt\(s\): ValueError"):
        run_within(ApiOnlyConnections())


def test_stop_after_delay_is_told_the_real_time_since_the_first_attempt() -> None:
    class ApiUntilDeadline(Workflow):
        @step(retry_policy=rp.retry_policy(wait=rp.wait_fixed(0.05), stop=rp.stop_after_delay(0.3)))
        async def go(self, ev: StartEvent) -> StopEvent:
            raise ConnectionError("down")

    started = time.monotonic()
    with pytest.raises(StepFailedError) as info:
        run_within(ApiUntilDeadline())
    assert time.monotonic() - started >= 0.3
    assert 3 <= info.value.attempts <= 8


def test_ctx_retry_info_gives_the_retry_number_and_the_time_since_the_first_attempt() -> None:
    seen: list[RetryInfo] = []

    class ApiRecorded(Workflow):
        @step(retry_policy=rp.retry_policy(wait=rp.wait_fixed(0.05), stop=rp.stop_after_attempt(3)))
        async def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
            seen.append(ctx.retry_info())
            if ctx.attempt < 3:
                raise ConnectionError("again")
            return StopEvent(result="ok")

    assert run_within(ApiRecorded()) == "ok"
    assert [i.retry_number for i in seen] == [0, 1, 2]
    assert seen[0].elapsed_seconds == 0.0
    assert 0.04 <= seen[1].elapsed_seconds < seen[2].elapsed_seconds < 2.0
    assert all(i.last_exception is None and i.last_failed_at is None for i in seen)


def test_a_condition_that_raises_fails_the_run_saying_why() -> None:
    def broken(error: BaseException) -> bool:
        raise LookupError("no such rule")

    class ApiBrokenCondition(Workflow):
        @step(retry_policy=rp.retry_policy(retry=rp.retry_if_exception(broken)))
        async def go(self, ev: StartEvent) -> StopEvent:
            raise ConnectionError("down")

    with pytest.raises(StepFailedError, match=r"not retried: retry policy .*raised LookupError"):
        run_within(ApiBrokenCondition())


def test_retry_info_of_a_first_attempt_is_zero_whatever_the_clock_says() -> None:
    assert RetryInfo.of_attempt(1, time.monotonic() - 50) == RetryInfo(0, 0.0, None, None)
    later = RetryInfo.of_attempt(3, time.monotonic() - 2.0)
    assert later.retry_number == 2 and 2.0 <= later.elapsed_seconds < 3.0
    assert RetryInfo.of_attempt(2, None).elapsed_seconds == 0.0


# --- the wire ---------------------------------------------------------------------------------

ENVELOPE = {"type": "Go", "data": {}}


def test_a_retry_message_carries_the_first_attempts_start_as_a_fifth_argument() -> None:
    args = StepArgs("r1", "i1", ENVELOPE, 2, 1700000000.25)
    message = Message("Flow.go", args, "baton", "t1", 0.5, None, 20.0)
    assert message.to_json() == (
        '["Flow.go",["r1","i1",{"type":"Go","data":{}},2,1700000000.25],"baton","t1",0.5,null,20.0]'
    )
    assert Message.from_json(message.to_json()) == message


def test_a_message_without_a_start_time_keeps_the_four_argument_form_older_batons_read() -> None:
    assert StepArgs("r1", "i1", ENVELOPE, 2).wire() == ["r1", "i1", ENVELOPE, 2]
    older = StepArgs.from_wire(["r1", "i1", ENVELOPE, 3])
    assert older == StepArgs("r1", "i1", ENVELOPE, 3) and older.first_started is None


def test_a_step_message_with_too_many_arguments_is_a_payload_error() -> None:
    with pytest.raises(PayloadError):
        Message.from_json('["Flow.go",["r1","i1",{},2,1.0,"extra"],"baton","t1",null,null,null]')

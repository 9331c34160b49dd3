"""The same calls into ``workflows.retry_policy``, run by Baton's tests and by LlamaIndex's
package (to record the numbers it gives). Only the public API is used, so this file runs
against either. Regenerate the recorded numbers (llama-index-workflows 2.26.1, in its own
venv, from a directory outside this repo so its ``workflows`` is the one imported)::

    cd /tmp && /path/to/llama-venv/bin/python /path/to/baton/tests/unit/retry_policy_cases.py \
        > /path/to/baton/tests/unit/retry_policy_llama.json
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import workflows.retry_policy as rp

SEEDS = (1, 42, 12345)


class Boom(Exception):
    pass


def _chained() -> BaseException:
    """RuntimeError from OSError from ConnectionError (explicit ``raise ... from``)."""
    low = ConnectionError("low")
    mid = OSError("mid")
    mid.__cause__ = low
    top = RuntimeError("top")
    top.__cause__ = mid
    return top


def _implicit() -> BaseException:
    """RuntimeError raised while handling a ConnectionError (``__context__`` only)."""
    top = RuntimeError("top")
    top.__context__ = ConnectionError("low")
    return top


ERRORS: list[BaseException] = [
    ValueError("bad"),
    ConnectionError("HTTP 503 please retry"),
    TimeoutError("slow"),
    _chained(),
    _implicit(),
    Boom("please retry"),
]


def conditions() -> dict[str, Any]:
    def is_os(e: BaseException) -> bool:
        return isinstance(e, OSError)

    def is_timeout(e: BaseException) -> bool:
        return isinstance(e, TimeoutError)

    cases: dict[str, Callable[[BaseException], bool]] = {
        "type_conn": rp.retry_if_exception_type(ConnectionError),
        "type_tuple": rp.retry_if_exception_type((TimeoutError, ValueError)),
        "type_default": rp.retry_if_exception_type(),
        "not_type": rp.retry_if_not_exception_type(ValueError),
        "unless_type": rp.retry_unless_exception_type((ValueError, TimeoutError)),
        "msg_exact": rp.retry_if_exception_message(message="please retry"),
        "msg_match": rp.retry_if_exception_message(match=r"HTTP 5\d\d"),
        "not_msg": rp.retry_if_not_exception_message(match="retry"),
        "cause_conn": rp.retry_if_exception_cause_type(ConnectionError),
        "cause_oserror": rp.retry_if_exception_cause_type(OSError),
        "predicate": rp.retry_if_exception(lambda e: "slow" in str(e)),
        "and": rp.retry_if_exception_type(Exception) & rp.retry_if_exception_message(match="retry"),
        "or": rp.retry_if_exception_type(ValueError) | rp.retry_if_exception_message(match="retry"),
        "function_and": is_os & rp.retry_if_exception_message(match="HTTP"),
        "function_or": is_timeout | rp.retry_never(),
        "any": rp.retry_any(rp.retry_never(), rp.retry_if_exception_type(Boom)),
        "all": rp.retry_all(rp.retry_always(), rp.retry_if_not_exception_type(Boom)),
        "always": rp.retry_always(),
        "never": rp.retry_never(),
    }
    return {name: [condition(e) for e in ERRORS] for name, condition in cases.items()}


def waits() -> dict[str, Any]:
    def quarter(attempts: int, *, seed: int | None = None) -> float:
        return 0.25

    parts: list[Any] = [rp.wait_fixed(1), rp.wait_incrementing(0, 1), rp.wait_random(0, 1)]
    cases: dict[str, Any] = {
        "fixed": rp.wait_fixed(2.5),
        "fixed_timedelta": rp.wait_fixed(timedelta(milliseconds=1500)),
        "none": rp.wait_none(),
        "exponential": rp.wait_exponential(),
        "exponential_args": rp.wait_exponential(multiplier=0.5, exp_base=3, max=20, min=1),
        "exponential_timedelta": rp.wait_exponential(
            max=timedelta(seconds=5), min=timedelta(seconds=2)
        ),
        "incrementing": rp.wait_incrementing(),
        "incrementing_args": rp.wait_incrementing(start=1, increment=2, max=6),
        "incrementing_down": rp.wait_incrementing(start=3, increment=-2),
        "random": rp.wait_random(),
        "random_args": rp.wait_random(min=0.5, max=timedelta(seconds=2)),
        "exponential_jitter": rp.wait_exponential_jitter(),
        "exponential_jitter_args": rp.wait_exponential_jitter(
            initial=0.5, exp_base=3, max=10, jitter=2
        ),
        "random_exponential": rp.wait_random_exponential(),
        "random_exponential_args": rp.wait_random_exponential(
            multiplier=2, exp_base=3, max=30, min=1
        ),
        "full_jitter": rp.wait_full_jitter(multiplier=1, max=8),
        "chain": rp.wait_chain(rp.wait_fixed(1), rp.wait_fixed(2), rp.wait_random(5, 6)),
        "combine": rp.wait_combine(rp.wait_fixed(1), rp.wait_random(0, 1)),
        "plus": rp.wait_fixed(3) + rp.wait_exponential(max=10),
        "sum": sum(parts),
        "function_plus": quarter + rp.wait_fixed(1),
    }
    return {
        name: {str(seed): [wait(n, seed=seed) for n in range(6)] for seed in SEEDS}
        for name, wait in cases.items()
    }


def stops() -> dict[str, Any]:
    cases: dict[str, Any] = {
        "after_attempt": rp.stop_after_attempt(3),
        "after_delay": rp.stop_after_delay(10),
        "after_delay_timedelta": rp.stop_after_delay(timedelta(seconds=10)),
        "before_delay": rp.stop_before_delay(10),
        "or": rp.stop_after_attempt(5) | rp.stop_after_delay(10),
        "and": rp.stop_after_attempt(2) & rp.stop_before_delay(10),
        "any": rp.stop_any(rp.stop_never(), rp.stop_after_attempt(4)),
        "all": rp.stop_all(rp.stop_after_attempt(1), rp.stop_never()),
        "never": rp.stop_never(),
    }
    grid = [
        (attempts, elapsed, sleep)
        for attempts in (1, 2, 3, 4, 5)
        for elapsed in (0.0, 4.0, 9.5, 10.0, 12.0)
        for sleep in (0.0, 0.5, 1.0)
    ]
    return {
        name: [stop(a, e, upcoming_sleep=s) for a, e, s in grid] for name, stop in cases.items()
    }


def policies() -> dict[str, Any]:
    with warnings.catch_warnings():  # LlamaIndex deprecates the two ready-made policies
        warnings.simplefilter("ignore", DeprecationWarning)
        constant = rp.ConstantDelayRetryPolicy(maximum_attempts=4, delay=2)
        constant_default = rp.ConstantDelayRetryPolicy()
        constant_long = rp.ConstantDelayRetryPolicy(delay=100)
        backoff = rp.ExponentialBackoffRetryPolicy()
        backoff_exact = rp.ExponentialBackoffRetryPolicy(
            maximum_attempts=6, initial_delay=0.5, multiplier=3, max_delay=10, jitter=False
        )
    cases: dict[str, Any] = {
        "default": rp.retry_policy(),
        "typed": rp.retry_policy(
            retry=rp.retry_if_exception_type(ConnectionError),
            wait=rp.wait_exponential(multiplier=1, exp_base=2, max=30),
            stop=rp.stop_after_attempt(5),
        ),
        "before_delay": rp.retry_policy(wait=rp.wait_fixed(3), stop=rp.stop_before_delay(10)),
        "attempts_or_delay": rp.retry_policy(
            wait=rp.wait_random(1, 2), stop=rp.stop_after_attempt(6) | rp.stop_after_delay(8)
        ),
        "chain": rp.retry_policy(
            wait=rp.wait_chain(rp.wait_fixed(1), rp.wait_fixed(7)), stop=rp.stop_never()
        ),
        "constant": constant,
        "constant_default": constant_default,
        "constant_long": constant_long,
        "backoff": backoff,
        "backoff_exact": backoff_exact,
    }
    errors = [ConnectionError("x"), ValueError("y")]
    return {
        name: [
            policy.next(elapsed, attempts, error, seed=7)
            for attempts in range(7)
            for elapsed in (0.0, 5.0, 9.0)
            for error in errors
        ]
        for name, policy in cases.items()
    }


def numbers() -> dict[str, Any]:
    """Every case's answers, as JSON data."""
    data = {"conditions": conditions(), "waits": waits(), "stops": stops()}
    data["policies"] = policies()
    result: dict[str, Any] = json.loads(json.dumps(data))
    return result


if __name__ == "__main__":
    print(json.dumps(numbers(), indent=1, sort_keys=True))

"""LlamaIndex Workflows compatibility: ``from workflows.retry_policy import ...``.

The same public API as LlamaIndex's module: the ``RetryPolicy`` protocol, the composable
``retry_policy(retry=..., wait=..., stop=...)`` and its parts (``retry_if_*`` conditions
combined with ``&``/``|``, ``wait_*`` strategies added with ``+``/``sum()``, ``stop_*``
conditions combined with ``&``/``|``), the ready-made ``ConstantDelayRetryPolicy`` and
``ExponentialBackoffRetryPolicy``, and ``RetryInfo``. A policy goes on ``@step(retry_policy=...)``
and is asked, in both runtimes, after each failure of the step::

    policy = retry_policy(
        retry=retry_if_exception_type((TimeoutError, ConnectionError)),
        wait=wait_exponential(multiplier=1, exp_base=2, max=30),
        stop=stop_after_attempt(5) | stop_after_delay(120),
    )
"""

from __future__ import annotations

from workflows._retry.conditions import (
    RetryCondition,
    retry_all,
    retry_always,
    retry_any,
    retry_if_exception,
    retry_if_exception_cause_type,
    retry_if_exception_message,
    retry_if_exception_type,
    retry_if_not_exception_message,
    retry_if_not_exception_type,
    retry_never,
    retry_unless_exception_type,
)
from workflows._retry.stops import (
    StopCondition,
    stop_after_attempt,
    stop_after_delay,
    stop_all,
    stop_any,
    stop_before_delay,
    stop_never,
)
from workflows._retry.waits import (
    WaitStrategy,
    time_unit_type,
    wait_chain,
    wait_combine,
    wait_exponential,
    wait_exponential_jitter,
    wait_fixed,
    wait_full_jitter,
    wait_incrementing,
    wait_none,
    wait_random,
    wait_random_exponential,
)
from workflows.retry import Retry, RetryInfo, RetryPolicy


class _ComposedRetryPolicy:
    """A policy made of a retry condition, a wait strategy and a stop condition.

    After failure number ``attempts`` (1 after the first): no retry if ``retry`` rejects the
    error; else the wait for retry ``attempts - 1`` (strategies count retries from 0), unless
    ``stop`` says to give up, given that wait as ``upcoming_sleep``.
    """

    def __init__(
        self, retry: RetryCondition | None, wait: WaitStrategy, stop: StopCondition
    ) -> None:
        self.retry = retry
        self.wait = wait
        self.stop = stop

    def next(
        self, elapsed_time: float, attempts: int, error: Exception, *, seed: int | None = None
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to stop retrying."""
        if self.retry is not None and not self.retry(error):
            return None
        # a direct caller passing attempts=0 gets the first wait, not wait_chain's last
        delay = self.wait(max(attempts - 1, 0), seed=seed)
        if self.stop(attempts, elapsed_time, upcoming_sleep=delay):
            return None
        return delay


def retry_policy(
    retry: RetryCondition | None = None,
    wait: WaitStrategy | None = None,
    stop: StopCondition | None = None,
) -> RetryPolicy:
    """A policy from its three parts. By default: retry any exception, wait 5 s, stop after
    the third failed attempt (``wait_fixed(5)``, ``stop_after_attempt(3)``)."""
    return _ComposedRetryPolicy(
        retry,
        wait if wait is not None else wait_fixed(5),
        stop if stop is not None else stop_after_attempt(3),
    )


def ConstantDelayRetryPolicy(maximum_attempts: int = 3, delay: float = 5.0) -> Retry:
    """At most ``maximum_attempts`` attempts, ``delay`` seconds apart, as a Baton Retry (it
    also answers LlamaIndex's ``next``). Not deprecated in Baton: no warning."""
    return Retry(max_attempts=max(maximum_attempts, 1), delay=delay, backoff=1.0, max_delay=delay)


def ExponentialBackoffRetryPolicy(
    maximum_attempts: int = 5,
    initial_delay: float = 1.0,
    multiplier: float = 2.0,
    max_delay: float = 60.0,
    jitter: bool = True,
) -> RetryPolicy:
    """At most ``maximum_attempts`` attempts; retry n waits ``initial_delay * multiplier**(n-1)``
    (at most ``max_delay``), or with ``jitter`` a uniform draw below that. Not deprecated in
    Baton: no warning."""
    wait: WaitStrategy
    if jitter:
        wait = wait_random_exponential(multiplier=initial_delay, exp_base=multiplier, max=max_delay)
    else:
        wait = wait_exponential(multiplier=initial_delay, exp_base=multiplier, max=max_delay)
    return _ComposedRetryPolicy(None, wait, stop_after_attempt(maximum_attempts))


__all__ = [
    "ConstantDelayRetryPolicy",
    "ExponentialBackoffRetryPolicy",
    "Retry",
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
]

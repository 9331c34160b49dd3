"""Retry policies shared by steps and tools, and the LlamaIndex policy protocol steps accept.

A step's policy is asked one question after each failure (:meth:`Retry.after_failure`): the
delay before the next attempt, or None to stop. Baton's :class:`Retry` answers it from its
fields; any object with LlamaIndex's ``next(elapsed_time, attempts, error)`` (such as those
``workflows.retry_policy`` builds) is wrapped in a :class:`PolicyRetry` that asks it. Both are
plain objects on the step's options, so the distributed runtime evaluates them in the worker,
from the class definition. Both runtimes pass the seconds since the step's first attempt began.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, cast, runtime_checkable

from pydantic import BaseModel, Field

from workflows.errors import ConfigurationError, WorkflowDefinitionError


class Retry(BaseModel):
    """At most ``max_attempts`` attempts; attempt n waits ``delay * backoff**(n-1)`` (capped)."""

    model_config = {"frozen": True, "extra": "forbid"}  # a misspelt option must not vanish

    max_attempts: int = Field(default=1, ge=1)
    delay: float = Field(default=0.0, ge=0)
    backoff: float = Field(default=2.0, ge=1)
    max_delay: float = Field(default=60.0, ge=0)

    def __init__(self, max_attempts: int = 1, **kwargs: float) -> None:
        super().__init__(max_attempts=max_attempts, **kwargs)

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2 = first retry)."""
        if attempt <= 1:
            return 0.0
        return float(min(self.max_delay, self.delay * self.backoff ** (attempt - 2)))

    def allows(self, attempt: int) -> bool:
        return attempt <= self.max_attempts

    def after_failure(self, failed: int, error: BaseException, elapsed: float) -> float | None:
        """The delay before the attempt after ``failed``, or None when none is allowed."""
        del error, elapsed
        return self.delay_before(failed + 1) if self.allows(failed + 1) else None

    def next(
        self, elapsed_time: float, attempts: int, error: Exception, *, seed: int | None = None
    ) -> float | None:
        """The same answer through LlamaIndex's protocol (``attempts``: failures so far; a
        caller's 0 is read as 1)."""
        del seed
        return self.after_failure(max(attempts, 1), error, elapsed_time)


NO_RETRY = Retry(1)


@runtime_checkable
class RetryPolicy(Protocol):
    """LlamaIndex's retry-policy protocol: after a failure, the seconds to wait before the
    next attempt, or None to stop. ``attempts`` counts the failures so far (1 after the first);
    ``elapsed_time`` is the seconds since the step's first attempt began. A ``next`` may also
    take LlamaIndex's keyword ``seed`` (Baton calls it without)."""

    def next(self, elapsed_time: float, attempts: int, error: Exception) -> float | None: ...


@dataclass(frozen=True)
class RetryInfo:
    """A step's retry state, as ``ctx.retry_info()`` returns it (LlamaIndex's record).

    ``retry_number``: 0 on the first attempt, 1 on the first retry, ...; ``elapsed_seconds``:
    seconds since the first attempt began (0.0 on the first attempt). Baton does not keep the
    previous failure for the step: ``last_exception`` and ``last_failed_at`` are always None.
    """

    retry_number: int
    elapsed_seconds: float
    last_exception: Exception | None
    last_failed_at: datetime | None

    @classmethod
    def of_attempt(cls, attempt: int, first_started: float | None) -> RetryInfo:
        """The state of ``attempt`` (1 = the first), whose first attempt began at
        ``first_started`` (``time.monotonic()`` seconds), when the runtime knows it."""
        retry_number = max(attempt - 1, 0)
        if retry_number == 0 or first_started is None:
            return cls(retry_number, 0.0, None, None)
        return cls(retry_number, max(0.0, time.monotonic() - first_started), None, None)


@dataclass(frozen=True)
class PolicyRetry:
    """A LlamaIndex-style policy object as Baton's retry machinery asks it.

    ``elapsed`` is the seconds since the step's first attempt started (in-process by the
    monotonic clock; distributed by the wall clock, carried from worker to worker).
    """

    policy: RetryPolicy

    @property
    def name(self) -> str:
        return type(self.policy).__name__

    def after_failure(self, failed: int, error: BaseException, elapsed: float) -> float | None:
        """The policy's delay; an error in it, or an answer that is no delay, is a
        ConfigurationError naming the policy (the step is then not retried)."""
        if not isinstance(error, Exception):  # KeyboardInterrupt and kin are never retried
            return None
        try:
            delay = self.policy.next(elapsed, failed, error)
        except Exception as exc:
            raise ConfigurationError(
                f"retry policy {self.name}.next raised {type(exc).__name__}: {exc}"
            ) from exc
        if delay is None:
            return None
        if not _is_delay(delay):
            raise ConfigurationError(
                f"retry policy {self.name}.next returned {delay!r}, "
                "not a delay in seconds (a number >= 0) or None"
            )
        return float(delay)


StepRetry = Retry | PolicyRetry


def step_retry(policy: object, step: str) -> StepRetry:
    """A step's ``retry``/``retry_policy`` option as Baton asks it; anything that is neither a
    :class:`Retry` nor has a usable ``next`` method is a one-line definition error."""
    if isinstance(policy, Retry | PolicyRetry):
        return policy
    method = getattr(policy, "next", None)
    if callable(method) and _takes_three(method):
        return PolicyRetry(cast(RetryPolicy, policy))  # duck-typed, as LlamaIndex does
    raise WorkflowDefinitionError(
        f"step {step}: retry_policy must be a Retry or an object with a method "
        f"next(elapsed_time, attempts, error); got {type(policy).__name__}"
    )


def _takes_three(method: object) -> bool:
    try:
        inspect.signature(method).bind(0.0, 1, Exception())  # type: ignore[arg-type]
    except TypeError:
        return False
    except ValueError:  # no signature to read (a builtin): let the call decide
        return True
    return True


def _is_delay(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value >= 0

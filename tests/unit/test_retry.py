"""Retry policies: bounded attempts, growing and capped delays, no silently ignored options."""

from __future__ import annotations

import pydantic
import pytest

from workflows import Retry
from workflows.retry_policy import ConstantDelayRetryPolicy


def test_retry_allows_at_most_max_attempts() -> None:
    policy = Retry(max_attempts=3)
    assert [policy.allows(n) for n in (1, 2, 3, 4)] == [True, True, True, False]


def test_retry_delay_grows_by_backoff_and_is_capped() -> None:
    policy = Retry(max_attempts=6, delay=1.0, backoff=3.0, max_delay=10.0)
    assert [policy.delay_before(n) for n in (1, 2, 3, 4, 5)] == [0.0, 1.0, 3.0, 9.0, 10.0]


def test_a_misspelt_retry_option_is_rejected_not_ignored() -> None:
    with pytest.raises(pydantic.ValidationError, match="maximum_attempts"):
        Retry(maximum_attempts=3)


def test_constant_delay_retry_policy_keeps_its_llamaindex_meaning() -> None:
    policy = ConstantDelayRetryPolicy(delay=2, maximum_attempts=4)
    assert policy.max_attempts == 4
    assert [policy.delay_before(n) for n in (2, 3, 4)] == [2.0, 2.0, 2.0]
    assert ConstantDelayRetryPolicy().max_attempts == 3

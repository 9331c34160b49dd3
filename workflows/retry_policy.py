"""LlamaIndex Workflows compatibility: ``from workflows.retry_policy import ...``."""

from workflows.retry import Retry, RetryPolicy


def ConstantDelayRetryPolicy(maximum_attempts: int = 3, delay: float = 5.0) -> Retry:
    """LlamaIndex's ``ConstantDelayRetryPolicy(maximum_attempts, delay)``, as a Baton Retry."""
    return Retry(max_attempts=maximum_attempts, delay=delay, backoff=1.0)


__all__ = ["ConstantDelayRetryPolicy", "Retry", "RetryPolicy"]

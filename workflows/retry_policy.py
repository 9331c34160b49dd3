"""LlamaIndex Workflows compatibility: ``from workflows.retry_policy import ...``."""

from workflows.retry import Retry

ConstantDelayRetryPolicy = Retry

__all__ = ["ConstantDelayRetryPolicy", "Retry"]

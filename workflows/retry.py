"""Retry policy shared by steps and tools."""

from __future__ import annotations

from pydantic import BaseModel, Field


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


NO_RETRY = Retry(1)

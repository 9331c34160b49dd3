"""Baton's settings: read from the environment (``BATON_*``) or a ``.env`` file, checked at start.

Only this package reads the environment. A wrong value fails at start-up with the variable named.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TOPOLOGY = Path(__file__).with_name("topology.yaml")
DEFAULT_REDIS_URL = "redis://localhost:6379/0"


class Settings(BaseSettings):
    """Every knob of a Baton deployment, with the ``BATON_`` prefix (``BATON_REDIS_URL``, ...)."""

    model_config = SettingsConfigDict(
        env_prefix="BATON_", env_file=".env", extra="ignore", populate_by_name=True
    )

    redis_url: str | None = Field(
        default=None,
        description="Redis for broker, run state and events; unset: `baton up` "
        "and the demo start a private redis-server.",
    )
    key_prefix: str = Field(default="baton", pattern=r"^[A-Za-z0-9_.-]+$")
    redis_max_connections: int = Field(
        default=1000,
        ge=4,
        description="Redis connections per process at most; past it a call waits for one "
        "(keep it above the largest asyncio/threads concurrency)",
    )
    retention_seconds: int = Field(
        default=7 * 24 * 3600,
        gt=0,
        description="how long a finished run's keys, the runs index, idempotency keys and dead "
        "letters are kept",
    )
    submit_timeout: float = Field(
        default=5.0,
        gt=0,
        description="seconds a submit waits for Redis before StoreUnavailableError; a submit "
        "that times out has written nothing",
    )
    dead_letters_max: int = Field(
        default=10_000, gt=0, description="dead letters kept at most (the oldest are dropped)"
    )
    default_mode: Literal["inprocess", "distributed"] = "distributed"
    imports: list[str] = Field(default_factory=lambda: ["examples"])
    topology_file: Path = DEFAULT_TOPOLOGY
    max_payload_bytes: int = Field(default=1_000_000, gt=0)
    max_time_limit: float = Field(default=600.0, gt=0, description="longest step/tool time limit")
    visibility_timeout_override: int | None = Field(
        default=None,
        alias="BATON_VISIBILITY_TIMEOUT",
        gt=0,
        description="seconds before an unacknowledged message is redelivered; must exceed "
        "max_time_limit (default: max_time_limit + 60)",
    )
    flower_user: str = "baton"
    flower_password: SecretStr | None = Field(
        default=None,
        description="Flower basic-auth password; no default, so never a well-known one: "
        "unset, `baton up` makes a random one and prints it; docker compose requires it",
    )
    flower_port: int = 5555
    metrics_port: int = 9808

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("BATON_REDIS_URL must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _visibility_above_limits(self) -> Settings:
        vt = self.visibility_timeout_override
        if vt is not None and vt <= self.max_time_limit:
            raise ValueError(
                f"BATON_VISIBILITY_TIMEOUT ({vt}) must exceed BATON_MAX_TIME_LIMIT "
                f"({self.max_time_limit}), or running tasks would be delivered twice"
            )
        return self

    @property
    def store_url(self) -> str:
        """The Redis in use: ``redis_url``, else one on localhost's default port."""
        return self.redis_url or DEFAULT_REDIS_URL

    @property
    def visibility_timeout(self) -> int:
        """Longer than any time limit, so a running late-ack task is never redelivered."""
        return self.visibility_timeout_override or int(self.max_time_limit) + 60


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

"""Baton's settings: read from the environment (``BATON_*``) or a ``.env`` file, checked at start.

Only this package reads the environment. A wrong value fails at start-up with one
``ConfigurationError`` line that names the variable and the form it expects.
"""

from __future__ import annotations

import json
import typing
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from workflows.errors import ConfigurationError

DEFAULT_TOPOLOGY = Path(__file__).with_name("topology.yaml")
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
CLUSTER_SCHEME = "redis+cluster"  # BATON_REDIS_URL of a Redis Cluster state store


class Settings(BaseSettings):
    """Every knob of a Baton deployment, with the ``BATON_`` prefix (``BATON_REDIS_URL``, ...)."""

    model_config = SettingsConfigDict(
        env_prefix="BATON_", env_file=".env", extra="ignore", populate_by_name=True
    )

    redis_url: str | None = Field(
        default=None,
        description="Redis for broker, run state and events (redis+cluster://host:port: a Redis "
        "Cluster for the state, beside a separate BATON_BROKER_URL); unset: `baton up` "
        "and the demo start a private redis-server.",
    )
    broker_url: str | None = Field(
        default=None,
        description="a separate broker for task messages (amqp:// RabbitMQ, or another "
        "redis://); unset: the state Redis is the broker too (the fastest path)",
    )
    state_buckets: int = Field(
        default=16,
        gt=0,
        le=16384,
        description="with a Redis Cluster state store: how many hash-tag buckets the run trees "
        "and the indexes (live, runs, timers, outbox) spread over; a few per master",
    )
    quorum_queues: bool = Field(
        default=False,
        description="with a RabbitMQ broker: declare Baton's queues as quorum queues (replicated; "
        "a message delivered more than BATON_DELIVERY_LIMIT times is dead-lettered to "
        "<prefix>.dead instead of killing workers forever)",
    )
    delivery_limit: int = Field(
        default=8,
        gt=0,
        description="deliveries of one message a quorum queue allows; above Baton's own limit "
        "of 5 (which fails the run as data) so that Baton's limit acts first wherever it "
        "counts (a worker whose main process dies before the task starts is counted only here)",
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
    # NoDecode: the raw string reaches ``_module_list``, which takes a JSON list or a,b,c
    imports: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["examples"],
        description="modules that define workflows and tools: comma-separated or a JSON list",
    )
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
    api_token: SecretStr | None = Field(
        default=None,
        description="bearer token `baton serve` requires (Authorization: Bearer, or the "
        "baton_token cookie set by POST /baton/login); unset, it refuses to start",
    )
    api_auth: Literal["on", "off"] = Field(
        default="on", description="off: `baton serve` without a token (local development only)"
    )
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8766, gt=0, lt=65536)
    api_max_body_bytes: int = Field(
        default=1024 * 1024, gt=0, description="largest request body `baton serve` reads"
    )
    # NoDecode: the raw string reaches ``_origin_list``, which takes a JSON list or a,b,c
    api_cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins allowed to call the HTTP API from a browser (CORS); empty: none",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _one_line_errors(cls, data: Any, handler: ModelWrapValidatorHandler[Settings]) -> Settings:
        try:
            return handler(data)
        except ValidationError as exc:
            raise ConfigurationError("; ".join(map(_describe, exc.errors()))) from None

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        schemes = ("redis://", "rediss://", "unix://", f"{CLUSTER_SCHEME}://")
        if value is not None and not value.startswith(schemes):
            raise ValueError(f"scheme {value.partition(':')[0]!r}")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str | None) -> str | None:
        schemes = ("redis://", "rediss://", "unix://", "amqp://", "amqps://")
        if value and not value.startswith(schemes):
            raise ValueError(f"scheme {value.partition(':')[0]!r}")
        return value or None  # set but empty: no separate broker

    @field_validator("imports", "api_cors_origins", mode="before")
    @classmethod
    def _module_list(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON list: {exc}") from None
        return [name.strip() for name in value.split(",") if name.strip()]

    @field_validator("imports")
    @classmethod
    def _module_names(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not all(p.isidentifier() for p in name.split("."))]
        if bad:
            raise ValueError(f"not a module name: {', '.join(map(repr, bad))}")
        return value

    @model_validator(mode="after")
    def _visibility_above_limits(self) -> Settings:
        vt = self.visibility_timeout_override
        if vt is not None and vt <= self.max_time_limit:
            raise ConfigurationError(
                f"BATON_VISIBILITY_TIMEOUT ({vt}) must exceed BATON_MAX_TIME_LIMIT "
                f"({self.max_time_limit}), or running tasks would be delivered twice"
            )
        return self

    @model_validator(mode="after")
    def _cluster_needs_broker(self) -> Settings:
        if self.cluster and not self.separate_broker:
            raise ConfigurationError(
                "BATON_REDIS_URL names a Redis Cluster: set BATON_BROKER_URL to a broker "
                "(amqp://, or a redis:// that is not the cluster)"
            )
        return self

    @property
    def cluster(self) -> bool:
        """Whether the state store is a Redis Cluster (``redis+cluster://``): then every key of a
        run tree carries its bucket's hash tag (``tasks.keys``)."""
        return (self.redis_url or "").startswith(f"{CLUSTER_SCHEME}://")

    @property
    def buckets(self) -> int:
        """Hash-tag buckets of the state's keys: 0 (no tags, today's layout) on one Redis."""
        return self.state_buckets if self.cluster else 0

    @property
    def store_url(self) -> str:
        """The Redis in use: ``redis_url``, else one on localhost's default port."""
        return self.redis_url or DEFAULT_REDIS_URL

    @property
    def separate_broker(self) -> bool:
        """Whether task messages go through a broker other than the state Redis: then every
        message passes the outbox (``tasks.relay``) instead of being pushed with the state."""
        return self.broker_url is not None and not _same_redis(self.broker_url, self.store_url)

    @property
    def broker(self) -> str:
        """The broker's URL: ``broker_url``, else the state Redis."""
        return self.broker_url or self.store_url

    @property
    def visibility_timeout(self) -> int:
        """Longer than any time limit, so a running late-ack task is never redelivered."""
        return self.visibility_timeout_override or int(self.max_time_limit) + 60


def _same_redis(a: str, b: str) -> bool:
    """Whether two URLs name the same Redis database (``redis://h`` is ``redis://h:6379/0``)."""
    pa, pb = urlsplit(a), urlsplit(b)
    if not (pa.scheme.startswith(("redis", "unix")) and pa.scheme == pb.scheme):
        return False

    def where(p: SplitResult) -> tuple[str, int, str]:
        return (p.hostname or "localhost", p.port or 6379, p.path.strip("/") or "0")

    return where(pa) == where(pb)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once (a wrong value raises ``ConfigurationError``)."""
    return Settings()


# their values may hold a password (or are one): never echo
_SECRET_FIELDS = {"redis_url", "broker_url", "flower_password", "api_token"}
_FORMS = {
    "redis_url": "a redis://, rediss://, unix:// or redis+cluster:// URL",
    "broker_url": "an amqp://, amqps://, redis://, rediss:// or unix:// URL",
    "imports": "module names, comma-separated (a,b) or a JSON list",
    "api_cors_origins": "origins, comma-separated (https://a,https://b) or a JSON list",
}
_TYPE_FORMS = {int: "an integer", float: "a number", str: "text", Path: "a file path"}


def _describe(error: ErrorDetails) -> str:
    """One settings error as ``VAR='value' is invalid: expected <form> (<why>)``."""
    key = str(error["loc"][0]) if error["loc"] else ""
    name, field = _field(key)
    if field is None:
        return error["msg"]
    shown = "" if name in _SECRET_FIELDS else f"={error['input']!r}"
    why = error["msg"].removeprefix("Value error, ")
    form = _expected_form(name, field)
    return f"{_env_name(name, field)}{shown} is invalid: expected {form} ({why})"


def _field(key: str) -> tuple[str, FieldInfo | None]:
    for name, field in Settings.model_fields.items():
        if key in (name, field.alias):
            return name, field
    return key, None


def _env_name(name: str, field: FieldInfo) -> str:
    return field.alias or f"BATON_{name.upper()}"


def _expected_form(name: str, field: FieldInfo) -> str:
    """What a setting accepts, in words: its type and bounds (``a number > 0``)."""
    if name in _FORMS:
        return _FORMS[name]
    args = [a for a in typing.get_args(field.annotation) if a is not type(None)]
    if typing.get_origin(field.annotation) is Literal:
        return "one of " + ", ".join(map(str, args))
    kind = args[0] if len(args) == 1 else field.annotation
    form = _TYPE_FORMS.get(kind, "text") if isinstance(kind, type) else "text"
    for meta in field.metadata:
        for attr, symbol in (("gt", ">"), ("ge", ">="), ("pattern", "matching")):
            if getattr(meta, attr, None) is not None:
                form += f" {symbol} {getattr(meta, attr)}"
    return form

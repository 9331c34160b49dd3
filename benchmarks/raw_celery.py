"""The baseline: plain Celery on the same Redis, same serializer, acks and prefetch settings."""

from __future__ import annotations

import os

from celery import Celery

from app.celery_app import celery_config
from config import Settings

_settings = Settings(
    redis_url=os.environ.get("BATON_REDIS_URL", "redis://localhost:6379/0"),
    broker_url=os.environ.get("BATON_BROKER_URL") or None,
)
raw_app = Celery("raw")
_conf = celery_config(_settings)
_transport = _conf["broker_transport_options"]
assert isinstance(_transport, dict)
_conf["broker_transport_options"] = {**_transport, "global_keyprefix": "raw:q:"}
_conf.update(
    {
        "result_backend": _settings.redis_url,
        "task_ignore_result": False,
        "task_default_queue": "raw",
    }
)
raw_app.conf.update(_conf)


@raw_app.task(name="raw.noop", acks_late=True)
def noop(value: int = 0) -> int:
    return value + 1

"""The shop's Celery app, configured the way any Celery app is: from its own settings.

To work with Baton it shares Baton's broker (the same Redis and queue key prefix: what
``app.interop.broker_options()`` gives); everything else is its own. Environment:
``SHOP_BROKER_URL``, ``SHOP_RESULT_BACKEND`` (default: the broker), ``SHOP_QUEUE_PREFIX``
(Baton's ``<BATON_KEY_PREFIX>:q:``), ``SHOP_VISIBILITY_TIMEOUT``; each unset falls back to
Baton's ``BATON_*`` variable.

Run its worker: ``celery -A examples.celery_shop.app:shop worker -Q shop -E``.
"""

from __future__ import annotations

import os

from celery import Celery

shop = Celery("shop", include=["examples.celery_shop.tasks"])


def configure(
    broker: str,
    prefix: str,
    backend: str | None = None,
    visibility: float = 660,
    app: Celery = shop,
) -> None:
    """Point the shop (or another app sending its tasks by name) at a broker and result
    backend; the environment does it for the shop at import."""
    app.conf.update(
        broker_url=broker,
        result_backend=backend or broker,
        broker_transport_options={"global_keyprefix": prefix, "visibility_timeout": visibility},
        task_default_queue="shop",
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        result_expires=3600,
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
    )


# next to Baton (the demo, a worker of ``baton up``) it falls back to Baton's own settings
_env = os.environ.get
_redis = _env("BATON_REDIS_URL") or "redis://127.0.0.1:6379/0"
configure(
    _env("SHOP_BROKER_URL") or _env("BATON_BROKER_URL") or _redis,
    _env("SHOP_QUEUE_PREFIX") or f"{_env('BATON_KEY_PREFIX') or 'baton'}:q:",
    _env("SHOP_RESULT_BACKEND") or _redis,
    float(_env("SHOP_VISIBILITY_TIMEOUT") or _env("BATON_VISIBILITY_TIMEOUT") or 660),
)

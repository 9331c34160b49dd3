"""The Celery app factory: settings in, a configured app with every Baton task out.

Baseline settings: JSON only, late acks, requeue on a lost worker bounded by
Baton's own delivery counter, prefetch 1, visibility timeout above every time limit, task
events on for Flower, no result backend (Baton keeps run results itself).
"""

from __future__ import annotations

import importlib

from celery import Celery

from config import Settings
from tasks.registry import register_tasks
from tasks.runtime import Runtime
from workflows.errors import ConfigurationError


def celery_config(settings: Settings) -> dict[str, object]:
    url = settings.broker
    transport: dict[str, object] = {
        "visibility_timeout": settings.visibility_timeout,
        "global_keyprefix": f"{settings.key_prefix}:q:",
        "socket_timeout": 10,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "health_check_interval": 10,
        # sweep for abandoned (unacked) messages every 2 s, so a killed worker's or a
        # Redis restart's in-flight messages come back one visibility timeout later
        "unacked_restore_interval": 2,
        "unacked_restore_throttle": 1,
        # the restore's mutex outlives a worker killed while holding it: kombu's 300 s would
        # stop every other worker restoring for five minutes
        "unacked_mutex_expire": 15,
    }
    if url.startswith("amqp"):
        # RabbitMQ: a publish returns once the broker has the message (the outbox relay
        # deletes its copy only then); a lost worker's messages come back when its channel
        # closes, so no visibility timeout is needed
        transport = {"confirm_publish": True}
    return {
        "broker_url": url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_pool_limit": 10,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "task_ignore_result": True,
        "task_store_errors_even_if_ignored": False,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_soft_shutdown_timeout": 10.0,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "task_default_queue": "baton",
    }


def import_workflows(settings: Settings) -> None:
    """Import the modules ``BATON_IMPORTS`` names, which define the workflows and tools."""
    for module in settings.imports:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigurationError(
                f"BATON_IMPORTS names {module!r}, which cannot be imported: {exc}"
            ) from exc


def create_app(settings: Settings) -> tuple[Celery, Runtime]:
    """Import the configured workflow modules and build the app with their tasks (an invalid
    workflow raises ``WorkflowValidationError`` here, naming every problem).

    Installs no worker hooks: a worker process also calls ``tasks.worker.install_worker``."""
    import_workflows(settings)
    app = Celery("baton")
    app.conf.update(celery_config(settings))
    rt = Runtime(settings, app)
    app.conf.task_default_queue = rt.topology.default_queue
    register_tasks(app, rt)
    return app, rt

"""The plain Celery apps Baton works with, by name: whose result backend and broker continue a
canvas that a Baton run is a step of, and whose tasks back tools.

Registered by the modules ``BATON_IMPORTS`` names (``app.interop.register_app``, and every
``tool_from_task`` for its task's app), in every process, like workflows. A canvas message
names its app by ``main`` name, never by an import path.
"""

from __future__ import annotations

from celery import Celery

from workflows.errors import ConfigurationError

_APPS: dict[str, Celery] = {}


def register_app(app: Celery) -> Celery:
    """Know ``app`` by its ``main`` name (``Celery("shop")`` is ``shop``)."""
    name = app.main or ""
    if not name:
        raise ConfigurationError("a Celery app used with Baton needs a name: Celery('shop')")
    _APPS[name] = app
    return app


def app_named(name: str) -> Celery:
    """The registered app ``name``; ``""`` means the only one registered."""
    if name in _APPS:
        return _APPS[name]
    if not name and len(_APPS) == 1:
        return next(iter(_APPS.values()))
    known = ", ".join(sorted(_APPS)) or "none"
    raise ConfigurationError(
        f"no Celery app {name!r} registered with Baton (registered: {known}); call "
        "app.interop.register_app(your_app) in a module BATON_IMPORTS names"
    )


def registered_apps() -> dict[str, Celery]:
    return dict(_APPS)

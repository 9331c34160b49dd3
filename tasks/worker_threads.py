"""Threads a worker's main process runs while it lives (the timer pump, the heartbeat, the
outbox relay): one place for their start at ``worker_ready`` and their stop at
``worker_shutdown``, so none is started in a client or left running past its worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from celery import signals


class WorkerThread(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...


def run_while_worker_lives(make: Callable[[Any], WorkerThread | None], join: float = 0.0) -> None:
    """Once the worker is ready, start ``make(sender)`` (None: nothing to run); at shutdown
    stop it, and wait up to ``join`` seconds for it to end."""
    started: list[WorkerThread] = []

    def start(sender: Any = None, **_: Any) -> None:
        thread = make(sender)
        if thread is not None:
            started.append(thread)
            thread.start()

    def stop(**_: Any) -> None:
        for thread in started:
            thread.stop()
        if join:
            for thread in started:
                thread.join(timeout=join)

    signals.worker_ready.connect(start, weak=False)
    signals.worker_shutdown.connect(stop, weak=False)

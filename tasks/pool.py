"""``pool: asyncio``: Celery's threads pool, with every task's coroutine on one event loop.

Celery's worker machinery stays as it is (prefetch, late acks, task events for Flower, warm
shutdown): the pool is Celery's own ``threads`` pool, and Celery's tracer runs each task on a
pool thread. What changes is where the task's coroutine runs: on the process's one
:class:`~tasks.loop.LoopThread`, so ``concurrency`` threads keep that many steps and tool calls
in flight on one loop. Start it as ``celery worker -P custom`` with
``CELERY_CUSTOM_WORKER_POOL=tasks.pool:AsyncioPool`` (``baton worker`` and ``baton up`` do).
"""

from __future__ import annotations

from typing import Any

from celery.concurrency import thread
from celery.concurrency.base import apply_target

from tasks.loop import LoopThread, current_limit, current_loop

# celery-types lags Celery 5.7's threads pool (no ApplyResult, executor or _get_info in it)
ThreadPool: Any = thread.TaskPool
ApplyResult: Any = getattr(thread, "ApplyResult")  # noqa: B009

POOL_PATH = "tasks.pool:AsyncioPool"
POOL_ENV = "CELERY_CUSTOM_WORKER_POOL"


class AsyncioPool(ThreadPool):  # type: ignore[misc]
    """Threads that hand their tasks' coroutines to one event loop and wait for them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loop_thread = LoopThread(workers=self.limit)

    def on_start(self) -> None:
        self.loop_thread.start()
        super().on_start()

    def on_stop(self) -> None:
        super().on_stop()  # waits for the tasks in flight (warm shutdown)
        self.loop_thread.stop()

    def on_apply(
        self,
        target: Any,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        callback: Any = None,
        accept_callback: Any = None,
        soft_timeout: float | None = None,
        timeout: float | None = None,
        **_: Any,
    ) -> Any:
        # Celery's threads pool ignores time limits; here the task's coroutine is cancelled at
        # its hard limit, so no task outlives the visibility timeout (step and tool timeouts
        # proper are enforced earlier, by asyncio, inside the coroutine)
        limit = timeout or soft_timeout
        future = self.executor.submit(
            self._on_loop, limit, target, args, kwargs, callback, accept_callback
        )
        return ApplyResult(future)

    def _on_loop(self, limit: float | None, *args: Any) -> Any:
        token = current_loop.set(self.loop_thread)
        limit_token = current_limit.set(limit)
        try:
            return apply_target(*args)
        finally:
            current_limit.reset(limit_token)
            current_loop.reset(token)

    def _get_info(self) -> Any:
        info = super()._get_info()
        info["event-loop"] = "asyncio"
        return info

"""One event loop per worker process, on its own thread, with a watchdog.

An asyncio worker (``pool: asyncio``) runs each task on a pool thread, as Celery's threads pool
does, but the task's coroutine (a step body, an async tool) runs on this one loop: the thread
only waits for it. So hundreds of LLM-bound calls wait at once while Redis round trips and
sync tools run on the threads, never on the loop. The watchdog reports code that blocks the
loop (a sync call inside an ``async def``), naming where it is stuck.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any, TypeVar

from celery.exceptions import SoftTimeLimitExceeded

T = TypeVar("T")
log = logging.getLogger("baton.loop")

BEAT = 0.1  # seconds between the loop's heartbeats
BLOCKED_AFTER = 1.0  # a loop that missed its beat this long is reported as blocked


class LoopThread:
    """An event loop running forever on a daemon thread; :meth:`run` blocks the caller (a pool
    thread) until its coroutine is done."""

    def __init__(
        self, name: str = "baton-loop", workers: int = 32, blocked_after: float = BLOCKED_AFTER
    ) -> None:
        self.loop = asyncio.new_event_loop()
        # sync tools run here (``asyncio.to_thread``): as many threads as calls in flight
        self.loop.set_default_executor(
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{name}-sync")
        )
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self.blocked_after = blocked_after
        self.beat = time.monotonic()
        self.blocked_reports = 0
        self._stopped = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name=f"{name}-watchdog", daemon=True)

    def start(self) -> LoopThread:
        self.thread.start()
        self._watchdog.start()
        return self

    def run(self, coro: Coroutine[Any, Any, T], limit: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result (or its exception); past ``limit``
        seconds it is cancelled and ``SoftTimeLimitExceeded`` raised, as Celery's soft limit
        would in a prefork pool."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout=limit)
        except TimeoutError:
            if future.done():
                raise  # the coroutine's own TimeoutError
            future.cancel()
            raise SoftTimeLimitExceeded(limit) from None

    def stop(self) -> None:
        """Stop the loop once what runs on it now has been cancelled."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._heartbeat)
        try:
            self.loop.run_forever()
        finally:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()

    def _heartbeat(self) -> None:
        self.beat = time.monotonic()
        self.loop.call_later(BEAT, self._heartbeat)

    def _watch(self) -> None:
        """Report each time the loop stops beating for ``blocked_after`` seconds."""
        reported = False
        while not self._stopped.wait(BEAT):
            late = time.monotonic() - self.beat
            if late < self.blocked_after:
                reported = False
            elif not reported:
                reported = True
                self.blocked_reports += 1
                log.warning(
                    "event loop blocked for %.1fs: a step or tool is running sync code on the "
                    "loop (use an async client, or a sync tool, which runs on a thread). "
                    "Stuck at:\n%s",
                    late,
                    self._where(),
                )

    def _where(self) -> str:
        frame = sys._current_frames().get(self.thread.ident or 0)
        return "".join(traceback.format_stack(frame)[-6:]) if frame is not None else "?"


# The loop of the asyncio pool the current task runs in; unset in prefork and threads pools.
current_loop: ContextVar[LoopThread | None] = ContextVar("baton_current_loop", default=None)
# The current task's time limit in the asyncio pool (seconds), enforced by :meth:`LoopThread.run`.
current_limit: ContextVar[float | None] = ContextVar("baton_current_limit", default=None)

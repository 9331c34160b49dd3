"""Workflows with resources and sync steps, imported by the test workers (and the client) for
``test_resources_sync_distributed``."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Annotated

from workflows import Context, Event, Retry, StartEvent, StopEvent, Workflow, step
from workflows.resource import Resource

BUILDS: list[int] = []  # this process's calls of ``client``
LOOP_BUILDS: list[int] = []  # and of ``loop_client``


class Client:
    """Stands in for an LLM or HTTP client."""

    def __init__(self) -> None:
        self.pid = os.getpid()


def client() -> Client:
    """Built once per worker process (cached)."""
    BUILDS.append(1)
    return Client()


class LoopClient:
    """Stands in for an async client (``redis.asyncio``, ``httpx.AsyncClient``): usable only on
    the event loop it was built on."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.get_running_loop()


async def loop_client() -> LoopClient:
    """Built once per worker process (cached): each runs its tasks on one loop."""
    LOOP_BUILDS.append(1)
    await asyncio.sleep(0)
    return LoopClient()


def scratch() -> list[str]:
    return []


def _count(name: str) -> int:
    """Count one more call of ``name`` across the worker processes (a file in the test dir)."""
    path = Path(os.environ.get("BATON_TEST_DIR", "/tmp")) / "effects" / f"{name}.count"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write("x")
    return path.stat().st_size


def flaky_client() -> Client:
    """Fails the first two builds (in any worker process), then works."""
    if _count("flaky_client") <= 2:
        raise ConnectionError("the service is not up yet")
    return Client()


class Used(Event):
    pass


class ResClientPerProcess(Workflow):
    @step
    async def use(
        self,
        ev: StartEvent,
        api: Annotated[Client, Resource(client)],
        aio: Annotated[LoopClient, Resource(loop_client)],
        notes: Annotated[list[str], Resource(scratch, cache=False)],
    ) -> Used:
        notes.append("use")
        return Used()

    @step
    async def done(
        self,
        ev: Used,
        api: Annotated[Client, Resource(client)],
        aio: Annotated[LoopClient, Resource(loop_client)],
        notes: Annotated[list[str], Resource(scratch, cache=False)],
    ) -> StopEvent:
        notes.append("done")
        return StopEvent(
            result={
                "builds": len(BUILDS),
                "loop_builds": len(LOOP_BUILDS),
                "built_here": api.pid == aio.pid == os.getpid(),
                "on_its_loop": aio.loop is asyncio.get_running_loop(),
                "notes": notes,
            }
        )


class ResFlakyFactory(Workflow):
    @step(retry=Retry(max_attempts=3))
    async def connect(
        self, ctx: Context, ev: StartEvent, api: Annotated[Client, Resource(flaky_client)]
    ) -> StopEvent:
        return StopEvent(result=ctx.attempt)


class Progress(Event):
    n: int


class Part(Event):
    n: int


class Worked(Event):
    n: int
    thread: str


class SyncChunks(Workflow):
    """Sync steps all the way: fan out, stream, work (retried once), fan in."""

    @step
    def split(self, ctx: Context, ev: StartEvent) -> Part | None:
        for n in range(3):
            ctx.write_event_to_stream(Progress(n=n))
            ctx.send_event(Part(n=n))
        return None

    @step(retry=Retry(max_attempts=2))
    def work(self, ctx: Context, ev: Part, api: Annotated[Client, Resource(client)]) -> Worked:
        if ctx.attempt == 1 and ev.n == 1:
            raise ConnectionError("first try of part 1 fails")
        return Worked(n=ev.n, thread=threading.current_thread().name)

    @step
    def join(self, ctx: Context, ev: Worked) -> StopEvent | None:
        got = ctx.collect_events(ev, [Worked] * 3)
        if got is None:
            return None
        worked = [w for w in got if isinstance(w, Worked)]
        return StopEvent(
            result={
                "parts": sorted(w.n for w in worked),
                "on_loop_thread": [w.thread for w in worked if w.thread == "MainThread"],
            }
        )


class SyncTooSlow(Workflow):
    @step(timeout=0.2)
    def crawl(self, ev: StartEvent) -> StopEvent:
        time.sleep(1.0)
        return StopEvent(result="too late")

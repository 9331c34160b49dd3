"""Workflows and rate-limited tools of the rate-limit tests (``test_rate_limits``) and
``benchmarks.bench_limits``, imported by their workers; on a queue of their own."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from workflows import Context, StartEvent, StopEvent, ToolContext, Workflow, step, tool

QUEUE = "limits"


def effects(label: str, testdir: Path | None = None) -> Path:
    """One line per execution of a limited tool under ``label``: time, call id, key (under the
    workers' ``BATON_TEST_DIR``, or ``testdir``)."""
    path = (testdir or Path(os.environ.get("BATON_TEST_DIR", "/tmp"))) / "limit_effects"
    path.mkdir(parents=True, exist_ok=True)
    return path / f"{label}.runs"


def _record(label: str, user: str, ctx: ToolContext) -> str:
    with effects(label).open("a") as fh:
        fh.write(f"{time.time():.6f} {ctx.call_id} {user or '-'}\n")
    return ctx.call_id


@tool(queue=QUEUE, rate_limit="5/s")
def limited_5(label: str, i: int, ctx: ToolContext, user: str = "") -> str:
    """At most 5 a second, across every worker."""
    return _record(label, user, ctx)


@tool(queue=QUEUE, rate_limit="2/s", rate_key=lambda args: args["user"])
def limited_keyed(label: str, i: int, ctx: ToolContext, user: str = "") -> str:
    """At most 2 a second per user."""
    return _record(label, user, ctx)


@tool(queue=QUEUE, rate_limit="1/s")
def limited_1(label: str, i: int, ctx: ToolContext, user: str = "") -> str:
    """At most 1 a second."""
    return _record(label, user, ctx)


@tool(queue=QUEUE, rate_limit="10/s")
def limited_10(label: str, i: int, ctx: ToolContext, user: str = "") -> str:
    """At most 10 a second (the benchmark's)."""
    return _record(label, user, ctx)


class BurstStart(StartEvent):
    label: str
    tool: str
    n: int
    users: list[str] = [""]


class LimitBurst(Workflow):
    """Calls ``tool`` ``n`` times at once (user ``users[i % len(users)]``)."""

    queue = QUEUE

    @step
    async def burst(self, ctx: Context, ev: BurstStart) -> StopEvent:
        calls = [
            ctx.call_tool(ev.tool, label=ev.label, i=i, user=ev.users[i % len(ev.users)])
            for i in range(ev.n)
        ]
        return StopEvent(result=len(await asyncio.gather(*calls)))


class LimitQuickStart(StartEvent):
    pass


class LimitQuick(Workflow):
    queue = QUEUE

    @step
    async def go(self, ctx: Context, ev: LimitQuickStart) -> StopEvent:
        return StopEvent(result=time.time())

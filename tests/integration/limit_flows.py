"""Workflows and rate- and concurrency-limited tools and steps of the limit tests
(``test_rate_limits``, ``test_concurrency_limits``, ``test_step_limits``) and
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


def held(label: str, testdir: Path | None = None) -> Path:
    """One line per finished execution of a concurrency-limited tool under ``label``: enter
    time, exit time, call id, key."""
    return effects(label, testdir).with_suffix(".held")


def _hold(label: str, user: str, ctx: ToolContext, seconds: float) -> str:
    entered = time.time()
    marker = effects(label).with_suffix(".first")
    try:  # the first call of a label to run holds its permit 1.5 s (the kill test's target)
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        first = True
    except FileExistsError:
        first = False
    with effects(label).with_suffix(".entered").open("a") as fh:
        fh.write(f"{entered:.6f} {ctx.call_id} {user or '-'} {os.getpid()}\n")
    time.sleep(1.5 if first and label.startswith("k") else seconds)
    with held(label).open("a") as fh:
        fh.write(f"{entered:.6f} {time.time():.6f} {ctx.call_id} {user or '-'}\n")
    return ctx.call_id


@tool(queue=QUEUE, concurrency=2, timeout=2)
def concurrent_2(label: str, i: int, ctx: ToolContext, user: str = "") -> str:
    """At most 2 at once, across every worker; each holds its permit 0.3 s."""
    return _hold(label, user, ctx, 0.3)


@tool(queue=QUEUE, concurrency=1, concurrency_key=lambda args: args["user"], timeout=2)
def concurrent_keyed(label: str, i: int, ctx: ToolContext, user: str = "") -> str:
    """At most 1 at once per user; each holds its permit 0.4 s."""
    return _hold(label, user, ctx, 0.4)


@tool(queue=QUEUE, concurrency=1, timeout=2)
def concurrent_1(label: str, i: int, ctx: ToolContext, user: str = "") -> str:
    """At most 1 at once; each holds its permit 0.3 s (a label starting with ``k``: the
    first call 1.5 s)."""
    return _hold(label, user, ctx, 0.3)


@tool(queue=QUEUE, concurrency=3, concurrency_key=lambda args: args["user"], timeout=2)
def concurrent_3_keyed(label: str, i: int, ctx: ToolContext, user: str = "") -> str:
    """At most 3 at once per user (the benchmark's); each holds its permit 300 ms."""
    return _hold(label, user, ctx, 0.3)


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


# --- limited steps (``test_step_limits``) ---------------------------------------------------


def step_log(label: str, testdir: Path | None = None) -> Path:
    """One line per execution of a limited step's code under ``label``: enter time, exit
    time, run id, key, what (``go``: the step ran; ``before``/``after``: around its tool call)."""
    return effects(label, testdir).with_suffix(".steps")


class StepRun(StartEvent):
    label: str
    user: str = ""
    hold: float = 0.0


def _note(ev: StepRun, ctx: Context, entered: float, what: str = "go") -> None:
    with step_log(ev.label).open("a") as fh:
        fh.write(f"{entered:.6f} {time.time():.6f} {ctx.run_id} {ev.user or '-'} {what}\n")


async def _held(ev: StepRun, ctx: Context) -> StopEvent:
    """Run for ``ev.hold`` seconds (1.5 s for the first run of a label starting with ``k``:
    the kill test's target), noting it once done."""
    entered = time.time()
    with step_log(ev.label).with_suffix(".entered").open("a") as fh:
        fh.write(f"{entered:.6f} {ctx.run_id} {os.getpid()}\n")
    first = ev.label.startswith("k") and _first_of(ev.label)
    await asyncio.sleep(1.5 if first else ev.hold)
    _note(ev, ctx, entered)
    return StopEvent(result=ctx.run_id)


def _first_of(label: str) -> bool:
    marker = step_log(label).with_suffix(".first")
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


class RatedStep(Workflow):
    """Its step starts at most 5 times a second, across every worker."""

    queue = QUEUE

    @step(rate_limit="5/s")
    async def go(self, ctx: Context, ev: StepRun) -> StopEvent:
        return await _held(ev, ctx)


class SlowRatedStep(Workflow):
    """Its step starts at most once a second."""

    queue = QUEUE

    @step(rate_limit="1/s", rate_key=lambda ev: ev.user)
    async def go(self, ctx: Context, ev: StepRun) -> StopEvent:
        return await _held(ev, ctx)


class BoundedStep(Workflow):
    """At most 2 deliveries of its step run its code at once, per user."""

    queue = QUEUE

    @step(concurrency=2, concurrency_key=lambda ev: ev.user)
    async def go(self, ctx: Context, ev: StepRun) -> StopEvent:
        return await _held(ev, ctx)


class SoloStep(Workflow):
    """At most 1 delivery of its step runs at once (its lease: the isolated workers' 5 s
    hard time limit + 2 s)."""

    queue = QUEUE

    @step(concurrency=1)
    async def go(self, ctx: Context, ev: StepRun) -> StopEvent:
        return await _held(ev, ctx)


@tool(queue=QUEUE)
def step_echo(text: str) -> str:
    """An unlimited tool a limited step calls (its answer resumes the step)."""
    return text


class RatedToolStep(Workflow):
    """A rate-limited step that calls a tool: parked, then resumed by the answer."""

    queue = QUEUE

    @step(rate_limit="4/s")
    async def go(self, ctx: Context, ev: StepRun) -> StopEvent:
        entered = time.time()
        _note(ev, ctx, entered, "before")
        echoed = await ctx.call_tool("step_echo", text=ev.user)
        _note(ev, ctx, entered, "after")
        return StopEvent(result=echoed)

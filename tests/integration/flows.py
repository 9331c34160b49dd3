"""Workflows and tools used by the integration tests (imported by the test workers too)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from workflows import (
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    Retry,
    StartEvent,
    StopEvent,
    ToolContext,
    ToolError,
    Workflow,
    step,
    tool,
)


def _effects_dir() -> Path:
    path = Path(os.environ.get("BATON_TEST_DIR", "/tmp")) / "effects"
    path.mkdir(parents=True, exist_ok=True)
    return path


@tool(queue="itest")
def it_add(a: int, b: int) -> int:
    return a + b


@tool(queue="itest")
def it_record(label: str, ctx: ToolContext) -> str:
    """Records one line per execution, keyed by the call's idempotency key."""
    with (_effects_dir() / f"{label}.log").open("a") as fh:
        fh.write(f"{ctx.call_id} {ctx.attempt}\n")
    return ctx.call_id


@tool(queue="itest", timeout=1.0)
def it_sleep(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


@tool(queue="itest", retry=Retry(max_attempts=3))
def it_flaky(label: str, ctx: ToolContext) -> int:
    """Fails on attempts 1 and 2, succeeds on attempt 3."""
    with (_effects_dir() / f"{label}.flaky").open("a") as fh:
        fh.write(f"{ctx.call_id} {ctx.attempt}\n")
    if ctx.attempt < 3:
        raise ConnectionError(f"attempt {ctx.attempt} failed")
    return ctx.attempt


@tool(queue="itest", retry=Retry(max_attempts=2))
def it_broken() -> None:
    raise ValueError("always broken")


class Numbers(StartEvent):
    a: int
    b: int


class Summed(Event):
    total: int


class AddTwice(Workflow):
    queue = "itest"

    @step
    async def first(self, ctx: Context, ev: Numbers) -> Summed:
        return Summed(total=await ctx.call_tool("it_add", a=ev.a, b=ev.b))

    @step
    async def second(self, ctx: Context, ev: Summed) -> StopEvent:
        return StopEvent(result=await ctx.call_tool("it_add", a=ev.total, b=ev.total))


class RecordStart(StartEvent):
    label: str
    calls: int = 3


class Recorder(Workflow):
    """Several tool calls in sequence and in parallel, each recording its execution."""

    queue = "itest"

    @step
    async def main(self, ctx: Context, ev: RecordStart) -> StopEvent:
        ids = [await ctx.call_tool("it_record", label=ev.label)]
        ids += await asyncio.gather(
            *[ctx.call_tool("it_record", label=ev.label) for _ in range(ev.calls - 1)]
        )
        return StopEvent(result=ids)


class Label(StartEvent):
    label: str = "x"
    seconds: float = 0.0


class ToolFailures(Workflow):
    queue = "itest"

    @step
    async def main(self, ctx: Context, ev: Label) -> StopEvent:
        out: dict[str, Any] = {}
        calls: list[tuple[str, dict[str, Any]]] = [
            ("it_flaky", {"label": ev.label}),
            ("it_broken", {}),
            ("it_sleep", {"seconds": ev.seconds}),
        ]
        for name, kwargs in calls:
            try:
                out[name] = {"ok": await ctx.call_tool(name, **kwargs)}
            except ToolError as exc:
                out[name] = {"type": exc.type, "attempts": exc.attempts, "message": exc.message}
        return StopEvent(result=out)


class Ask(InputRequiredEvent):
    question: str


class Answer(HumanResponseEvent):
    approved: bool


class Approve(Workflow):
    queue = "itest"

    @step
    async def ask(self, ctx: Context, ev: Label) -> StopEvent:
        answer = await ctx.wait_for_event(Answer, waiter_event=Ask(question=f"ok {ev.label}?"))
        return StopEvent(result={"label": ev.label, "approved": answer.approved})


class ApproveParent(Workflow):
    queue = "itest"

    @step
    async def delegate(self, ctx: Context, ev: Label) -> StopEvent:
        inner = await ctx.run_workflow(Approve, Label(label=ev.label), mode="distributed")
        return StopEvent(result={"child": inner})


class Item(Event):
    i: int


class Doubled(Event):
    i: int


class Width(StartEvent):
    n: int


class FanIn(Workflow):
    queue = "itest"

    @step
    async def fan(self, ctx: Context, ev: Width) -> Item | None:
        await ctx.store.set("n", ev.n)
        for i in range(ev.n):
            ctx.send_event(Item(i=i))
        return None

    @step(num_workers=8)
    async def work(self, ev: Item) -> Doubled:
        return Doubled(i=ev.i * 2)

    @step
    async def collect(self, ctx: Context, ev: Doubled) -> StopEvent | None:
        got = ctx.collect_events(ev, [Doubled] * await ctx.store.get("n"))
        if got is None:
            return None
        await ctx.store.set("collected", await ctx.store.get("collected", 0) + 1)
        return StopEvent(result=sorted(e.i for e in got if isinstance(e, Doubled)))


class Slow(StartEvent):
    seconds: float


class SlowStep(Workflow):
    queue = "itest"

    @step
    async def wait(self, ev: Slow) -> Item:
        await asyncio.sleep(ev.seconds)
        return Item(i=1)

    @step
    async def end(self, ev: Item) -> StopEvent:
        return StopEvent(result=ev.i)


class StepRetries(Workflow):
    """A step that fails on its first two attempts, then succeeds."""

    queue = "itest"

    @step(retry=Retry(max_attempts=3))
    async def shaky(self, ctx: Context, ev: Label) -> StopEvent:
        if ctx.attempt < 3:
            raise ConnectionError(f"attempt {ctx.attempt}")
        return StopEvent(result=ctx.attempt)


class Boom(Workflow):
    queue = "itest"

    @step(retry=Retry(max_attempts=2))
    async def explode(self, ev: Label) -> StopEvent:
        raise ValueError(f"boom {ev.label}")


class StepTimeout(Workflow):
    queue = "itest"

    @step(timeout=0.5)
    async def wait(self, ev: Slow) -> StopEvent:
        await asyncio.sleep(ev.seconds)
        return StopEvent(result="late")


# --- one queue, one worker process: nesting must not deadlock ------------------------------


@tool(queue="single")
def single_add(a: int, b: int) -> int:
    return a + b


class Depth(StartEvent):
    x: int


class ItInner(Workflow):
    queue = "single"

    @step
    async def main(self, ctx: Context, ev: Depth) -> StopEvent:
        a, b = await asyncio.gather(
            ctx.call_tool("single_add", a=ev.x, b=1), ctx.call_tool("single_add", a=ev.x, b=2)
        )
        return StopEvent(result=a + b)


class ItMiddle(Workflow):
    queue = "single"

    @step
    async def main(self, ctx: Context, ev: Depth) -> StopEvent:
        results = await asyncio.gather(
            ctx.run_workflow(ItInner, Depth(x=ev.x), mode="distributed"),
            ctx.run_workflow(ItInner, Depth(x=ev.x + 10), mode="distributed"),
            ctx.call_tool("single_add", a=ev.x, b=100),
        )
        return StopEvent(result=list(results))


class ItOuter(Workflow):
    queue = "single"

    @step
    async def main(self, ctx: Context, ev: Depth) -> StopEvent:
        middle = await ctx.run_workflow(ItMiddle, Depth(x=ev.x), mode="distributed")
        extra = await ctx.call_tool("single_add", a=middle[0], b=middle[1])
        return StopEvent(result={"middle": middle, "sum": extra})


# --- crash recovery --------------------------------------------------------------------------


@tool(queue="crash", timeout=2)
def crash_record(label: str, n: int, ctx: ToolContext) -> int:
    """Logs start and end of every execution; applies its effect once per idempotency key."""
    import time

    base = _effects_dir()
    with (base / f"{label}.exec").open("a") as fh:
        fh.write(f"start {ctx.call_id} {time.time()}\n")
    time.sleep(0.15)
    marker = base / f"{label}.{ctx.call_id}.effect"
    if not marker.exists():
        marker.write_text("1")
        with (base / f"{label}.effects").open("a") as fh:
            fh.write(f"{ctx.call_id}\n")
    with (base / f"{label}.exec").open("a") as fh:
        fh.write(f"done {ctx.call_id} {time.time()}\n")
    return n


class Chain(StartEvent):
    label: str
    steps: int = 4
    calls: int = 3


class Hop(Event):
    i: int
    acc: int


class CrashChain(Workflow):
    """Steps that each sleep and call tools in parallel: long enough to be killed mid-way."""

    queue = "crash"

    @step
    async def begin(self, ctx: Context, ev: Chain) -> Hop:
        await ctx.store.set("label", ev.label)
        await ctx.store.set("steps", ev.steps)
        return Hop(i=0, acc=0)

    @step
    async def hop(self, ctx: Context, ev: Hop) -> Hop | StopEvent:
        await asyncio.sleep(0.1)
        label = await ctx.store.get("label")
        got = await asyncio.gather(
            *[ctx.call_tool("crash_record", label=label, n=ev.i * 10 + k) for k in range(3)]
        )
        acc = ev.acc + sum(got)
        if ev.i + 1 >= await ctx.store.get("steps"):
            return StopEvent(result=acc)
        return Hop(i=ev.i + 1, acc=acc)


class RecordThenWait(Workflow):
    """One tool call, then a pause: lets a test redeliver messages while the run is parked."""

    queue = "itest"

    @step
    async def main(self, ctx: Context, ev: Label) -> StopEvent:
        call_id = await ctx.call_tool("it_record", label=ev.label)
        answer = await ctx.wait_for_event(Answer, waiter_event=Ask(question="go on?"))
        return StopEvent(result={"call_id": call_id, "approved": answer.approved})


@tool(mode="inprocess")
def where_am_i() -> int:
    return os.getpid()


class Placement(Workflow):
    """A distributed step calling an in-process tool (inline) and a distributed one (a task)."""

    queue = "itest"

    @step
    async def main(self, ctx: Context, ev: Label) -> StopEvent:
        inline = await ctx.call_tool("where_am_i")
        remote = await ctx.call_tool("it_add", a=1, b=2)
        return StopEvent(result={"step_pid": os.getpid(), "tool_pid": inline, "sum": remote})


class ManyCalls(Workflow):
    """Eight tool calls in sequence: the step is suspended and resumed eight times."""

    queue = "itest"

    @step
    async def main(self, ctx: Context, ev: Label) -> StopEvent:
        total = 0
        for i in range(8):
            total = await ctx.call_tool("it_add", a=total, b=i)
        return StopEvent(result=total)


@tool(mode="inprocess")
async def it_yield(x: int) -> int:
    """An in-process tool that really awaits: on replay it answers at once instead."""
    await asyncio.sleep(0.01)
    return x


@tool(queue="itest")
def it_echo(label: str, value: str, ctx: ToolContext) -> str:
    with (_effects_dir() / f"{label}.echo").open("a") as fh:
        fh.write(f"{ctx.call_id} {value}\n")
    return value


class Branches(Workflow):
    """Two gather branches whose interleaving differs between the first run and a replay."""

    queue = "itest"

    @step
    async def main(self, ctx: Context, ev: Label) -> StopEvent:
        async def a() -> str:
            await ctx.call_tool("it_yield", x=1)
            return str(await ctx.call_tool("it_echo", label=ev.label, value="A"))

        async def b() -> str:
            return str(await ctx.call_tool("it_echo", label=ev.label, value="B"))

        return StopEvent(result=list(await asyncio.gather(a(), b())))


# --- asyncio workers: many calls in flight at once --------------------------------------------


async def _barrier(group: str, n: int, timeout: float = 30.0) -> int:
    """Count in, then wait until ``n`` have counted in: only calls that are in flight at the
    same time can all pass (a pool running one at a time times out)."""
    import redis.asyncio as aioredis

    from config import Settings

    client = aioredis.Redis.from_url(Settings().store_url)
    try:
        key = f"barrier:{group}"
        await client.incr(key)
        await client.expire(key, 600)
        deadline = asyncio.get_running_loop().time() + timeout
        while int(await client.get(key) or 0) < n:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"barrier {group}: {await client.get(key)!r} of {n} in flight")
            await asyncio.sleep(0.02)
        return n
    finally:
        await client.aclose()


@tool(queue="itest")
async def aio_meet(group: str, n: int) -> int:
    return await _barrier(group, n)


@tool(queue="itest", timeout=0.5)
async def aio_overrun(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


class Meet(StartEvent):
    group: str
    n: int


class GatherMeet(Workflow):
    """One run, ``n`` tool calls awaited together, each waiting for all the others."""

    queue = "itest"

    @step
    async def main(self, ctx: Context, ev: Meet) -> StopEvent:
        got = await asyncio.gather(
            *[ctx.call_tool("aio_meet", group=ev.group, n=ev.n) for _ in range(ev.n)]
        )
        return StopEvent(result=len(got))


class StepMeet(Workflow):
    """A step that itself waits for ``n`` runs' steps to be in flight at once."""

    queue = "itest"

    @step
    async def main(self, ev: Meet) -> StopEvent:
        return StopEvent(result=await _barrier(ev.group, ev.n))


class LoopBlocker(Workflow):
    """A step that blocks its event loop with sync code (what the watchdog reports)."""

    queue = "itest"

    @step
    async def main(self, ev: Slow) -> StopEvent:
        import time

        time.sleep(ev.seconds)
        return StopEvent(result="blocked")


class Overrun(Workflow):
    queue = "itest"

    @step
    async def main(self, ctx: Context, ev: Slow) -> StopEvent:
        try:
            return StopEvent(result=await ctx.call_tool("aio_overrun", seconds=ev.seconds))
        except ToolError as exc:
            return StopEvent(result=exc.type)


# --- time limits: calls that ignore their soft limit, classes a worker cannot build --------


@tool(queue="crash", timeout=1)
def it_stubborn(label: str) -> str:
    """Swallows Celery's soft time limit: only the hard limit (timeout + grace) stops it."""
    _stubborn_sleep(f"{label}.stubborn", 20)
    return "finished"


def _stubborn_sleep(record: str, seconds: float) -> None:
    """Records a start, then sleeps ``seconds`` swallowing every exception raised into it
    (Celery's SoftTimeLimitExceeded included): only a hard kill stops it."""
    import time

    with (_effects_dir() / record).open("a") as fh:
        fh.write("start\n")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # evaluated again only after an exception was swallowed
        try:  # the whole inner loop, its condition included: a signal lands anywhere in it
            while time.monotonic() < deadline:
                time.sleep(0.05)
        except BaseException:  # swallowing it is what this tool is for
            continue


class StubbornTool(Workflow):
    queue = "crash"

    @step
    async def main(self, ctx: Context, ev: Label) -> StopEvent:
        try:
            return StopEvent(result=await ctx.call_tool("it_stubborn", label=ev.label))
        except ToolError as exc:
            return StopEvent(result={"type": exc.type, "message": str(exc)})


class StubbornStep(Workflow):
    """A step stuck in sync code: its asyncio timeout cannot fire, the hard limit stops it."""

    queue = "crash"

    @step(timeout=1)
    async def main(self, ev: Label) -> StopEvent:
        _stubborn_sleep(f"{ev.label}.stubborn-step", 20)
        return StopEvent(result="finished")


class NeedsArgs(Workflow):
    """A worker builds workflows with no arguments: this one cannot run distributed."""

    queue = "itest"

    def __init__(self, llm: str) -> None:
        super().__init__()
        self.llm = llm

    @step
    async def main(self, ev: Label) -> StopEvent:
        return StopEvent(result=self.llm)


class StoreOnSignal(Workflow):
    """Writes its store once the test says so (``<label>.go``), after saying it waits: a test
    can break the store in between."""

    queue = "itest"

    @step
    async def go(self, ctx: Context, ev: Label) -> StopEvent:
        base = _effects_dir()
        (base / f"{ev.label}.waiting").touch()
        while not (base / f"{ev.label}.go").exists():
            await asyncio.sleep(0.02)
        await ctx.store.set("seen", ev.label)
        return StopEvent(result=await ctx.store.get("seen"))

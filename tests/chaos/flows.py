"""Workflows and tools of the chaos suite (imported by its workers and by its client).

Each is small and deterministic: its result is a pure function of its input, which
:func:`plan_run` computes independently, so the suite can check every run's value. Every tool
logs each execution to one effects file (a ``start`` line, then an ``end`` line carrying a fresh
token, each one ``O_APPEND`` write) and returns the token; every workflow puts the tokens it
received in its result. That tells the suite which execution answered each call, and whether
any execution started after that answer.

Effects-file lines (wall-clock seconds, comparable across the suite's processes)::

    start <call_key> <attempt> <time>
    fail  <call_key> <attempt> <time>     (the retry tool's designed failure)
    end   <call_key> <token> <time>
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass
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
    Workflow,
    step,
    tool,
)

QUEUE = "chaos"
EFFECTS_FILE = "chaos-effects.log"
GATHER_WIDTH = 4
FANOUT_WIDTH = 3
KINDS = ("gather", "fanout", "nested", "hitl", "hitl_child", "retry", "sleep", "doomed")


def effects_path() -> Path:
    """The suite's effects file: in ``BATON_TEST_DIR``, which the suite gives its workers."""
    return Path(os.environ.get("BATON_TEST_DIR", "/tmp")) / EFFECTS_FILE


def call_key(tool_name: str, label: str, index: int) -> str:
    """One logical tool call of one run: the same on every attempt and redelivery."""
    return f"{tool_name}/{label}/{index}"


def bot_reply(label: str) -> str:
    """What the suite's bot answers to a run's question (so the result can be checked)."""
    return f"yes:{label}"


def _log(line: str) -> None:
    """Append one line with one write: lines of concurrent processes never interleave."""
    fd = os.open(effects_path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line} {time.time():.6f}\n".encode())
    finally:
        os.close(fd)


def _answer(key: str, value: int) -> dict[str, Any]:
    token = uuid.uuid4().hex
    _log(f"end {key} {token}")
    return {"value": value, "token": token}


# --- tools ---------------------------------------------------------------------------------


@tool(queue=QUEUE)
def chaos_square(key: str, x: int, ctx: ToolContext) -> dict[str, Any]:
    """Sync, no retry policy: more than one execution per call is a duplicate."""
    _log(f"start {key} {ctx.attempt}")
    time.sleep(0.03)  # a little work, so that kills can land mid-call
    return _answer(key, x * x)


@tool(queue=QUEUE)
async def chaos_add(key: str, a: int, b: int, ctx: ToolContext) -> dict[str, Any]:
    """Async, no retry policy (runs on the asyncio worker's loop)."""
    _log(f"start {key} {ctx.attempt}")
    await asyncio.sleep(0.03)
    return _answer(key, a + b)


@tool(queue=QUEUE, retry=Retry(max_attempts=3))
def chaos_flaky(key: str, x: int, ctx: ToolContext) -> dict[str, Any]:
    """Fails on its first attempt by design; its policy allows three executions."""
    _log(f"start {key} {ctx.attempt}")
    if ctx.attempt == 1:
        _log(f"fail {key} {ctx.attempt}")
        raise ConnectionError(f"{key}: the first attempt fails by design")
    return _answer(key, x + 1)


@tool(queue=QUEUE)
def chaos_broken(key: str, ctx: ToolContext) -> int:
    """Always fails, no retry: its run is meant to fail."""
    _log(f"start {key} {ctx.attempt}")
    raise ValueError(f"{key}: broken by design")


# --- events --------------------------------------------------------------------------------


class ChaosInput(StartEvent):
    label: str
    x: int


class Part(Event):
    label: str
    a: int
    i: int


class PartDone(Event):
    key: str
    value: int
    token: str


class ChaosAsk(InputRequiredEvent):
    label: str


class ChaosAnswer(HumanResponseEvent):
    reply: str


class Napped(Event):
    x: int


def _result(value: int, answers: list[tuple[str, dict[str, Any]]], **extra: Any) -> dict[str, Any]:
    """``{"value", "tokens": {call_key: token}}``: the tokens say which executions answered."""
    return {"value": value, "tokens": {k: a["token"] for k, a in answers}, **extra}


# --- workflows -----------------------------------------------------------------------------


class ChaosGather(Workflow):
    """Parallel tool calls in one step (``asyncio.gather``), summed."""

    queue = QUEUE

    @step
    async def main(self, ctx: Context, ev: ChaosInput) -> StopEvent:
        keys = [call_key("chaos_square", ev.label, i) for i in range(GATHER_WIDTH)]
        got = await asyncio.gather(
            *[ctx.call_tool("chaos_square", key=k, x=ev.x + i) for i, k in enumerate(keys)]
        )
        answers = list(zip(keys, got, strict=True))
        return StopEvent(result=_result(sum(a["value"] for a in got), answers))


class ChaosFanOut(Workflow):
    """``send_event`` fan-out to a step that calls a tool, ``collect_events`` fan-in."""

    queue = QUEUE

    @step
    async def fan(self, ctx: Context, ev: ChaosInput) -> Part | None:
        for i in range(FANOUT_WIDTH):
            ctx.send_event(Part(label=ev.label, a=ev.x, i=i))
        return None

    @step
    async def work(self, ctx: Context, ev: Part) -> PartDone:
        key = call_key("chaos_add", ev.label, ev.i)
        got = await ctx.call_tool("chaos_add", key=key, a=ev.a, b=ev.i)
        return PartDone(key=key, value=got["value"], token=got["token"])

    @step
    async def collect(self, ctx: Context, ev: PartDone) -> StopEvent | None:
        done = ctx.collect_events(ev, [PartDone] * FANOUT_WIDTH)
        if done is None:
            return None
        parts = [e for e in done if isinstance(e, PartDone)]
        answers = [(e.key, {"token": e.token}) for e in parts]
        return StopEvent(result=_result(sum(e.value for e in parts), answers))


class ChaosChild(Workflow):
    """The child of :class:`ChaosParent`: one tool call."""

    queue = QUEUE

    @step
    async def main(self, ctx: Context, ev: ChaosInput) -> StopEvent:
        key = call_key("chaos_square", ev.label, 0)
        got = await ctx.call_tool("chaos_square", key=key, x=ev.x + 1)
        return StopEvent(result=_result(got["value"], [(key, got)]))


class ChaosParent(Workflow):
    """A child workflow and a tool call awaited together."""

    queue = QUEUE

    @step
    async def main(self, ctx: Context, ev: ChaosInput) -> StopEvent:
        key = call_key("chaos_square", ev.label, 0)
        child, own = await asyncio.gather(
            ctx.run_workflow(ChaosChild, ChaosInput(label=f"{ev.label}.child", x=ev.x)),
            ctx.call_tool("chaos_square", key=key, x=ev.x),
        )
        result = _result(child["value"] + own["value"], [(key, own)])
        result["tokens"].update(child["tokens"])
        return StopEvent(result=result)


class ChaosApproval(Workflow):
    """Human in the loop: waits for the bot's answer, then makes a tool call."""

    queue = QUEUE

    @step
    async def ask(self, ctx: Context, ev: ChaosInput) -> StopEvent:
        answer = await ctx.wait_for_event(ChaosAnswer, waiter_event=ChaosAsk(label=ev.label))
        key = call_key("chaos_square", ev.label, 0)
        got = await ctx.call_tool("chaos_square", key=key, x=ev.x)
        return StopEvent(result=_result(got["value"], [(key, got)], reply=answer.reply))


class ChaosApprovalParent(Workflow):
    """Human in the loop asked by a child: the answer goes to the parent's handle."""

    queue = QUEUE

    @step
    async def main(self, ctx: Context, ev: ChaosInput) -> StopEvent:
        child = await ctx.run_workflow(ChaosApproval, ChaosInput(label=ev.label, x=ev.x))
        return StopEvent(result=child)


class ChaosFlaky(Workflow):
    """A tool whose first attempt fails; its retry policy makes the run succeed."""

    queue = QUEUE

    @step
    async def main(self, ctx: Context, ev: ChaosInput) -> StopEvent:
        key = call_key("chaos_flaky", ev.label, 0)
        got = await ctx.call_tool("chaos_flaky", key=key, x=ev.x)
        return StopEvent(result=_result(got["value"], [(key, got)]))


def nap_seconds(x: int) -> float:
    """0.05-0.25 s, from the input: short sleeps that keep a worker slot busy."""
    return 0.05 + (x % 5) * 0.05


class ChaosSleepy(Workflow):
    """Two steps that each sleep (a step holding its slot, no tool)."""

    queue = QUEUE

    @step
    async def first(self, ev: ChaosInput) -> Napped:
        await asyncio.sleep(nap_seconds(ev.x))
        return Napped(x=ev.x)

    @step
    async def second(self, ev: Napped) -> StopEvent:
        await asyncio.sleep(nap_seconds(ev.x + 1))
        return StopEvent(result=_result(2 * ev.x, []))


class ChaosDoomed(Workflow):
    """Fails on purpose (a tool that always fails, uncaught): a run that must end ``failed``."""

    queue = QUEUE

    @step
    async def main(self, ctx: Context, ev: ChaosInput) -> StopEvent:
        await ctx.call_tool("chaos_broken", key=call_key("chaos_broken", ev.label, 0))
        return StopEvent(result=_result(0, []))


# --- what each run should give -------------------------------------------------------------


@dataclass(frozen=True)
class RunPlan:
    """One run to submit and what it must end with (computed from its input alone)."""

    kind: str
    label: str
    x: int
    workflow: str
    value: int | None
    call_keys: frozenset[str]
    status: str = "completed"
    reply: str | None = None


def plan_run(kind: str, label: str, x: int) -> RunPlan:
    """The workflow for ``kind`` and its expected end, worked out without running it."""

    def make(workflow: str, value: int | None, keys: list[str], **extra: Any) -> RunPlan:
        return RunPlan(kind, label, x, workflow, value=value, call_keys=frozenset(keys), **extra)

    sq = "chaos_square"
    if kind == "gather":
        keys = [call_key(sq, label, i) for i in range(GATHER_WIDTH)]
        return make("ChaosGather", sum((x + i) ** 2 for i in range(GATHER_WIDTH)), keys)
    if kind == "fanout":
        keys = [call_key("chaos_add", label, i) for i in range(FANOUT_WIDTH)]
        return make("ChaosFanOut", sum(x + i for i in range(FANOUT_WIDTH)), keys)
    if kind == "nested":
        keys = [call_key(sq, label, 0), call_key(sq, f"{label}.child", 0)]
        return make("ChaosParent", x * x + (x + 1) ** 2, keys)
    if kind in ("hitl", "hitl_child"):
        workflow = "ChaosApproval" if kind == "hitl" else "ChaosApprovalParent"
        return make(workflow, x * x, [call_key(sq, label, 0)], reply=bot_reply(label))
    if kind == "retry":
        return make("ChaosFlaky", x + 1, [call_key("chaos_flaky", label, 0)])
    if kind == "sleep":
        return make("ChaosSleepy", 2 * x, [])
    if kind == "doomed":
        return make("ChaosDoomed", None, [], status="failed")
    raise ValueError(f"unknown run kind {kind!r}")

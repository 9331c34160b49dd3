"""Nested workflows: a step runs a child workflow with ``ctx.run_workflow`` and uses its result.

``Report`` runs ``WordStats`` once per text; ``WordStats`` calls the ``word_count`` tool.
``Outer`` → ``Middle`` → ``Inner`` nest three levels deep, and ``Middle`` makes two tool calls
in parallel with ``asyncio.gather`` before running ``Inner`` — distributed, each level is
suspended while it waits, so this completes even with a single worker slot.
"""

from __future__ import annotations

import asyncio

from workflows import Context, StartEvent, StopEvent, Workflow, step


class TextInput(StartEvent):
    """One text to measure."""

    text: str


class ReportInput(StartEvent):
    """The texts to report on."""

    texts: list[str]


class WordStats(Workflow):
    """Child: count the words of one text with the ``word_count`` tool."""

    @step
    async def measure(self, ctx: Context, ev: TextInput) -> StopEvent:
        words = await ctx.call_tool("word_count", text=ev.text)
        return StopEvent(result={"text": ev.text, "words": words})


class Report(Workflow):
    """Parent: run ``WordStats`` for each text, then total the counts."""

    @step
    async def report(self, ctx: Context, ev: ReportInput) -> StopEvent:
        per_text = [await ctx.run_workflow(WordStats, TextInput(text=t)) for t in ev.texts]
        total = sum(int(r["words"]) for r in per_text)
        return StopEvent(result={"total_words": total, "per_text": per_text})


class InnerInput(StartEvent):
    """Input of the innermost workflow."""

    x: int


class MiddleInput(StartEvent):
    """Input of the middle workflow."""

    x: int


class OuterInput(StartEvent):
    """Input of the outermost workflow."""

    x: int


class Inner(Workflow):
    """Level 3: one tool call."""

    @step
    async def finish(self, ctx: Context, ev: InnerInput) -> StopEvent:
        return StopEvent(result=await ctx.call_tool("add", a=ev.x, b=100))


class Middle(Workflow):
    """Level 2: two parallel tool calls, then the ``Inner`` child on their sum."""

    @step
    async def fan(self, ctx: Context, ev: MiddleInput) -> StopEvent:
        total, product = await asyncio.gather(
            ctx.call_tool("add", a=ev.x, b=1), ctx.call_tool("multiply", a=ev.x, b=2)
        )
        inner = await ctx.run_workflow(Inner, InnerInput(x=total + product))
        return StopEvent(result={"sum": total, "product": product, "inner": inner})


class Outer(Workflow):
    """Level 1: run ``Middle`` and wrap its result."""

    @step
    async def start(self, ctx: Context, ev: OuterInput) -> StopEvent:
        middle = await ctx.run_workflow(Middle, MiddleInput(x=ev.x))
        return StopEvent(result={"x": ev.x, "middle": middle})

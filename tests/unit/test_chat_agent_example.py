"""The chat agent of docs/porting.md, in-process: memory across runs, a refund answered while
streaming, saved contexts continued; and the guide's code blocks are the code tests run."""

from __future__ import annotations

import ast
import asyncio
import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from examples.chat_agent import (
    ChatAgent,
    ChatTurn,
    RefundDecision,
    RefundRequested,
    ToolUsed,
    main,
)
from workflows import (
    Context,
    Event,
    InvalidInputError,
    RunCancelledError,
    StartEvent,
    StepFailedError,
    StopEvent,
    ToolError,
    Workflow,
    step,
)

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "porting.md").read_text()
EXAMPLE = (ROOT / "examples" / "chat_agent.py").read_text()
TRANSCRIPT = """\
user:  Hi, I'm Ada.
agent: Hello Ada!
user:  Where is order A100?
agent: Order A100 (kettle, $25.00) is shipped.
user:  Please refund it.
human: approves the refund of A100
tool:  issue_refund {"order_id": "A100", "refunded": 25.0}
agent: Refunded $25.00 for order A100.
user:  Who am I?
agent: You are Ada.
"""


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body in a fresh event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def blocks(lang: str) -> list[str]:
    """The guide's fenced code blocks of one language, in order."""
    return re.findall(rf"^```{lang}\n(.*?)^```$", GUIDE, flags=re.MULTILINE | re.DOTALL)


def llama_program() -> str:
    """The guide's first Python block: the whole program as written for LlamaIndex."""
    return blocks("python")[0]


# --- the guide is the code the tests run --------------------------------------------------


def test_the_llama_program_of_the_guide_runs_unchanged_on_baton(tmp_path: Path) -> None:
    (tmp_path / "before.py").write_text(llama_program())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "before.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == TRANSCRIPT


def test_the_transcripts_of_the_guide_are_what_the_programs_print() -> None:
    assert blocks("text") == [TRANSCRIPT, TRANSCRIPT]


def test_each_diff_of_the_guide_turns_the_llama_program_into_the_example() -> None:
    diffs = blocks("diff")
    assert len(diffs) == 7
    for diff in diffs:
        lines = diff.splitlines()
        old = "\n".join(line[1:] for line in lines if line[0] in " -")
        new = "\n".join(line[1:] for line in lines if line[0] in " +")
        assert old in llama_program(), diff
        assert new in EXAMPLE, diff
        assert old not in EXAMPLE or not any(line[0] == "-" for line in lines), diff


def test_the_distributed_driver_of_the_guide_is_the_examples() -> None:
    snippets = blocks("python")[1:]
    assert len(snippets) == 1
    assert snippets[0].startswith("def main_distributed(client: Client) -> None:")
    assert snippets[0] in EXAMPLE


def test_the_in_process_driver_is_the_llama_programs_main_unchanged() -> None:
    assert _body_of("main", llama_program()) == _body_of("main", EXAMPLE)


def _body_of(name: str, source: str) -> str:
    """A function's body without its docstring, as an AST dump."""
    fn = next(
        n for n in ast.parse(source).body if isinstance(n, ast.AsyncFunctionDef) and n.name == name
    )
    body = fn.body[1:] if isinstance(fn.body[0], ast.Expr) else fn.body
    return "\n".join(ast.dump(stmt) for stmt in body)


def test_main_prints_the_guides_transcript(capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(main())
    assert capsys.readouterr().out == TRANSCRIPT


# --- memory, tools and approval -------------------------------------------------------------


@in_loop
async def test_runs_given_one_context_share_the_history_as_chat_turn_models() -> None:
    agent = ChatAgent()
    ctx = Context(agent)
    assert await agent.run(ctx=ctx, message="Hi, I'm Ada.") == "Hello Ada!"
    reply = await agent.run(ctx=ctx, message="Where is order A100?")
    assert reply == "Order A100 (kettle, $25.00) is shipped."
    assert await agent.run(ctx=ctx, message="Who am I?") == "You are Ada."
    history = await ctx.store.get("history")
    assert [(type(t), t.role) for t in history] == [
        (ChatTurn, role)
        for role in ("user", "assistant", "user", "tool", "assistant", "user", "assistant")
    ]
    assert history[3].text == json.dumps(
        {"order_id": "A100", "item": "kettle", "price": 25.0, "status": "shipped"}
    )


@in_loop
async def test_a_run_without_the_context_remembers_nothing() -> None:
    await ChatAgent().run(message="Hi, I'm Ada.")
    assert await ChatAgent().run(message="Who am I?") == "I don't know yet."


async def refund(approved: bool, ctx: Context | None = None) -> tuple[list[Event], Any]:
    """Ask for a refund, answer the approval request while streaming: the stream, the reply."""
    agent = ChatAgent()
    handler = agent.run(ctx=ctx, message="Please refund A100.")
    seen: list[Event] = []
    async for ev in handler.stream_events():
        seen.append(ev)
        if isinstance(ev, RefundRequested):
            handler.ctx.send_event(RefundDecision(approved=approved))
    return seen, await handler


@pytest.mark.parametrize(
    ("approved", "reply", "refunded"),
    [(True, "Refunded $25.00 for order A100.", 25.0), (False, "Order A100 was not refunded.", 0.0)],
)
def test_a_refund_waits_for_the_humans_answer_sent_while_streaming(
    approved: bool, reply: str, refunded: float
) -> None:
    seen, result = asyncio.run(refund(approved))
    output = json.dumps({"order_id": "A100", "refunded": refunded})
    assert result == reply
    assert seen == [
        RefundRequested(order_id="A100"),
        ToolUsed(tool="issue_refund", output=output),
        StopEvent(result=reply),
    ]


@in_loop
async def test_to_dict_saved_as_json_continues_the_conversation_after_from_dict() -> None:
    agent = ChatAgent()
    handler = agent.run(message="Hi, I'm Ada.")
    await handler
    saved = json.dumps(handler.ctx.to_dict())
    ctx = Context.from_dict(ChatAgent(), json.loads(saved))
    _, reply = await refund(True, ctx)
    assert reply == "Refunded $25.00 for order A100."
    assert await ChatAgent().run(ctx=ctx, message="Who am I?") == "You are Ada."


@in_loop
async def test_a_context_saved_while_waiting_for_approval_is_answered_after_from_dict() -> None:
    handler = ChatAgent().run(message="Please refund A100.")
    async for ev in handler.stream_events():
        if isinstance(ev, RefundRequested):
            saved = json.dumps(handler.ctx.to_dict())
            await handler.cancel_run()
            break
    with pytest.raises(RunCancelledError):
        await handler
    agent = ChatAgent()
    handler = agent.run(ctx=Context.from_dict(agent, json.loads(saved)))
    handler.ctx.send_event(RefundDecision(approved=True))
    assert await handler == "Refunded $25.00 for order A100."


# --- the guide's checklist ------------------------------------------------------------------


def test_a_workflow_has_no_run_timeout_unless_given_one() -> None:
    assert ChatAgent().timeout is None
    assert ChatAgent(timeout=60).timeout == 60


def test_a_context_saved_by_llamaindex_workflows_does_not_load() -> None:
    llama_data = {"version": 2, "state": {"state_data": {"_data": {}}}, "is_running": False}
    with pytest.raises(InvalidInputError, match="unsupported context version 2"):
        Context.from_dict(ChatAgent(), llama_data)


class PortingLookup(Workflow):
    """A step that raises KeyError itself, as LlamaIndex code often does."""

    @step
    async def look(self, ev: StartEvent) -> StopEvent:
        orders: dict[str, str] = {}
        return StopEvent(result=orders[str(ev.get("order_id"))])


@in_loop
async def test_a_steps_key_error_is_caught_as_key_error_and_as_step_failed() -> None:
    with pytest.raises(KeyError) as caught:
        await PortingLookup().run(order_id="Z999")
    assert isinstance(caught.value, StepFailedError)
    assert caught.value.cause_type == "KeyError"


@in_loop
async def test_a_tools_uncaught_key_error_fails_the_run_catchable_as_a_key_error() -> None:
    with pytest.raises(StepFailedError) as caught:
        await ChatAgent().run(message="Where is order Z999?")
    assert isinstance(caught.value, KeyError) and caught.value.args == ("Z999",)
    cause = caught.value.__cause__
    assert isinstance(cause, ToolError) and cause.type == "KeyError"


class PortingChild(Workflow):
    """A child run the old way, by its own ``run()``."""

    @step
    async def echo(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=f"child {ev.get('x')}")


class PortingParent(Workflow):
    """Runs ``PortingChild`` both ways: awaited directly, and with ``ctx.run_workflow``."""

    @step
    async def call(self, ctx: Context, ev: StartEvent) -> StopEvent:
        direct = await PortingChild().run(x=1)
        placed = await ctx.run_workflow(PortingChild, x=2)
        return StopEvent(result=[direct, placed])


@in_loop
async def test_a_child_awaited_in_a_step_runs_in_process_like_ctx_run_workflow() -> None:
    assert await PortingParent().run() == ["child 1", "child 2"]

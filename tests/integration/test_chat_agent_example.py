"""The chat agent of docs/porting.md on real workers: memory through ``context=``, the refund
approval answered with ``handle.send_event``, and the same results as in-process."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from app.client import Client, RunHandle
from examples.chat_agent import (
    ChatAgent,
    ChatTurn,
    RefundDecision,
    RefundRequested,
    main,
    main_distributed,
)
from tests.harness import Worker, eventually
from workflows import (
    Context,
    Event,
    InvalidInputError,
    RunCancelledError,
    StepFailedError,
    WorkflowTimeoutError,
)


def test_the_conversation_on_workers_prints_the_in_process_transcript(
    client: Client, workers: Worker, capsys: pytest.CaptureFixture[str]
) -> None:
    main_distributed(client)
    remote = capsys.readouterr().out
    asyncio.run(main())
    local = capsys.readouterr().out
    assert remote == local
    assert remote.splitlines()[-1] == "agent: You are Ada."


def test_each_model_and_tool_call_is_a_celery_task_of_its_own(
    client: Client, workers: Worker
) -> None:
    handle = client.submit(ChatAgent, message="Where is order A100?")
    assert handle.result(timeout=60) == "Order A100 (kettle, $25.00) is shipped."

    def logged() -> bool:
        log = workers.log.read_text(errors="replace")
        return all(f"Task tool.{name}[" in log for name in ("chat_model", "lookup_order"))

    eventually(logged, what="the tool tasks in the worker's log")


def history_of(data: dict[str, Any]) -> list[ChatTurn]:
    """The conversation held by context data."""
    history: list[ChatTurn] = asyncio.run(Context.from_dict(ChatAgent(), data).store.get("history"))
    return history


def test_a_conversation_goes_from_in_process_to_workers_and_back(
    client: Client, workers: Worker
) -> None:
    async def started() -> Context:
        agent = ChatAgent()
        ctx = Context(agent)
        await agent.run(ctx=ctx, message="Hi, I'm Ada.")
        return ctx

    handle = client.submit(
        ChatAgent, message="Where is order A100?", context=asyncio.run(started())
    )
    assert handle.result(timeout=60) == "Order A100 (kettle, $25.00) is shipped."
    data = handle.context()
    assert [t.role for t in history_of(data)] == ["user", "assistant", "user", "tool", "assistant"]

    async def back() -> Any:
        agent = ChatAgent()
        return await agent.run(ctx=Context.from_dict(agent, data), message="Who am I?")

    assert asyncio.run(back()) == "You are Ada."


async def refund_in_process(approved: bool) -> tuple[Any, list[str], dict[str, Any]]:
    """The refund turn in-process: reply, event types, saved context."""
    agent = ChatAgent()
    handler = agent.run(message="Please refund A100.")
    async for ev in handler.stream_events():
        if isinstance(ev, RefundRequested):
            handler.ctx.send_event(RefundDecision(approved=approved))
    reply = await handler
    return reply, [type(e).__name__ for e in handler.events], handler.ctx.to_dict()


def refund_on_workers(client: Client, approved: bool) -> tuple[Any, list[str], RunHandle]:
    """The same turn on workers, answered through a second handle to the run."""
    handle = client.submit(ChatAgent, message="Please refund A100.")
    for ev in handle.stream_events(timeout=60):
        if isinstance(ev, RefundRequested):
            client.get(handle.run_id).send_event(RefundDecision(approved=approved))
    return handle.result(timeout=60), [_name(e) for e in handle.events()], handle


def _name(event: Event) -> str:
    return type(event).__name__


@pytest.mark.parametrize("approved", [True, False])
def test_a_refund_on_workers_waits_for_the_answer_and_ends_as_in_process(
    client: Client, workers: Worker, approved: bool
) -> None:
    local_reply, local_events, local_ctx = asyncio.run(refund_in_process(approved))
    remote_reply, remote_events, handle = refund_on_workers(client, approved)
    assert remote_reply == local_reply
    assert remote_events == local_events
    assert history_of(handle.context()) == history_of(local_ctx)
    assert json.loads(json.dumps(handle.context())) == local_ctx


def test_a_context_saved_while_paused_in_process_is_refused_by_submit(
    client: Client, workers: Worker
) -> None:
    async def paused() -> dict[str, Any]:
        handler = ChatAgent().run(message="Please refund A100.")
        async for ev in handler.stream_events():
            if isinstance(ev, RefundRequested):
                data = handler.ctx.to_dict()
                await handler.cancel_run()
                break
        with pytest.raises(RunCancelledError):
            await handler
        return data

    data = asyncio.run(paused())
    with pytest.raises(InvalidInputError, match="paused for input"):
        client.submit(ChatAgent, message="x", context=data)


@pytest.mark.long  # slow (a whole worker killed, a timeout run out): scripts/long.sh
def test_submit_timeout_ends_a_run_left_waiting_for_approval(
    client: Client, workers: Worker
) -> None:
    handle = client.submit(ChatAgent, message="Please refund A100.", timeout=1)
    with pytest.raises(WorkflowTimeoutError):
        handle.result(timeout=60)


def test_a_tools_uncaught_key_error_fails_the_run_catchable_as_a_key_error(
    client: Client, workers: Worker
) -> None:
    handle = client.submit(ChatAgent, message="Where is order Z999?")
    with pytest.raises(StepFailedError) as caught:
        handle.result(timeout=60)
    assert isinstance(caught.value, KeyError) and caught.value.args == ("Z999",)
    assert caught.value.cause_type == "ToolError"
    assert "ToolError: 'Z999'" in caught.value.message

"""Memory across runs, typed values and typed state on real workers: the same workflows as
the in-process tests (tests/unit/test_memory_and_state.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from app.client import Client
from tests.harness import Worker
from tests.integration.memory_flows import (
    ChatMemory,
    ChatTurn,
    Concurrent,
    Counters,
    EditThenCall,
    Reply,
    ToolObjects,
    WideEdit,
)
from workflows import Context, InvalidInputError


def test_a_result_model_and_store_objects_come_back_with_their_types(
    client: Client, workers: Worker
) -> None:
    handle = client.submit(ChatMemory, message="hi")
    assert handle.result(timeout=30) == Reply(text="echo hi (1 turns)", turns=2)
    data = handle.context()
    restored = Context.from_dict(ChatMemory(), data)
    history = asyncio.run(restored.store.get("history"))
    assert [type(t) for t in history] == [ChatTurn, ChatTurn]
    assert asyncio.run(restored.store.get("shape")) == (2, "turns")


def test_a_submitted_run_continues_the_store_of_an_earlier_run(
    client: Client, workers: Worker
) -> None:
    first = client.submit(ChatMemory, message="one")
    first.result(timeout=30)
    second = client.submit(ChatMemory, message="two", context=first.run_id)
    assert second.result(timeout=30) == Reply(text="echo two (3 turns)", turns=4)
    third = client.submit(ChatMemory, message="three", context=second.context())
    assert third.result(timeout=30).turns == 6

    # a conversation saved in-process goes on distributed, and back
    async def local() -> Context:
        wf = ChatMemory()
        ctx = Context(wf)
        await wf.run(ctx=ctx, message="local")
        return ctx

    ctx = asyncio.run(local())
    fourth = client.submit(ChatMemory, message="remote", context=ctx)
    assert fourth.result(timeout=30).turns == 4

    async def back() -> Reply:
        wf = ChatMemory()
        reply: Reply = await wf.run(ctx=Context.from_dict(wf, fourth.context()), message="home")
        return reply

    assert asyncio.run(back()).turns == 6


def test_a_context_that_cannot_be_continued_is_refused_before_anything_is_written(
    client: Client, workers: Worker
) -> None:
    with pytest.raises(InvalidInputError, match="no run 'nope'"):
        client.submit(ChatMemory, message="x", context="nope")
    done = client.submit(Concurrent, width=1)
    done.result(timeout=30)
    with pytest.raises(InvalidInputError, match="is a Concurrent run, not ChatMemory"):
        client.submit(ChatMemory, message="x", context=done)
    with pytest.raises(InvalidInputError, match="malformed context data"):
        client.submit(ChatMemory, message="x", context={"version": 1, "workflow": "ChatMemory"})
    waiting = client.submit("Approve")
    with pytest.raises(InvalidInputError, match="is still running"):
        client.submit("Approve", context=waiting)
    waiting.cancel()


def test_edit_state_is_atomic_across_workers_and_not_repeated_by_a_replay(
    client: Client, workers: Worker
) -> None:
    state = client.submit(Concurrent, width=20).result(timeout=60)
    assert isinstance(state, Counters)
    assert state.count == 20  # each tick's step was replayed after its tool call
    assert sorted(state.seen) == sorted(f"t{i}" for i in range(20))
    assert state.last is not None and state.last.role == "tick"


def test_a_tool_task_takes_and_returns_models(client: Client, workers: Worker) -> None:
    result = client.submit(ToolObjects).result(timeout=30)
    assert result == ChatTurn(role="user", text="cba", at=datetime(2026, 1, 2))


def test_a_step_replayed_after_its_tool_call_edits_from_the_data_it_first_saw(
    client: Client, workers: Worker
) -> None:
    assert client.submit(EditThenCall).result(timeout=30) == {"mine": 1, "echoed": "1", "n": 1}


def test_an_edit_of_thousands_of_keys_commits_whole(client: Client, workers: Worker) -> None:
    result = client.submit(WideEdit, width=6000).result(timeout=60)
    assert result == {"written": 6000, "left": {"k5999": 5999}}

"""Every shipped example gives the same result and the same events in-process and distributed."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from app.client import Client
from examples.approval import Approval, ApprovalRequested
from tests.harness import Worker
from workflows import Event
from workflows.workflow import require_workflow

ANSWER = Approval(approved=True, reviewer="rev", comment="fine")

CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("Pipeline", {"text": "The cat saw the hat. The hat saw the cat!"}, False),
    ("Research", {"topic": "rust", "n_docs": 7}, False),
    ("Report", {"texts": ["a b c", "d e"]}, False),
    ("Outer", {"x": 3}, False),
    ("ToolRunner", {"tool": "add", "params": {"a": 2, "b": 5}}, False),
    ("ToolRunner", {"tool": "always_fails", "params": {}}, False),
    ("ExpenseApproval", {"claimant": "ada", "amount": 42.0}, True),
    ("ApprovalParent", {"claimant": "bob", "amounts": [80.0, 45.5]}, True),
]
# Fan-out makes the order of these workflows' events free; all others must match exactly.
UNORDERED = {"Research"}


def run_inprocess(name: str, kwargs: dict[str, Any], answer: bool) -> tuple[Any, list[str]]:
    async def go() -> tuple[Any, list[str]]:
        handler = require_workflow(name)().run(**kwargs)
        if answer:
            async for event in handler.stream_events():
                if isinstance(event, ApprovalRequested):
                    await handler.send_event(ANSWER)
        result = await handler
        return result, [type(e).__name__ for e in handler.events]

    return asyncio.run(go())


def run_distributed(
    client: Client, name: str, kwargs: dict[str, Any], answer: bool
) -> tuple[Any, list[str]]:
    handle = client.submit(name, **kwargs)
    if answer:
        for event in handle.stream_events(timeout=60):
            if isinstance(event, ApprovalRequested):
                handle.send_event(ANSWER)
    result = handle.result(timeout=60)
    return result, [type(e).__name__ for e in handle.events()]


@pytest.mark.parametrize(("name", "kwargs", "answer"), CASES, ids=[c[0] for c in CASES])
def test_example_gives_identical_results_and_events_in_both_runtimes(
    client: Client, workers: Worker, name: str, kwargs: dict[str, Any], answer: bool
) -> None:
    assert_same_as_in_process(client, name, kwargs, answer)


def assert_same_as_in_process(
    client: Client, name: str, kwargs: dict[str, Any], answer: bool
) -> None:
    """The distributed run on ``client`` gives the in-process result and events."""
    local_result, local_events = run_inprocess(name, kwargs, answer)
    remote_result, remote_events = run_distributed(client, name, kwargs, answer)
    assert _plain(remote_result) == _plain(local_result)
    if name in UNORDERED:
        assert Counter(remote_events) == Counter(local_events)
    else:
        assert remote_events == local_events


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, Event) else value

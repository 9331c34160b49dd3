"""A run paused on ``wait_for_event`` is snapshotted to JSON and resumed in another process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from examples.approval import (
    Approval,
    ApprovalParent,
    ApprovalRequested,
    ExpenseApproval,
)
from workflows import Event, InputRequiredEvent, InvalidInputError, RunCancelledError, Workflow
from workflows.codec import encode_event

from .pausing import CartCheckout, Payment, PaymentRequested

ROOT = Path(__file__).resolve().parents[2]

RESUME = """
import asyncio, importlib, json, sys
from workflows.codec import decode_event

module, name, snapshot_file, answer = sys.argv[1:5]
workflow = getattr(importlib.import_module(module), name)

async def main():
    with open(snapshot_file) as fh:
        handler = workflow.resume(json.load(fh))
    await handler.send_event(decode_event(json.loads(answer)))
    print(json.dumps(await handler))

asyncio.run(main())
"""


async def snapshot_when_waiting(workflow: Workflow, **kwargs: Any) -> dict[str, Any]:
    """Run until the first input request, snapshot, then cancel the original run."""
    handler = workflow.run(**kwargs)
    async for event in handler.stream_events():
        if isinstance(event, InputRequiredEvent):
            break
    snapshot = await handler.snapshot()
    await handler.cancel_run()
    with pytest.raises(RunCancelledError):
        await handler
    return snapshot


def resume_elsewhere(
    workflow: type[Workflow],
    snapshot: dict[str, Any],
    answer: Event,
    tmp: Path,
    env: dict[str, str] | None = None,
) -> Any:
    """Resume the snapshot in a fresh interpreter, send ``answer``, return the printed result."""
    path = tmp / "snapshot.json"
    path.write_text(json.dumps(snapshot))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            RESUME,
            workflow.__module__,
            workflow.__name__,
            str(path),
            json.dumps(encode_event(answer)),
        ],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_paused_approval_resumes_in_a_new_process_with_the_answer(tmp_path: Path) -> None:
    snapshot = asyncio.run(snapshot_when_waiting(ExpenseApproval(), claimant="ada", amount=42.0))
    assert snapshot["workflow"] == "ExpenseApproval"
    assert encode_event(ApprovalRequested(claimant="ada", amount=42.0)) in snapshot["log"]
    answer = Approval(approved=False, reviewer="carol", comment="no receipt")
    assert resume_elsewhere(ExpenseApproval, snapshot, answer, tmp_path) == {
        "claimant": "ada",
        "amount": 42.0,
        "status": "rejected",
        "reviewer": "carol",
        "comment": "no receipt",
    }


def test_resumed_run_replays_its_journal_without_repeating_completed_tool_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    effects = tmp_path / "effects.log"
    monkeypatch.setenv("UNIT_EFFECTS_FILE", str(effects))
    snapshot = asyncio.run(snapshot_when_waiting(CartCheckout(), item="book"))
    assert encode_event(PaymentRequested(reservation="R-book")) in snapshot["log"]
    before = effects.read_text().splitlines()
    assert before == [f"book {os.getpid()}", f"receipt {os.getpid()}"]
    result = resume_elsewhere(CartCheckout, snapshot, Payment(paid=True, by="dave"), tmp_path)
    assert result == {
        "item": "book",
        "reservation": "R-book",
        "receipt": "R-receipt",
        "paid": True,
        "by": "dave",
    }
    assert effects.read_text().splitlines() == before


def test_a_run_waiting_inside_a_child_workflow_cannot_be_snapshotted_and_goes_on() -> None:
    async def scenario() -> None:
        handler = ApprovalParent().run(claimant="bob", amounts=[1.0])
        async for event in handler.stream_events():
            if isinstance(event, ApprovalRequested):
                break
        with pytest.raises(InvalidInputError, match="still has running steps"):
            await handler.snapshot()
        await handler.send_event(Approval(approved=True, reviewer="x"))
        assert (await handler)["paid"] == 1.0

    asyncio.run(scenario())


def test_a_snapshot_of_another_workflow_is_refused() -> None:
    snapshot = asyncio.run(snapshot_when_waiting(ExpenseApproval(), claimant="ada", amount=1.0))

    async def resume() -> None:
        CartCheckout.resume(snapshot)

    with pytest.raises(InvalidInputError, match="snapshot is of ExpenseApproval, not CartCheckout"):
        asyncio.run(resume())

"""Every shipped example runs in-process and produces exactly the expected result."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

import examples
from examples.approval import Approval, ApprovalParent, ApprovalRequested, ExpenseApproval
from examples.demo import main as demo_main
from examples.nested import Outer, Report
from examples.pipeline import Pipeline
from examples.research import Research, ResearchProgress
from examples.tool_runner import ToolRunner
from workflows import Event, InvalidInputError, StopEvent, Workflow
from workflows.tools import all_tools
from workflows.workflow import all_workflows

EXPECTED_RESEARCH = {
    "topic": "rust",
    "documents": 7,
    "mean_score": 0.0,
    "positive": 2,
    "negative": 2,
    "scores": [
        {"doc": "doc-00: rust shows great promise and strong results", "score": 1.0},
        {"doc": "doc-01: critics call rust a poor and risky bet", "score": -1.0},
        {"doc": "doc-02: rust is neither good nor bad says the survey", "score": 0.0},
        {"doc": "doc-03: early users love rust but report slow support", "score": 0.0},
        {"doc": "doc-04: rust adoption is growing with excellent feedback", "score": 1.0},
        {"doc": "doc-05: a failed rust rollout raised serious concerns", "score": -1.0},
        {"doc": "doc-06: rust was discussed at length", "score": 0.0},
    ],
}


def run_sync(workflow: Workflow, **kwargs: Any) -> Any:
    """Run a workflow to completion on a fresh event loop."""

    async def go() -> Any:
        return await workflow.run(**kwargs)

    return asyncio.run(go())


async def _answering(start: Callable[[], Any], approved: bool) -> tuple[list[Event], Any]:
    """Start a run, drain its stream answering each approval request; the stream and result."""
    handler = start()
    seen: list[Event] = []
    async for event in handler.stream_events():
        seen.append(event)
        if isinstance(event, ApprovalRequested):
            await handler.send_event(Approval(approved=approved, reviewer="rev", comment="ok"))
    return seen, await handler


def test_import_examples_registers_every_example_workflow_and_tool() -> None:
    assert {m.__name__ for m in (examples.approval, examples.tool_runner)} <= set(
        f"examples.{n}" for n in examples.__all__
    )
    assert {
        "Pipeline",
        "Research",
        "Report",
        "WordStats",
        "Outer",
        "Middle",
        "Inner",
        "ExpenseApproval",
        "ApprovalParent",
        "ToolRunner",
        "ChatAgent",
    } <= set(all_workflows())
    assert {
        "add",
        "multiply",
        "word_count",
        "slow",
        "flaky",
        "always_fails",
        "sentiment",
    } <= set(all_tools())


def test_pipeline_counts_words_of_the_text() -> None:
    result = run_sync(Pipeline(), text="The cat saw the hat. The hat saw the cat!")
    assert result == {"words": 10, "unique": 4, "top": [["the", 4], ["cat", 2], ["hat", 2]]}


def test_research_scores_every_document_and_streams_progress() -> None:
    async def scenario() -> tuple[list[Event], Any]:
        handler = Research().run(topic="rust", n_docs=7)
        return [e async for e in handler.stream_events()], await handler

    stream, result = asyncio.run(scenario())
    assert result == EXPECTED_RESEARCH
    assert stream == [
        ResearchProgress(stage="plan", detail="7 documents"),
        ResearchProgress(stage="combine", detail="7 scores"),
        StopEvent(result=EXPECTED_RESEARCH),
    ]


def test_research_reads_five_documents_by_default() -> None:
    result = run_sync(Research(), topic="go")
    assert result["documents"] == 5
    assert [s["score"] for s in result["scores"]] == [1.0, -1.0, 0.0, 0.0, 1.0]


def test_research_rejects_a_query_without_documents_naming_the_field() -> None:
    with pytest.raises(InvalidInputError, match="n_docs"):
        Research().run(topic="rust", n_docs=0)


def test_report_runs_the_child_workflow_per_text_and_totals_the_words() -> None:
    result = run_sync(Report(), texts=["a b c", "d e"])
    assert result == {
        "total_words": 5,
        "per_text": [{"text": "a b c", "words": 3}, {"text": "d e", "words": 2}],
    }


def test_three_level_nesting_with_parallel_tool_calls_returns_every_level() -> None:
    result = run_sync(Outer(), x=3)
    assert result == {"x": 3, "middle": {"sum": 4, "product": 6, "inner": 110}}


@pytest.mark.parametrize(("approved", "status"), [(True, "approved"), (False, "rejected")])
def test_expense_approval_result_follows_the_reviewers_answer(approved: bool, status: str) -> None:
    stream, result = asyncio.run(
        _answering(lambda: ExpenseApproval().run(claimant="ada", amount=42.0), approved)
    )
    assert stream[0] == ApprovalRequested(claimant="ada", amount=42.0)
    assert result == {
        "claimant": "ada",
        "amount": 42.0,
        "status": status,
        "reviewer": "rev",
        "comment": "ok",
    }
    assert stream == [ApprovalRequested(claimant="ada", amount=42.0), StopEvent(result=result)]


@pytest.mark.parametrize(("approved", "paid"), [(True, 125.5), (False, 0.0)])
def test_approval_parent_surfaces_the_childs_request_and_routes_the_answer_to_it(
    approved: bool, paid: float
) -> None:
    stream, result = asyncio.run(
        _answering(lambda: ApprovalParent().run(claimant="bob", amounts=[80.0, 45.5]), approved)
    )
    decision = {
        "claimant": "bob",
        "amount": 125.5,
        "status": "approved" if approved else "rejected",
        "reviewer": "rev",
        "comment": "ok",
    }
    assert result == {"decision": decision, "paid": paid}
    assert stream == [ApprovalRequested(claimant="bob", amount=125.5), StopEvent(result=result)]


@pytest.mark.parametrize(
    ("tool", "params", "expected"),
    [
        ("add", {"a": 2, "b": 3}, {"ok": True, "result": 5}),
        ("multiply", {"a": 4, "b": 5}, {"ok": True, "result": 20}),
        ("word_count", {"text": "one two three"}, {"ok": True, "result": 3}),
        ("sentiment", {"text": "great and strong"}, {"ok": True, "result": 1.0}),
        (
            "flaky",
            {"key": "k", "fail_times": 2},
            {"ok": True, "result": {"key": "k", "attempts": 3}},
        ),
        ("slow", {"seconds": 0.01}, {"ok": True, "result": {"slept": 0.01}}),
        (
            "always_fails",
            {},
            {
                "ok": False,
                "error": {
                    "type": "RuntimeError",
                    "message": "always_fails failed on purpose",
                    "attempts": 3,
                },
            },
        ),
        (
            "flaky",
            {"key": "k", "fail_times": 3},
            {
                "ok": False,
                "error": {
                    "type": "RuntimeError",
                    "message": "flaky k: attempt 3 failed on purpose",
                    "attempts": 3,
                },
            },
        ),
        (
            "slow",
            {"seconds": 5.0},
            {
                "ok": False,
                "error": {
                    "type": "ToolTimeout",
                    "message": "tool slow timed out after 1.0s",
                    "attempts": 1,
                },
            },
        ),
    ],
)
def test_tool_runner_returns_the_tools_result_or_its_error_as_data(
    tool: str, params: dict[str, Any], expected: dict[str, Any]
) -> None:
    result = run_sync(ToolRunner(), tool=tool, params=params)
    assert result == {"tool": tool, **expected}


def test_tool_runner_reports_invalid_arguments_as_data() -> None:
    result = run_sync(ToolRunner(), tool="add", params={"a": "two", "b": 3})
    error = result["error"]
    assert (result["ok"], error["type"], error["attempts"]) == (False, "InvalidArguments", 1)
    assert error["message"].startswith("invalid arguments for tool add:")
    assert "a\n  Input should be a valid integer" in error["message"]


def test_tool_runner_reports_an_unknown_tool_as_data() -> None:
    result = run_sync(ToolRunner(), tool="no_such_tool", params={})
    error = result["error"]
    assert (result["ok"], error["type"], error["attempts"]) == (False, "UnknownToolError", 0)
    assert error["message"].startswith("no tool named 'no_such_tool' (registered: ")


def test_demo_runs_every_example_and_prints_streams_and_results(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # no wrapping inside the asserted fragments
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    demo_main([])
    out = capsys.readouterr().out
    for text in (
        "Pipeline",
        "Research (fan-out / fan-in)",
        "stream ResearchProgress stage='plan'",
        "Outer → Middle → Inner",
        "stream ApprovalRequested claimant='ada'",
        "answer Approval approved=True",
        "answer Approval approved=False",
        "'status': 'rejected'",
        "ToolRunner: always_fails()",
        "'type': 'ToolTimeout'",
    ):
        assert text in out, text


def test_an_example_that_defines_workflows_runs_as_a_module() -> None:
    # ``python -m examples.chat_agent`` defines ChatAgent as __main__ after the package
    # imported it as examples.chat_agent: one class from one file, not a name clash
    done = subprocess.run(
        [sys.executable, "-m", "examples.chat_agent"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "agent: You are Ada." in done.stdout

"""The text Gantt chart groups a step's deliveries and its tool calls under the invocation,
and places each bar by its time within the run."""

from __future__ import annotations

from app.gantt import BAR, EMPTY, gantt
from tasks.protocol import Span, SpanKind, SpanOutcome


def span(
    kind: SpanKind,
    name: str,
    inv: str,
    start: float,
    end: float,
    outcome: SpanOutcome,
    run: str = "r1",
    call: str = "",
    attempt: int = 1,
    error: str = "",
) -> Span:
    return Span(kind, name, run, inv, call, attempt, "q", "w@h", start, end, outcome, error)


STEP, TOOL = SpanKind.STEP, SpanKind.TOOL


def test_a_step_that_ran_once_is_one_row_with_a_full_bar() -> None:
    rows = gantt([span(STEP, "Flow.go", "i1", 10.0, 12.0, SpanOutcome.COMPLETED)], "r1", width=10)
    assert len(rows) == 1
    assert rows[0].label == "Flow.go" and rows[0].bar == BAR * 10
    assert rows[0].duration == 2.0 and rows[0].offset == 0.0


def test_a_suspended_step_groups_its_resume_and_tool_calls_under_one_row() -> None:
    spans = [
        span(STEP, "Flow.ask", "i1", 0.0, 1.0, SpanOutcome.SUSPENDED),
        span(TOOL, "search", "i1", 1.0, 3.0, SpanOutcome.COMPLETED, call="i1.0"),
        span(STEP, "Flow.ask", "i1", 3.0, 4.0, SpanOutcome.COMPLETED),
        span(STEP, "Flow.end", "i2", 4.0, 4.0, SpanOutcome.COMPLETED),
    ]
    rows = gantt(spans, "r1", width=8)
    labels = [r.label for r in rows]
    assert labels == ["Flow.ask", " ├─ run", " ├─ tool search", " └─ resume", "Flow.end"]
    assert rows[0].outcome == "completed" and rows[0].duration == 4.0
    assert rows[0].bar == BAR * 8
    assert rows[1].bar == BAR * 2 + EMPTY * 6
    assert rows[2].bar == EMPTY * 2 + BAR * 4 + EMPTY * 2
    assert rows[3].bar == EMPTY * 6 + BAR * 2
    assert rows[4].bar == EMPTY * 7 + BAR  # an instant still shows


def test_retried_attempts_show_their_error_and_a_childs_steps_name_the_child() -> None:
    spans = [
        span(STEP, "Flow.go", "i1", 0.0, 1.0, SpanOutcome.RETRY, error="ValueError: x"),
        span(STEP, "Flow.go", "i1", 1.0, 2.0, SpanOutcome.FAILED, attempt=2, error="ValueError: x"),
        span(STEP, "Child.run", "c1", 0.5, 1.5, SpanOutcome.COMPLETED, run="child-run-id"),
    ]
    rows = gantt(spans, "r1", width=4)
    labels = [r.label for r in rows]
    assert labels == ["Flow.go", " ├─ run", " └─ run", "Child.run (child child-ru)"]
    assert rows[1].attempt == "1" and rows[1].outcome == "retry: ValueError: x"
    assert rows[2].attempt == "2" and rows[2].outcome == "failed: ValueError: x"
    assert rows[0].outcome == "failed"


def test_no_spans_no_rows() -> None:
    assert gantt([], "r1") == []

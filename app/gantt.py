"""A run's spans as rows of a text Gantt chart: what ran, where, when and for how long.

Rows are grouped by step invocation: a step that waited on calls ran in several deliveries (its
first run, then a resume per answer), and its tool calls ran meanwhile on other workers; the
group's first row spans them all, its members follow in the order they started. A step that ran
once, alone, is a single row. Pure: the CLI (and later a web view) draw the rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tasks.protocol import Span, SpanKind, SpanOutcome

BAR = "█"
EMPTY = "·"


@dataclass(frozen=True, slots=True)
class GanttRow:
    label: str
    attempt: str  # empty on a group's first row
    outcome: str
    queue: str
    worker: str
    offset: float  # seconds since the run's first span started
    duration: float
    bar: str


def gantt(spans: list[Span], root: str, width: int = 40) -> list[GanttRow]:
    """The chart's rows for ``spans`` of the run ``root`` (and its children)."""
    if not spans:
        return []
    t0 = min(s.start for s in spans)
    total = max(max(s.end for s in spans) - t0, 1e-9)
    groups: dict[tuple[str, str], list[Span]] = {}
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        groups.setdefault((span.run, span.inv), []).append(span)
    rows: list[GanttRow] = []
    for (run, _inv), members in groups.items():
        steps = [s for s in members if s.kind is SpanKind.STEP]
        name = steps[0].name if steps else members[0].name
        title = name if run == root else f"{name} (child {run[:8]})"
        start, end = members[0].start, max(s.end for s in members)
        if len(members) == 1:
            rows.append(_row(title, members[0], t0, total, width))
            continue
        last = steps[-1].outcome.value if steps else ""
        rows.append(
            GanttRow(
                title, "", last, "", "", start - t0, end - start, _bar(start, end, t0, total, width)
            )
        )
        for i, span in enumerate(members):
            branch = "└─" if i == len(members) - 1 else "├─"
            rows.append(_row(f" {branch} {_member(span, steps)}", span, t0, total, width))
    return rows


def _member(span: Span, steps: list[Span]) -> str:
    if span.kind is SpanKind.TOOL:
        return f"tool {span.name}"
    first = next((s for s in steps if s.attempt == span.attempt), span)
    return "run" if span is first else "resume"


def _row(label: str, span: Span, t0: float, total: float, width: int) -> GanttRow:
    return GanttRow(
        label,
        str(span.attempt),
        span.outcome.value + (f": {span.error}" if span.error else ""),
        span.queue,
        span.worker,
        span.start - t0,
        span.duration,
        _bar(span.start, span.end, t0, total, width),
    )


def _bar(start: float, end: float, t0: float, total: float, width: int) -> str:
    first = min(width - 1, int((start - t0) / total * width))
    last = max(first + 1, min(width, math.ceil((end - t0) / total * width)))
    return EMPTY * first + BAR * (last - first) + EMPTY * (width - last)


OUTCOME_STYLE = {
    SpanOutcome.COMPLETED.value: "green",
    SpanOutcome.SUSPENDED.value: "cyan",
    SpanOutcome.RETRY.value: "yellow",
    SpanOutcome.FAILED.value: "red",
    SpanOutcome.LIMITED.value: "magenta",
}

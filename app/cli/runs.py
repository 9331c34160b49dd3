"""Commands on runs: submit, status, events, timeline, runs, cancel, retry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from pydantic_core import to_jsonable_python
from rich.markup import escape
from rich.table import Table

from app.cli.common import (
    STATUS_STYLE,
    RunId,
    app,
    client,
    handled,
    json_object,
    kind_text,
    out,
    status_text,
    when,
)
from app.cli.follow import wait_and_print
from app.client import RunHandle, RunState
from app.gantt import OUTCOME_STYLE, GanttRow, gantt
from tasks import queries
from tasks.protocol import END_KINDS, LogEntry, RunStatus
from tasks.runtime import Runtime
from workflows.codec import decode_event, from_data, loads
from workflows.errors import InvalidInputError
from workflows.events import StartEvent
from workflows.workflow import require_workflow

RETRYABLE = (RunStatus.FAILED, RunStatus.CANCELLED)


@app.command()
@handled
def submit(
    workflow: Annotated[str, typer.Argument(help="a registered workflow name")],
    input: Annotated[
        str,
        typer.Option("--input", "-i", help="start event fields as a JSON object, or @file.json"),
    ] = "{}",
    key: Annotated[str | None, typer.Option("--key", help="idempotency key")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="follow the run live (on stderr), then print its result")
    ] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to --wait")] = 60.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="--wait without progress")] = False,
) -> None:
    """Submit a run; prints its id (and, with --wait, its progress, then its result as JSON).

    Warns (on stderr) when no live worker consumes the queue its first steps wait on."""
    data = json_object(input, "start event fields")
    baton = client()
    start = require_workflow(workflow).make_start_event(**data)
    handle = baton.submit(workflow, start, idempotency_key=key)
    typer.echo(handle.run_id)
    _warn_unserved(handle)
    if wait:
        wait_and_print(handle, timeout, live=not quiet)


def _warn_unserved(handle: RunHandle) -> None:
    state = handle.state()
    for queue in state.unserved:
        typer.echo(
            f"warning: no worker consumes queue {queue!r}: the run waits until one does "
            f"(start one: baton worker -Q {queue})",
            err=True,
        )


@app.command()
@handled
def status(run_id: RunId) -> None:
    """A run's workflow, status, times, parent and its result or error (with the traceback of
    the step or tool that raised it)."""
    record = queries.require_run(client().runtime, run_id)
    grid = Table.grid(padding=(0, 2))
    grid.add_row("run", record.run_id)
    grid.add_row("workflow", record.workflow)
    grid.add_row("status", status_text(record.status.value))
    if record.status is RunStatus.RUNNING:
        grid.add_row("state", _state_line(client().get(run_id).state(), run_id))
    grid.add_row("created", when(record.created))
    grid.add_row("updated", f"{when(record.updated)} (+{record.updated - record.created:.3f}s)")
    if record.parent_run:
        grid.add_row("parent", record.parent_run)
    if record.error:
        grid.add_row("error", escape(f"{record.error.type}: {record.error.message}"))
    if record.status is RunStatus.COMPLETED and record.result is not None:
        shown = to_jsonable_python(from_data(loads(record.result)), fallback=repr)
        grid.add_row("result", escape(json.dumps(shown)))  # as ``submit --wait`` prints it
    out.print(grid)
    for text in _tracebacks(record.error.model_dump() if record.error else {}):
        typer.echo(text.rstrip("\n"))  # plain: rich would wrap and restyle it


def _state_line(state: RunState, run_id: str) -> str:
    """A live run's state, with what to do about it."""
    line = escape(state.describe())
    if state.awaiting:
        short = state.awaiting[0].rsplit(".", 1)[-1]
        line += escape(f"; answer: baton send {run_id} {short} -i JSON")
    if state.unserved:
        line += escape(f"; start one: baton worker -Q {state.unserved[0]}")
    return line


def _tracebacks(info: dict[str, Any]) -> Iterator[str]:
    """The tracebacks an error as data carries: its own (a step's or a tool's), then those of
    its cause (a tool's error the step let through) and of a failed child run's error."""
    details = info.get("details")
    if not isinstance(details, dict):
        return
    if isinstance(details.get("traceback"), str):
        yield details["traceback"]
    for inner in (details.get("cause"), details.get("child_error")):
        if isinstance(inner, dict):
            yield from _tracebacks(inner)


@app.command()
@handled
def events(
    run_id: RunId,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep tailing until the end")
    ] = False,
) -> None:
    """Every entry of a run's event stream, one per line; --follow tails it live."""
    rt = client().runtime
    queries.require_run(rt, run_id)  # an unknown run is an error, not an empty tail
    first: float | None = None
    for entry in _entries(rt, run_id, follow):
        seconds = entry.ms / 1000
        first = seconds if first is None else first
        name, detail = _summary(entry.data)
        offset = f"+{seconds - first:.3f}s".rjust(10)
        typer.echo(f"{offset}  {entry.kind.value:<9} {name} {detail}".rstrip())


def _entries(rt: Runtime, run_id: str, follow: bool) -> Iterator[LogEntry]:
    last = "0-0"
    while True:
        got = queries.follow_log(rt, run_id, last, block_ms=1000 if follow else None, count=500)
        if not got and not follow:
            return
        for entry in got:
            last = entry.id
            yield entry
            if follow and entry.kind in END_KINDS:
                return


def _summary(data: Any) -> tuple[str, str]:
    """An entry as (what, detail): an event's type and fields, an error's type and message."""
    if isinstance(data, dict) and "type" in data and "data" in data:
        return str(data["type"]), json.dumps(data["data"], separators=(",", ":"))
    if isinstance(data, dict) and "type" in data and "message" in data:
        return str(data["type"]), str(data["message"])
    return "", json.dumps(data, separators=(",", ":"))


@app.command()
@handled
def timeline(
    run_id: RunId,
    width: Annotated[int, typer.Option("--width", min=10, help="the chart's bar width")] = 40,
) -> None:
    """What ran where and how long (a Gantt chart of steps and tool calls), then the events."""
    baton = client()
    handle = baton.get(run_id)
    handle.info()
    rows = gantt(handle.spans(), run_id, width)
    if rows:
        out.print(_gantt_table(rows, run_id))
    entries = queries.log_entries(baton.runtime, run_id)
    table = Table(title=f"run {run_id}: events", header_style="bold")
    table.add_column("offset", justify="right", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("what", no_wrap=True)
    table.add_column("data", overflow="fold")
    start = entries[0].ms if entries else 0
    for entry in entries:
        name, detail = _summary(entry.data)
        table.add_row(
            f"+{(entry.ms - start) / 1000:.3f}s",
            kind_text(entry.kind.value),
            escape(name),
            escape(detail),
        )
    out.print(table)


def _gantt_table(rows: list[GanttRow], run_id: str) -> Table:
    table = Table(title=f"run {run_id}: steps and tool calls", header_style="bold")
    table.add_column("step / call", no_wrap=True)
    table.add_column("try", justify="right")
    table.add_column("queue", no_wrap=True)
    table.add_column("worker", no_wrap=True)
    table.add_column("start", justify="right", no_wrap=True)
    table.add_column("took", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("outcome", overflow="fold")
    for row in rows:
        style = OUTCOME_STYLE.get(row.outcome.split(":", 1)[0], "white")
        table.add_row(
            escape(row.label),
            row.attempt,
            escape(row.queue),
            escape(row.worker),
            f"+{row.offset:.3f}s",
            f"{row.duration:.3f}s",
            f"[{style}]{row.bar}[/]",
            f"[{style}]{escape(row.outcome)}[/]",
        )
    return table


@app.command()
@handled
def runs(
    status: Annotated[
        str | None, typer.Option("--status", "-s", help="only runs in this status")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20,
) -> None:
    """The most recent runs, newest first."""
    if status is not None and status not in STATUS_STYLE:
        raise InvalidInputError(f"unknown status {status!r} (one of: {', '.join(STATUS_STYLE)})")
    baton = client()
    infos = baton.runs(status=status, limit=limit)
    table = Table(header_style="bold")
    table.add_column("run", no_wrap=True, min_width=32)
    for column in ("workflow", "status", "created", "took", "error"):
        table.add_column(column)
    for info in infos:
        took = f"{info.updated - info.created:.3f}s" if info.status != "running" else ""
        error = escape(info.error.type) if info.error else ""
        state = status_text(info.status)
        if info.status == "running":  # the state a user can act on: queued, waiting for input
            state = status_text(baton.get(info.run_id).state().describe())
        table.add_row(info.run_id, info.workflow, state, when(info.created), took, error)
    out.print(table)


@app.command()
@handled
def cancel(run_id: RunId) -> None:
    """Cancel a run and its children: no further step starts, queued tasks are revoked."""
    handle = client().get(run_id)
    handle.info()
    if handle.cancel():
        out.print(f"cancelled run {run_id}")
    else:
        out.print(f"run {run_id} had already ended: {status_text(handle.status())}")


@app.command()
@handled
def retry(
    run_id: RunId,
    wait: Annotated[bool, typer.Option("--wait", help="wait for the result")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to --wait")] = 60.0,
) -> None:
    """Submit a failed or cancelled run's input again, as a new run (prints its id)."""
    baton = client()
    record = queries.require_run(baton.runtime, run_id)
    if record.input is None:
        raise InvalidInputError(f"no run {run_id!r} (never submitted, or expired)")
    if record.status not in RETRYABLE:
        raise InvalidInputError(
            f"run {run_id} is {record.status.value}; only failed or cancelled runs can be retried"
        )
    start = decode_event(loads(record.input))
    if not isinstance(start, StartEvent):
        raise InvalidInputError(f"run {run_id} has no start event to submit again")
    handle = baton.submit(record.workflow, start)
    typer.echo(handle.run_id)
    _warn_unserved(handle)
    if wait:
        wait_and_print(handle, timeout)

"""``--wait``: follow a run live, then print its result.

Progress goes to stderr (each event a step emitted, what steps streamed, retries, requests for
input with how to answer them), so stdout stays what scripts read: the run id, then the result
as one JSON line. A run that does not end within the timeout is an error, not a silent exit.
"""

from __future__ import annotations

import json
import time

import typer
from pydantic_core import to_jsonable_python

from app.client import RunHandle
from tasks import queries
from tasks.protocol import END_KINDS, LogEntry, LogKind
from workflows.errors import RunError, WorkflowTimeoutError, type_name

DETAIL_MAX = 160  # a progress line stays a line


def wait_and_print(handle: RunHandle, timeout: float, live: bool = True) -> None:
    """Show the run's progress as it happens (``live``), then its result (or its error)."""
    if live:
        _follow(handle, timeout)
    try:
        result = handle.result(timeout=timeout)
    except RunError as exc:
        raise RunError(
            f"run {handle.run_id} {handle.status()}: {type_name(exc)}: {exc.message}"
        ) from exc
    typer.echo(json.dumps(to_jsonable_python(result, fallback=repr)))  # models, sets, dates...


def _follow(handle: RunHandle, timeout: float) -> None:
    rt = handle.client.runtime
    deadline = time.monotonic() + timeout
    last, first_ms, starts = "0-0", None, True
    while time.monotonic() < deadline:
        left = max(1, int((deadline - time.monotonic()) * 1000))
        got = queries.follow_log(rt, handle.run_id, last, block_ms=min(left, 1000))
        if not got:
            queries.require_run(rt, handle.run_id)  # expired meanwhile: say so, don't hang
        for entry in got:
            last = entry.id
            first_ms = entry.ms if first_ms is None else first_ms
            if starts and entry.kind is LogKind.EVENT and entry.run is None:
                starts = False  # the start event: the user just gave it
                continue
            line = progress_line(entry, handle.run_id)
            if line:
                typer.echo(f"{(entry.ms - first_ms) / 1000:+8.3f}s  {line}", err=True)
            if entry.kind in END_KINDS and entry.run is None:
                return
    raise WorkflowTimeoutError(f"run {handle.run_id} did not finish within {timeout}s")


def progress_line(entry: LogEntry, run_id: str) -> str:
    """One entry as a progress line; empty for the run's own end (the result follows)."""
    where = f"[child {entry.run[:8]}] " if entry.run else ""
    data = entry.data
    if entry.kind is LogKind.EVENT:
        return f"{where}→ {_event(data)}"
    if entry.kind is LogKind.STREAM:
        return f"{where}stream {_event(data)}"
    if entry.kind is LogKind.INPUT:
        return f"{where}input requested: {_event(data)} (answer: baton send {run_id} TYPE -i JSON)"
    if entry.kind is LogKind.RETRY and isinstance(data, dict):
        error = data.get("error") or {}
        return (
            f"{where}retry {data.get('what')} {data.get('name')} attempt {data.get('attempt')}: "
            f"{error.get('type')}: {_short(str(error.get('message')))}"
        )
    return ""


def _event(data: object) -> str:
    if isinstance(data, dict) and "type" in data:
        name = str(data["type"]).rsplit(".", 1)[-1]
        return f"{name} {_short(json.dumps(data.get('data', {}), separators=(',', ':')))}"
    return _short(json.dumps(data))


def _short(text: str) -> str:
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 1] + "…"

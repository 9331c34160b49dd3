"""Schedules: ``baton schedule add/list/runs/remove`` and the ``baton scheduler`` process."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from app.cli.common import app, client, err, handled, json_object, out, status_text, when
from app.schedules import DEFAULT_GRACE, Scheduler, tick_text
from workflows.errors import BatonError

schedule_app = typer.Typer(
    name="schedule",
    help="Cron and interval schedules of runs (fired by `baton scheduler`).",
    no_args_is_help=True,
)
app.add_typer(schedule_app)


@schedule_app.command("add")
@handled
def add(
    workflow: Annotated[str, typer.Argument(help="the workflow to start on each tick")],
    cron: Annotated[
        str | None,
        typer.Option("--cron", help='"*/5 * * * *" (UTC; 6 fields: seconds first)'),
    ] = None,
    every: Annotated[
        str | None, typer.Option("--every", help="an interval: 30s, 5m, 2h, 1d")
    ] = None,
    input_json: Annotated[
        str, typer.Option("-i", "--input", help="the start event's fields: JSON or @file")
    ] = "{}",
    name: Annotated[
        str | None, typer.Option("--name", help="the schedule's name (default: the workflow's)")
    ] = None,
    grace: Annotated[
        float, typer.Option("--grace", help="seconds a tick may still fire late")
    ] = DEFAULT_GRACE,
) -> None:
    """Add a schedule; prints its name and next fire time. Bad input writes nothing."""
    data = json_object(input_json, f"{workflow}'s start event fields")
    added = client().schedules.add(
        name or workflow, workflow, data, cron=cron, every=every, grace=grace
    )
    out.print(escape(added.name))
    if added.next_fire is not None:
        err.print(f"{added.when}; next fire {when(added.next_fire)}")


@schedule_app.command("list")
@handled
def list_schedules() -> None:
    """Every schedule: when it fires, its next fire time and the last run it started."""
    table = Table(show_header=True, header_style="bold")
    for column in ("name", "workflow", "when", "next fire", "last run", "input"):
        table.add_column(column)
    for s in client().schedules.list():
        last = "-" if s.last_run is None else f"{s.last_run} ({tick_text(s.last_tick or 0.0)})"
        table.add_row(
            escape(s.name),
            escape(s.workflow),
            escape(s.when),
            "-" if s.next_fire is None else when(s.next_fire),
            escape(last),
            escape(json.dumps(s.input, separators=(",", ":"))),
        )
    out.print(table)


@schedule_app.command("runs")
@handled
def runs(
    name: Annotated[str, typer.Argument(help="a schedule's name")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20,
) -> None:
    """The runs a schedule started, newest first: tick, run id, status."""
    c = client()
    c.schedules.get(name)
    for tick, run_id in c.schedules.runs(name, limit):
        try:
            status = status_text(c.get(run_id).status())
        except BatonError:
            status = "expired"
        out.print(f"{tick_text(tick)}  {run_id}  {status}")


@schedule_app.command("remove")
@handled
def remove(name: Annotated[str, typer.Argument(help="a schedule's name")]) -> None:
    """Remove a schedule (the runs it started stay)."""
    client().schedules.remove(name)
    err.print(f"removed schedule {escape(name)}")


@app.command()
@handled
def scheduler(
    heartbeat: Annotated[
        Path | None,
        typer.Option("--heartbeat", help="touch this file after each pass (for healthchecks)"),
    ] = None,
) -> None:
    """Fire schedules until stopped: run as many as you like, each tick starts one run."""
    fire = Scheduler(client(), log=lambda line: err.print(escape(line), soft_wrap=True))
    stop = threading.Event()

    def stopping(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    fire.run_forever(stop, heartbeat)

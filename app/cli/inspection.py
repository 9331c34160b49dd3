"""Commands that inspect the deployment: tools, dead letters, metrics."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.json import JSON
from rich.markup import escape
from rich.table import Table

from app import metrics
from app.cli.common import app, handled, out, runtime
from tasks import queries
from workflows.tools import all_tools


@app.command()
@handled
def tools(
    as_json: Annotated[bool, typer.Option("--json", help="print the schemas as JSON")] = False,
) -> None:
    """Registered tools: queue, timeout, retries and JSON schema (function-calling format)."""
    place = runtime().placement
    specs = sorted(all_tools().values(), key=lambda s: s.name)
    if as_json:
        typer.echo(json.dumps([s.json_schema() for s in specs], indent=2))
        return
    for spec in specs:
        timeout = f"{spec.timeout:g}s" if spec.timeout is not None else "none"
        out.rule(f"[bold]{spec.name}[/]", align="left")
        out.print(
            f"queue {place.tool_queue(spec)}, timeout {timeout}, "
            f"attempts {spec.retry.max_attempts}, mode {place.tool_mode(spec)}"
        )
        if spec.description:
            out.print(escape(spec.description))
        out.print(JSON.from_data(spec.json_schema()["parameters"]))


@app.command("dead-letters")
@handled
def dead_letters(limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20) -> None:
    """Messages the workers rejected (undecodable, unknown task, invalid), newest first."""
    total, letters = queries.dead_letters(runtime(), limit)
    table = Table(title=f"dead letters: {total}", header_style="bold")
    for column in ("reason", "task", "id", "body"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(
            escape(letter.reason),
            escape(str(letter.headers.get("task", ""))),
            escape(str(letter.headers.get("id", ""))),
            escape(letter.body[:200]),
        )
    out.print(table)


@app.command("metrics")
@handled
def show_metrics() -> None:
    """Queue depths, runs by status and dead letters, in Prometheus text format."""
    typer.echo(metrics.exposition(runtime()), nl=False)

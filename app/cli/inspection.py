"""Commands that inspect the deployment: check, tools, dead letters, metrics (printed or
served: ``baton metrics --serve`` is docker compose's metrics service)."""

from __future__ import annotations

import json
import signal
from typing import Annotated

import typer
from rich.json import JSON
from rich.markup import escape
from rich.table import Table

from app import metrics
from app.celery_app import import_workflows
from app.cli.common import app, handled, out, runtime
from app.cli.workers import coverage, served_by
from config import Settings
from tasks import queries
from tasks.placement import tool_task_name
from workflows.errors import ConfigurationError, InvalidInputError, WorkflowValidationError
from workflows.tools import all_tools
from workflows.workflow import WorkflowCheck, check_workflows


@app.command()
@handled
def check() -> None:
    """Check every workflow BATON_IMPORTS defines, as a worker start would: every problem is
    listed, and the exit code is 1 if a workflow is invalid. Needs no Redis."""
    try:
        import_workflows(Settings())
    except WorkflowValidationError as exc:  # a step's own signature fails at class definition
        _print_check(WorkflowCheck(exc.workflow, exc.problems, []))
        raise typer.Exit(1) from None
    checks = check_workflows()
    for result in checks:
        _print_check(result)
    failed = sum(c.failed for c in checks)
    out.print(f"{len(checks)} workflow(s) checked, {failed} invalid")
    if failed:
        raise typer.Exit(1)


def _print_check(result: WorkflowCheck) -> None:
    if not result.problems:
        out.print(f"[green]ok[/]       {escape(result.workflow)}")
        return
    if result.base_of:
        bases = ", ".join(result.base_of)
        out.print(
            f"[yellow]skipped[/]  {escape(result.workflow)}: incomplete, a base of "
            f"{escape(bases)} (declare it with abstract=True to leave it out)",
            soft_wrap=True,
        )
        return
    out.print(f"[red]invalid[/]  {escape(result.workflow)}")
    for problem in result.problems:
        out.print(f"  - {escape(problem)}", soft_wrap=True)


@app.command()
@handled
def tools(
    as_json: Annotated[bool, typer.Option("--json", help="print the schemas as JSON")] = False,
) -> None:
    """Registered tools: queue, timeout, retries, JSON schema (function-calling format) and the
    live workers that can run each."""
    rt = runtime()
    place = rt.placement
    specs = sorted(all_tools().values(), key=lambda s: s.name)
    if as_json:
        typer.echo(json.dumps([s.json_schema() for s in specs], indent=2))
        return
    live = queries.live_workers(rt)
    served = served_by(live)
    for spec in specs:
        timeout = f"{spec.timeout:g}s" if spec.timeout is not None else "none"
        queue = place.tool_queue(spec)
        out.rule(f"[bold]{spec.name}[/]", align="left")
        out.print(
            f"queue {queue}, timeout {timeout}, "
            f"attempts {spec.retry.max_attempts}, mode {place.tool_mode(spec)}"
        )
        if place.tool_mode(spec) != "inprocess":
            out.print(f"live workers: {coverage(tool_task_name(spec.name), queue, live, served)}")
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
def show_metrics(
    serve: Annotated[
        bool,
        typer.Option("--serve", help="serve them at /metrics until stopped (docker compose does)"),
    ] = False,
    port: Annotated[
        int | None,
        typer.Option("--port", min=0, max=65535, help="with --serve; default BATON_METRICS_PORT"),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option("--host", help="with --serve: address to listen on (default 127.0.0.1)"),
    ] = None,
) -> None:
    """Queue depths, runs by status and dead letters, in Prometheus text format."""
    if not serve:
        if port is not None or host is not None:
            raise InvalidInputError("--port and --host need --serve")
        typer.echo(metrics.exposition(runtime()), nl=False)
        return
    port = Settings().metrics_port if port is None else port
    try:
        server = metrics.MetricsServer(runtime(), port, host or "127.0.0.1").start()
    except OSError as exc:
        raise ConfigurationError(f"metrics port {port}: {exc.strerror or exc}") from exc
    # In a container this is PID 1, which ignores SIGTERM without a handler: stop on it.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    out.print(f"serving metrics on {server.url}", soft_wrap=True, markup=False)
    try:
        server.thread.join()
    finally:
        server.stop()

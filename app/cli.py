"""The ``baton`` command line: run a local stack or a worker, submit runs and follow them.

Settings come from ``BATON_*`` variables (or ``.env``). Bad input — an unknown workflow or run,
JSON that is not an object, a wrong setting — ends with a one-line ``error:`` and exit code 1,
never a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, ParamSpec, TypeVar

import redis
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.json import JSON
from rich.markup import escape
from rich.table import Table

from app import metrics
from app.celery_app import create_app
from app.client import END_KINDS, Client, RunHandle
from app.stack import LocalStack, StackError, worker_command
from config import QueueSpec, Settings, TopologyError, load_topology
from tasks.runtime import Runtime
from workflows.codec import decode_event, loads, to_jsonable
from workflows.errors import BatonError, InvalidInputError, RunError
from workflows.events import StartEvent
from workflows.tools import all_tools
from workflows.workflow import require_workflow

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="baton",
    help="Baton: event-driven workflows on Celery + Redis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
STATUS_STYLE = {"running": "cyan", "completed": "green", "failed": "red", "cancelled": "yellow"}


class PoolName(StrEnum):
    """Celery pools Baton supports (time limits hold on prefork only)."""

    prefork = "prefork"
    threads = "threads"
    solo = "solo"


RunId = Annotated[str, typer.Argument(help="a run id, as printed by `baton submit`")]


def handled(fn: Callable[P, R]) -> Callable[P, R]:
    """Expected failures become one ``error:`` line and exit code 1; Ctrl-C exits 130."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (BatonError, ValidationError, TopologyError, redis.RedisError) as exc:
            err.print(f"[red]error:[/] {escape(_one_line(exc))}", soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper


def _one_line(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, BatonError) else str(exc)
    if isinstance(exc, ValidationError) and exc.title == "Settings":  # name the variable
        text = "; ".join(_env_error(e["loc"], e["msg"]) for e in exc.errors())
    if isinstance(exc, redis.RedisError):
        text = f"Redis: {text}"
    lines = [line.strip() for line in text.splitlines()]
    return "; ".join(line for line in lines if line and not line.startswith("For further"))


def _env_error(loc: tuple[int | str, ...], msg: str) -> str:
    name = "_".join(map(str, loc)).upper()
    if not name:
        return msg
    return f"{name if name.startswith('BATON_') else 'BATON_' + name}: {msg}"


def _runtime() -> Runtime:
    return create_app(Settings())[1]


def _client() -> Client:
    return Client(runtime=_runtime())


# --- processes ----------------------------------------------------------------------------


@app.command()
@handled
def up(
    no_flower: Annotated[bool, typer.Option("--no-flower", help="do not start Flower")] = False,
    serve_metrics: Annotated[bool, typer.Option("--metrics/--no-metrics")] = True,
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--dir", help="keep Redis data and logs here (default: a temp dir, removed on exit)"
        ),
    ] = None,
) -> None:
    """Run the local stack in the foreground until Ctrl-C.

    Redis (if BATON_REDIS_URL is unset), a worker per topology queue, Flower, metrics.
    """
    stack = LocalStack(Settings(), flower=not no_flower, workdir=workdir)
    signal.signal(signal.SIGTERM, _interrupt)
    with err.status("starting the local stack..."):
        stack.start()
    server = None
    try:
        rt = create_app(stack.settings)[1]
        server = _metrics_server(rt, stack.settings.metrics_port) if serve_metrics else None
        _print_stack(stack, rt, server)
        dead = _wait_for_exit(stack)
        err.print(f"[red]error:[/] {', '.join(dead)} exited; stopping the stack")
        raise typer.Exit(1)
    finally:
        with err.status("stopping..."):
            if server is not None:
                server.stop()
            stack.stop()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _metrics_server(rt: Runtime, port: int) -> metrics.MetricsServer:
    try:
        return metrics.MetricsServer(rt, port).start()
    except OSError as exc:
        raise StackError(
            f"metrics port {port}: {exc} (set BATON_METRICS_PORT or use --no-metrics)"
        ) from exc


def _wait_for_exit(stack: LocalStack) -> list[str]:
    tick = threading.Event()
    while not (dead := stack.dead()):
        tick.wait(0.5)
    return dead


def _print_stack(stack: LocalStack, rt: Runtime, server: metrics.MetricsServer | None) -> None:
    table = Table(title="Baton local stack", show_header=True, header_style="bold")
    for column in ("part", "address / pid", "notes"):
        table.add_column(column)
    redis_note = "private redis-server" if "redis" in stack.procs else "BATON_REDIS_URL"
    table.add_row("redis", escape(stack.redis_url or ""), redis_note)
    for queue, spec in stack.topology.queues.items():
        proc = stack.procs[queue]
        table.add_row(
            f"worker {queue}", f"pid {proc.pid}", f"{spec.pool} x{spec.concurrency}, log {proc.log}"
        )
    if stack.flower_url:
        password = (
            stack.flower_password if stack.flower_password_generated else "(BATON_FLOWER_PASSWORD)"
        )
        table.add_row(
            "flower",
            stack.flower_url,
            f"user {stack.base.flower_user}, password {escape(password)}",
        )
    if server is not None:
        table.add_row("metrics", server.url, "Prometheus text format")
    out.print(table)
    unserved = sorted(set(metrics.queues(rt)) - set(stack.topology.queues))
    if unserved:
        out.print(
            f"[yellow]warning:[/] queues used in code but not in the topology, "
            f"so no worker serves them: {', '.join(unserved)}"
        )
    out.print(f"Other shells: [bold]export BATON_REDIS_URL={escape(stack.redis_url or '')}[/]")
    out.print("Press Ctrl-C to stop.")


@app.command()
@handled
def worker(
    queue: Annotated[str, typer.Option("-Q", "--queue", help="the queue to serve")],
    concurrency: Annotated[int | None, typer.Option("-c", "--concurrency", min=1)] = None,
    pool: Annotated[PoolName | None, typer.Option("-P", "--pool")] = None,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "INFO",
) -> None:
    """Run a Celery worker for one queue (pool and concurrency default to the topology's)."""
    settings = Settings()
    spec = load_topology(settings.topology_file).queues.get(queue)
    if spec is None:
        known = metrics.queues(create_app(settings)[1])
        if queue not in known:
            raise InvalidInputError(f"unknown queue {queue!r} (known: {', '.join(known)})")
        spec = QueueSpec()
    spec = QueueSpec.model_validate(
        {"pool": pool.value if pool else spec.pool, "concurrency": concurrency or spec.concurrency}
    )
    cmd = worker_command(queue, spec, loglevel)
    sys.stdout.flush()
    os.execv(cmd[0], cmd)


@app.command()
@handled
def demo(
    inprocess_only: Annotated[bool, typer.Option("--inprocess-only")] = False,
    distributed_only: Annotated[bool, typer.Option("--distributed-only")] = False,
) -> None:
    """Run every example in-process, then distributed on a stack it starts and stops."""
    from app.demo import main as demo_main

    demo_main(["--inprocess-only"] * inprocess_only + ["--distributed-only"] * distributed_only)


# --- runs ---------------------------------------------------------------------------------


@app.command()
@handled
def submit(
    workflow: Annotated[str, typer.Argument(help="a registered workflow name")],
    input: Annotated[
        str,
        typer.Option("--input", "-i", help="start event fields as a JSON object, or @file.json"),
    ] = "{}",
    key: Annotated[str | None, typer.Option("--key", help="idempotency key")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="wait for the result")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to --wait")] = 60.0,
) -> None:
    """Submit a run; prints its id (and, with --wait, its result as JSON)."""
    data = _json_object(input)
    client = _client()
    start = require_workflow(workflow).make_start_event(**data)
    handle = client.submit(workflow, start, idempotency_key=key)
    typer.echo(handle.run_id)
    if wait:
        _print_result(handle, timeout)


def _json_object(text: str) -> dict[str, Any]:
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise InvalidInputError(f"--input {text}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--input is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInputError("--input must be a JSON object of start event fields")
    return data


def _print_result(handle: RunHandle, timeout: float) -> None:
    try:
        result = handle.result(timeout=timeout)
    except RunError as exc:
        raise RunError(
            f"run {handle.run_id} {handle.status()}: {type(exc).__name__}: {exc.message}"
        ) from exc
    typer.echo(json.dumps(to_jsonable(result)))


@app.command()
@handled
def status(run_id: RunId) -> None:
    """A run's workflow, status, times, parent and its result or error."""
    client = _client()
    info = client.get(run_id).info()
    rt = client.runtime
    grid = Table.grid(padding=(0, 2))
    grid.add_row("run", info.run_id)
    grid.add_row("workflow", info.workflow)
    grid.add_row("status", _status_text(info.status))
    grid.add_row("created", _time(info.created))
    grid.add_row("updated", f"{_time(info.updated)} (+{info.updated - info.created:.3f}s)")
    if info.parent:
        grid.add_row("parent", info.parent)
    if info.error:
        grid.add_row("error", escape(f"{info.error.type}: {info.error.message}"))
    result = rt.redis.hget(rt.keys.run(run_id), "result")
    if info.status == "completed" and result is not None:
        grid.add_row("result", escape(str(result)))
    out.print(grid)


@app.command()
@handled
def events(
    run_id: RunId,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep tailing until the end")
    ] = False,
) -> None:
    """Every entry of a run's event stream, one per line; --follow tails it live."""
    client = _client()
    client.get(run_id).info()  # an unknown run is an error, not an empty tail
    first: float | None = None
    for entry_id, kind, data in _entries(client.runtime, run_id, follow):
        ms = int(entry_id.split("-")[0]) / 1000
        first = ms if first is None else first
        name, detail = _summary(data)
        offset = f"+{ms - first:.3f}s".rjust(10)
        typer.echo(f"{offset}  {kind:<9} {name} {detail}".rstrip())


def _entries(rt: Runtime, run_id: str, follow: bool) -> Iterator[tuple[str, str, Any]]:
    key, last = rt.keys.events(run_id), "0-0"
    while True:
        got: Any = rt.redis.xread({key: last}, block=1000 if follow else None, count=500)
        if not got and not follow:
            return
        for _, entries in got or []:
            for entry_id, fields in entries:
                last = entry_id
                yield entry_id, fields["k"], loads(fields["e"])
                if follow and fields["k"] in END_KINDS:
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
def timeline(run_id: RunId) -> None:
    """A run's event stream as a table: time offset, kind, what, data."""
    client = _client()
    client.get(run_id).info()
    rows = client.get(run_id).timeline()
    table = Table(title=f"run {run_id}", header_style="bold")
    table.add_column("offset", justify="right", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("what", no_wrap=True)
    table.add_column("data", overflow="fold")
    start = rows[0]["ms"] if rows else 0
    for row in rows:
        name, detail = _summary(row["data"])
        table.add_row(
            f"+{(row['ms'] - start) / 1000:.3f}s",
            _kind_text(row["kind"]),
            escape(name),
            escape(detail),
        )
    out.print(table)


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
    infos = _client().runs(status=status, limit=limit)
    table = Table(header_style="bold")
    table.add_column("run", no_wrap=True, min_width=32)
    for column in ("workflow", "status", "created", "took", "error"):
        table.add_column(column)
    for info in infos:
        took = f"{info.updated - info.created:.3f}s" if info.status != "running" else ""
        error = escape(info.error.type) if info.error else ""
        table.add_row(
            info.run_id, info.workflow, _status_text(info.status), _time(info.created), took, error
        )
    out.print(table)


@app.command()
@handled
def cancel(run_id: RunId) -> None:
    """Cancel a run and its children: no further step starts, queued tasks are revoked."""
    client = _client()
    handle = client.get(run_id)
    handle.info()
    if handle.cancel():
        out.print(f"cancelled run {run_id}")
    else:
        out.print(f"run {run_id} had already ended: {_status_text(handle.status())}")


@app.command()
@handled
def retry(
    run_id: RunId,
    wait: Annotated[bool, typer.Option("--wait", help="wait for the result")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to --wait")] = 60.0,
) -> None:
    """Submit a failed or cancelled run's input again, as a new run (prints its id)."""
    client = _client()
    rt = client.runtime
    fields: list[Any] = rt.redis.hmget(rt.keys.run(run_id), ["workflow", "status", "input"])
    workflow, state, raw = fields
    if workflow is None or raw is None:
        raise InvalidInputError(f"no run {run_id!r} (never submitted, or expired)")
    if state not in ("failed", "cancelled"):
        raise InvalidInputError(
            f"run {run_id} is {state}; only failed or cancelled runs can be retried"
        )
    start = decode_event(loads(raw))
    if not isinstance(start, StartEvent):
        raise InvalidInputError(f"run {run_id} has no start event to submit again")
    handle = client.submit(str(workflow), start)
    typer.echo(handle.run_id)
    if wait:
        _print_result(handle, timeout)


# --- inspection ---------------------------------------------------------------------------


@app.command()
@handled
def tools(
    as_json: Annotated[bool, typer.Option("--json", help="print the schemas as JSON")] = False,
) -> None:
    """Registered tools: queue, timeout, retries and JSON schema (function-calling format)."""
    rt = _runtime()
    specs = sorted(all_tools().values(), key=lambda s: s.name)
    if as_json:
        typer.echo(json.dumps([s.json_schema() for s in specs], indent=2))
        return
    for spec in specs:
        timeout = f"{spec.timeout:g}s" if spec.timeout is not None else "none"
        out.rule(f"[bold]{spec.name}[/]", align="left")
        out.print(
            f"queue {rt.tool_queue(spec)}, timeout {timeout}, "
            f"attempts {spec.retry.max_attempts}, mode {rt.tool_mode(spec)}"
        )
        if spec.description:
            out.print(escape(spec.description))
        out.print(JSON.from_data(spec.json_schema()["parameters"]))


@app.command("dead-letters")
@handled
def dead_letters(limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20) -> None:
    """Messages the workers rejected (undecodable, unknown task, invalid), newest first."""
    rt = _runtime()
    key = rt.keys.dead_letters()
    total, raw = rt.redis.llen(key), rt.redis.lrange(key, 0, limit - 1)
    table = Table(title=f"dead letters: {total}", header_style="bold")
    for column in ("reason", "task", "id", "body"):
        table.add_column(column, overflow="fold")
    for item in raw:
        entry = json.loads(item)
        headers = entry.get("headers") or {}
        table.add_row(
            escape(str(entry.get("reason", ""))),
            escape(str(headers.get("task", ""))),
            escape(str(headers.get("id", ""))),
            escape(str(entry.get("body", ""))[:200]),
        )
    out.print(table)


@app.command("metrics")
@handled
def show_metrics() -> None:
    """Queue depths, runs by status and dead letters, in Prometheus text format."""
    typer.echo(metrics.exposition(_runtime()), nl=False)


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _status_text(state: str) -> str:
    return f"[{STATUS_STYLE.get(state, 'white')}]{escape(state)}[/]"


def _kind_text(kind: str) -> str:
    styles = {"stop": "green", "failed": "red", "cancelled": "yellow", "retry": "magenta"}
    return f"[{styles.get(kind, 'white')}]{escape(kind)}[/]"


def main() -> None:
    """Entry point of the ``baton`` console script."""
    app()


if __name__ == "__main__":
    main()

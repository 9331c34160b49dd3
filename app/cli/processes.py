"""Commands that run processes: ``up`` (the local stack), ``worker`` and ``demo``."""

from __future__ import annotations

import os
import signal
import sys
import threading
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from app import metrics
from app.celery_app import create_app
from app.cli.common import app, err, handled, out
from app.stack import LocalStack, StackError, pool_env, worker_command
from config import QueueSpec, Settings, load_topology
from tasks.runtime import Runtime
from workflows.errors import InvalidInputError


class PoolName(StrEnum):
    """Worker pools: prefork (CPU-bound; hard time limits), asyncio (IO-bound async work, many
    calls in flight on one loop), threads and solo."""

    prefork = "prefork"
    asyncio = "asyncio"
    threads = "threads"
    solo = "solo"


@app.command()
@handled
def up(
    no_flower: Annotated[bool, typer.Option("--no-flower", help="do not start Flower")] = False,
    no_api: Annotated[
        bool, typer.Option("--no-api", help="do not start the HTTP API and dashboard")
    ] = False,
    no_scheduler: Annotated[
        bool, typer.Option("--no-scheduler", help="do not start `baton scheduler`")
    ] = False,
    serve_metrics: Annotated[bool, typer.Option("--metrics/--no-metrics")] = True,
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--dir", help="keep Redis data and logs here (default: a temp dir, removed on exit)"
        ),
    ] = None,
) -> None:
    """Run the local stack in the foreground until Ctrl-C.

    Redis (if BATON_REDIS_URL is unset), a worker per topology queue, Flower, metrics, the HTTP
    API with its dashboard, the scheduler.
    """
    stack = LocalStack(
        Settings(),
        flower=not no_flower,
        api=not no_api,
        scheduler=not no_scheduler,
        workdir=workdir,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    with err.status("starting the local stack..."):
        stack.start()
    if workdir is not None:
        kept = "reused from" if stack.reused else "kept in"
        err.print(f"Redis port, passwords and API token {kept} {escape(str(stack.state_file))}")
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
    if stack.api_url:
        token = stack.api_token if stack.api_token_generated else "(BATON_API_TOKEN)"
        table.add_row(
            "api", stack.api_url, f"token {escape(token)} (Authorization: Bearer, or log in)"
        )
        table.add_row("dashboard", f"{stack.api_url}/baton/ui/", "log in with the API token")
    if "scheduler" in stack.procs:
        proc = stack.procs["scheduler"]
        table.add_row("scheduler", f"pid {proc.pid}", f"baton schedule list; log {proc.log}")
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
    hostname: Annotated[
        str | None,
        typer.Option(
            "-n",
            "--hostname",
            help="the worker's name in Flower and `celery inspect` (Celery expands %h, %n, "
            "%d); default QUEUE-PID@%h, unique per process",
        ),
    ] = None,
) -> None:
    """Run a Celery worker for one queue (pool and concurrency default to the topology's)."""
    settings = Settings()
    create_app(settings)  # a module BATON_IMPORTS cannot import, or an invalid workflow: one line
    spec = load_topology(settings.topology_file).queues.get(queue)
    if spec is None:
        known = metrics.queues(create_app(settings)[1])
        if queue not in known:
            raise InvalidInputError(f"unknown queue {queue!r} (known: {', '.join(known)})")
        spec = QueueSpec()
    spec = QueueSpec.model_validate(
        {"pool": pool.value if pool else spec.pool, "concurrency": concurrency or spec.concurrency}
    )
    cmd = named(worker_command(queue, spec, loglevel), hostname or default_hostname(queue))
    sys.stdout.flush()
    os.execve(cmd[0], cmd, {**os.environ, **pool_env(spec)})


def default_hostname(queue: str) -> str:
    """``llm-4242@%h``: unique per process, so two ``baton worker -Q llm`` on one machine are
    two workers in Flower. The pid is this process's, and stays the worker's: ``execve`` keeps
    it. Celery has no pid placeholder for ``-n`` (only %h, %n, %d), hence it is filled here."""
    return f"{queue}-{os.getpid()}@%h"


def named(cmd: list[str], hostname: str) -> list[str]:
    """``cmd`` (a :func:`worker_command`) with its ``-n`` node name replaced by ``hostname``."""
    at = cmd.index("-n") + 1
    return [*cmd[:at], hostname, *cmd[at + 1 :]]


@app.command()
@handled
def demo(
    inprocess_only: Annotated[bool, typer.Option("--inprocess-only")] = False,
    distributed_only: Annotated[bool, typer.Option("--distributed-only")] = False,
) -> None:
    """Run every example in-process, then distributed on a stack it starts and stops."""
    from app.demo import main as demo_main

    demo_main(["--inprocess-only"] * inprocess_only + ["--distributed-only"] * distributed_only)

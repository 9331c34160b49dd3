"""The showcase: every example in-process, then the same workflows distributed.

``python -m app.demo`` (what ``bash scripts/demo.sh`` and ``baton demo`` run). Distributed,
with no ``BATON_REDIS_URL`` set, it starts a private redis-server and one worker per queue of
the topology, shows each run's stream, result and timeline, and stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.pretty import Pretty

from app.client import Client, RunHandle
from app.stack import LocalStack
from config import get_settings
from examples.celery_shop import demo as shop_demo
from examples.demo import approve, run_inprocess
from workflows import InputRequiredEvent, StopEvent

DISTRIBUTED: list[tuple[str, dict[str, Any], bool]] = [
    ("Pipeline", {"text": "The cat saw the hat. The hat saw the cat!"}, False),
    ("Research", {"topic": "rust", "n_docs": 7}, False),
    ("Outer", {"x": 3}, False),
    ("ApprovalParent", {"claimant": "bob", "amounts": [80.0, 45.5]}, True),
    ("ToolRunner", {"tool": "flaky", "params": {"key": "demo-d", "fail_times": 2}}, False),
    ("ToolRunner", {"tool": "slow", "params": {"seconds": 2.0}}, False),
    ("ToolRunner", {"tool": "complete", "params": {"prompt": "Summarise the Baton design"}}, False),
]


def show_run(console: Console, handle: RunHandle, answer: bool) -> None:
    """Follow a distributed run: its stream live, then result and timeline."""
    for event in handle.stream_events(timeout=120):
        if isinstance(event, StopEvent):
            console.print("  [green]stop[/]")
            continue
        console.print(f"  [cyan]stream[/] {type(event).__name__}", event.model_dump())
        if isinstance(event, InputRequiredEvent) and answer:
            reply = approve(event)
            console.print(f"  [magenta]answer[/] {type(reply).__name__}", reply.model_dump())
            handle.send_event(reply)
    console.print("  [bold]result[/]", Pretty(handle.result(timeout=30)))
    first = None
    for entry in handle.timeline():
        first = first or entry["ms"]
        data = entry["data"]
        what = data.get("type", "") if isinstance(data, dict) else ""
        console.print(f"  [dim]+{entry['ms'] - first:>5} ms  {entry['kind']:<9} {what}[/]")


def run_distributed(console: Console) -> None:
    settings = get_settings()
    where = settings.redis_url or "a private redis-server"
    console.rule("[bold]Baton examples, distributed")
    console.print(f"Starting one worker per queue on {where} ...")
    started = time.monotonic()
    # the workers also serve the Celery interop example (examples.celery_shop)
    settings = settings.model_copy(update={"imports": [*settings.imports, shop_demo.SHOP_IMPORT]})
    with LocalStack(settings, flower=False) as stack:
        console.print(f"  ready in {time.monotonic() - started:.1f}s: {', '.join(stack.procs)}")
        client = Client(stack.settings)
        for name, kwargs, answer in DISTRIBUTED:
            console.rule(f"[bold]{name}[/] {kwargs}")
            handle = client.submit(name, **kwargs)
            console.print(f"  run {handle.run_id}")
            show_run(console, handle, answer)
        shop_demo.run(console, client, stack.env, stack.workdir)
    console.print("[bold]Stopped everything the demo started.")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.demo", description=__doc__)
    parser.add_argument("--inprocess-only", action="store_true")
    parser.add_argument("--distributed-only", action="store_true")
    args = parser.parse_args(argv)
    console = Console()
    if not args.distributed_only:
        asyncio.run(run_inprocess(console))
    if not args.inprocess_only:
        run_distributed(console)


if __name__ == "__main__":
    main()

"""What the running workers can do, beside what this CLI's own imports say: ``baton workers``
and ``baton workflows``.

The CLI knows the workflows and tools of its own ``BATON_IMPORTS``; the workers may import
other modules (or miss one). Each live worker keeps its record in the registry (its queues,
pool and the tasks it registered), so both views are shown side by side: a step that no live
worker has is a run that would wait forever, and says so here before it happens.
"""

from __future__ import annotations

import time
from collections import defaultdict

from rich.markup import escape
from rich.table import Table

from app.cli.common import app, handled, out, runtime
from tasks import queries
from tasks.placement import step_task_name
from tasks.protocol.workers import WorkerRecord
from workflows.workflow import runnable_workflows


def served_by(workers: list[WorkerRecord]) -> dict[str, list[str]]:
    """Task name -> the live workers that registered it."""
    found: dict[str, list[str]] = defaultdict(list)
    for worker in workers:
        for task in worker.tasks:
            found[task].append(worker.name)
    return found


def coverage(
    task: str, queue: str, workers: list[WorkerRecord], served: dict[str, list[str]]
) -> str:
    """How a task stands among the live workers: who runs it, or why nobody does."""
    on_queue = [w for w in workers if queue in w.queues]
    have = [w for w in on_queue if w.name in served.get(task, [])]
    if have:
        return f"[green]{len(have)} worker(s)[/]"
    if on_queue:
        count = len(on_queue)
        return (
            f"[red]not registered by the {count} worker(s) on {escape(queue)}[/] (BATON_IMPORTS?)"
        )
    return f"[red]no worker consumes {escape(queue)}[/]"


@app.command()
@handled
def workers() -> None:
    """The live workers (by heartbeat): name, queues, pool, slots, last seen, imports."""
    found = queries.live_workers(runtime())
    table = Table(title=f"live workers: {len(found)}", header_style="bold")
    for column in ("worker", "queues", "pool", "slots", "seen", "tasks", "imports"):
        table.add_column(column, overflow="fold")
    now = time.time()
    for w in found:
        table.add_row(
            escape(w.name),
            escape(", ".join(w.queues)),
            escape(w.pool),
            str(w.concurrency),
            f"{max(0.0, now - w.seen):.0f}s ago",
            str(len(w.tasks)),
            escape(", ".join(w.imports)),
        )
    out.print(table)


@app.command()
@handled
def workflows() -> None:
    """Every workflow this CLI imports, each step with its queue and the live workers that
    can run it (or why none can)."""
    rt = runtime()
    live = queries.live_workers(rt)
    served = served_by(live)
    table = Table(
        title="workflows (this CLI's BATON_IMPORTS) and live workers", header_style="bold"
    )
    for column in ("workflow", "step", "queue", "live workers"):
        table.add_column(column, overflow="fold")
    for name, cls in sorted(runnable_workflows().items()):
        for step in cls.spec.steps:
            queue = rt.placement.step_queue(cls, step)
            task = step_task_name(name, step)
            table.add_row(
                escape(name), escape(step), escape(queue), coverage(task, queue, live, served)
            )
    out.print(table)
    known = {step_task_name(n, s) for n, c in runnable_workflows().items() for s in c.spec.steps}
    others = sorted({t for t in served if "." in t and not t.startswith("tool.")} - known)
    if others:
        out.print(
            f"steps live workers have that this CLI does not import: {escape(', '.join(others))}"
        )

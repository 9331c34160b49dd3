"""Run every example in-process and show what happened: ``python -m examples.demo``.

Each run's stream is printed as it happens (progress events, input requests, the final
StopEvent), then its result and the event log. A human-in-the-loop request is answered by
the demo itself.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Sequence
from typing import Any, Protocol

from rich.console import Console
from rich.pretty import Pretty

from examples.approval import Approval, ApprovalParent, ApprovalRequested, ExpenseApproval
from examples.nested import Outer, Report
from examples.pipeline import Pipeline
from examples.research import Research
from examples.tool_runner import ToolRunner
from workflows import Event, InputRequiredEvent, StopEvent


class Handle(Protocol):
    """What the demo needs of a run handle."""

    def __await__(self) -> Generator[Any, None, Any]: ...
    def stream_events(self) -> AsyncIterator[Event]: ...
    async def send_event(self, event: Event) -> None: ...
    @property
    def events(self) -> list[Event]: ...


Answer = Callable[[InputRequiredEvent], Event]
Demo = tuple[str, Callable[[], Handle], Answer | None]


def approve(request: InputRequiredEvent) -> Event:
    """The demo's reviewer: approves claims up to 100, rejects the rest."""
    amount = request.amount if isinstance(request, ApprovalRequested) else 0.0
    ok = amount <= 100
    return Approval(approved=ok, reviewer="demo", comment="" if ok else "over the limit")


def demos() -> list[Demo]:
    """Every example, with the input it runs on (called inside the event loop)."""
    tool_calls: list[tuple[str, dict[str, Any]]] = [
        ("add", {"a": 2, "b": 3}),
        ("flaky", {"key": "demo", "fail_times": 2}),
        ("always_fails", {}),
        ("slow", {"seconds": 2.0}),
        ("complete", {"prompt": "Summarise the Baton design"}),
        ("add", {"a": "two", "b": 3}),
    ]
    runs: list[Demo] = [
        (
            "Pipeline",
            lambda: Pipeline().run(text="The cat saw the hat. The hat saw the cat!"),
            None,
        ),
        ("Research (fan-out / fan-in)", lambda: Research().run(topic="rust", n_docs=7), None),
        ("Report → WordStats (nested)", lambda: Report().run(texts=["a b c", "d e"]), None),
        ("Outer → Middle → Inner", lambda: Outer().run(x=3), None),
        (
            "ExpenseApproval (human in the loop)",
            lambda: ExpenseApproval().run(claimant="ada", amount=42.0),
            approve,
        ),
        (
            "ApprovalParent (request from a child)",
            lambda: ApprovalParent().run(claimant="bob", amounts=[80.0, 45.5]),
            approve,
        ),
    ]
    for name, params in tool_calls:
        args = ", ".join(f"{k}={v!r}" for k, v in params.items())
        runs.append((f"ToolRunner: {name}({args})", _tool_run(name, params), None))
    return runs


def _tool_run(name: str, params: dict[str, Any]) -> Callable[[], Handle]:
    return lambda: ToolRunner().run(tool=name, params=params)


async def show(console: Console, title: str, handle: Handle, answer: Answer | None) -> None:
    """Print a run's stream as it happens, then its result and its event log."""
    console.rule(f"[bold]{title}")
    async for event in handle.stream_events():
        if isinstance(event, StopEvent):
            console.print("  [green]stop[/]", type(event).__name__)
            continue
        console.print(f"  [cyan]stream[/] {type(event).__name__}", _fields(event))
        if isinstance(event, InputRequiredEvent) and answer is not None:
            reply = answer(event)
            console.print(f"  [magenta]answer[/] {type(reply).__name__}", _fields(reply))
            await handle.send_event(reply)
    result = await handle
    console.print("  [bold]result[/]", Pretty(result))
    console.print("  [dim]log:", _log_line(handle.events))


def _fields(event: Event) -> str:
    return " ".join(f"{k}={v!r}" for k, v in event.model_dump().items())


def _log_line(events: Sequence[Event]) -> str:
    names = [type(e).__name__ for e in events]
    parts = [(n, len(list(g))) for n, g in itertools.groupby(names)]
    return " → ".join(n if k == 1 else f"{n} x{k}" for n, k in parts)


async def run_inprocess(console: Console) -> None:
    """Run every example on the in-process runtime."""
    console.print("[bold]Baton examples, in-process[/] (no broker, no Redis)")
    for title, start, answer in demos():
        await show(console, title, start(), answer)


MODES: dict[str, Callable[[Console], Coroutine[Any, Any, None]]] = {"inprocess": run_inprocess}


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m examples.demo``."""
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    parser.parse_args(argv)
    asyncio.run(MODES["inprocess"](Console()))


if __name__ == "__main__":
    main()

"""``baton send``: answer a run waiting for input (human in the loop), or list what it waits for.

The event type is named by its class name (``Answer``), its qualified name, or its type tag,
among the event classes registered by ``BATON_IMPORTS``; a name that several classes share is
settled by what the run waits for, else it is an error listing the candidates' type tags.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection
from contextlib import suppress
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape

from app.cli.common import RunId, app, client, handled, json_object, out
from app.client import RunHandle, Waiting
from tasks import queries
from workflows.errors import InvalidInputError, UnknownEventTypeError
from workflows.events import Event, event_class

MAX_CANDIDATES = 12  # an unknown name lists at most this many, so the error stays one line


@app.command()
@handled
def send(
    run_id: RunId,
    event_type: Annotated[
        str | None,
        typer.Argument(help="event class name or type tag; omit it to list what the run waits for"),
    ] = None,
    input: Annotated[
        str, typer.Option("--input", "-i", help="the event's fields as a JSON object")
    ] = "{}",
) -> None:
    """Send an event into a run: the answer a step waits for (in the run or a child)."""
    handle = client().get(run_id)
    waiting = handle.waiting()
    if event_type is None:
        _print_waiting(handle, waiting)
        return
    cls = resolve_event(event_type, awaited=[w.event_type for w in waiting])
    event = build_event(cls, json_object(input, "the event's fields"))
    _target(handle, cls, waiting).send_event(event)
    out.print(f"sent {escape(cls.__name__)} to run {run_id}")


def _target(handle: RunHandle, cls: type[Event], waiting: list[Waiting]) -> RunHandle:
    """A child's waiter is answered through its root run, which holds the waiters."""
    if not any(w.event_type == cls.type_tag for w in waiting):
        return handle  # no waiter: the event is routed to the run's accepting steps
    root = queries.require_run(handle.client.runtime, handle.run_id).root
    return handle.client.get(root)


def _print_waiting(handle: RunHandle, waiting: list[Waiting]) -> None:
    run_id = handle.run_id
    if not waiting:
        out.print(f"run {run_id} waits for no input (it is {handle.status()})")
        return
    for item in waiting:
        where = "" if item.run_id == run_id else f" (child run {item.run_id})"
        out.print(f"waits for {escape(_describe(item))}{where}")
    out.print(f"answer with: baton send {run_id} EVENT_TYPE -i '{{...fields}}'")


def _describe(item: Waiting) -> str:
    """``Answer (tag) fields: approved: bool [requires k=v]``."""
    try:
        cls = event_class(item.event_type)
    except UnknownEventTypeError:
        return f"{item.event_type} (not registered here: check BATON_IMPORTS)"
    fields = ", ".join(
        f"{name}: {getattr(f.annotation, '__name__', str(f.annotation))}"
        for name, f in cls.model_fields.items()
    )
    text = f"{cls.__name__} ({cls.type_tag}) fields: {fields or 'none'}"
    if item.requirements:
        text += f" requires {json.dumps(item.requirements, separators=(',', ':'))}"
    return text


def resolve_event(name: str, awaited: Collection[str] = ()) -> type[Event]:
    """The event class named ``name`` (type tag, class name or qualified name); among
    namesakes, the one the run waits for. Unknown or ambiguous is InvalidInputError."""
    classes = event_classes()
    if name in classes:
        return classes[name]
    found = [c for c in classes.values() if name in (c.__name__, c.__qualname__)]
    awaited_found = [c for c in found if c.type_tag in awaited]
    if len(awaited_found) == 1 or len(found) == 1:
        return (awaited_found or found)[0]
    if found:
        tags = ", ".join(sorted(c.type_tag for c in found))
        raise InvalidInputError(f"event type {name!r} is ambiguous: one of {tags}")
    raise InvalidInputError(
        f"unknown event type {name!r}; candidates: {', '.join(_candidates(name, classes, awaited))}"
    )


def _candidates(name: str, classes: dict[str, type[Event]], awaited: Collection[str]) -> list[str]:
    """What the run waits for, else the names closest to ``name``, else every class name."""
    if awaited:
        return sorted(set(awaited))
    names = sorted({c.__name__ for c in classes.values()} | set(classes))
    close = difflib.get_close_matches(name, names, n=MAX_CANDIDATES, cutoff=0.5)
    return close or names[:MAX_CANDIDATES]


def event_classes() -> dict[str, type[Event]]:
    """Every registered event class by type tag (the classes imported in this process)."""
    found: dict[str, type[Event]] = {}
    stack: list[type[Event]] = [Event]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        with suppress(UnknownEventTypeError):  # only what the registry decodes counts
            found[cls.type_tag] = event_class(cls.type_tag)
    return found


def build_event(cls: type[Event], data: dict[str, Any]) -> Event:
    """The event from its fields; a bad one names each wrong field, on one line."""
    try:
        return cls(**data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInputError(f"invalid input for {cls.__name__}: {problems}") from exc

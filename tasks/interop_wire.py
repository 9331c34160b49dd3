"""Framing any Celery task's message for Baton's pipelines: a plain Celery task's (with Baton's
callbacks) and Baton's own interop tasks' (a tool call's timeout timer).

``tasks.publish`` frames Baton's step and tool messages, whose arguments are Baton records;
here the name, arguments, headers and callbacks are anything a Celery task takes. Both use
Celery's own protocol-2 code (``app.amqp.as_task_v2``) and kombu's Redis envelope, so a plain
worker consumes the message as any other.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from tasks.publish import Publisher

REPR_MAX = 200  # what Flower shows of the arguments


@dataclass(frozen=True)
class TaskMessage:
    """One Celery task message: the task, its queue and id, arguments, extra headers, the
    signatures (as dicts) run on its success (``link``) and failure (``link_error``), and how
    long it is worth starting (``expires``)."""

    name: str
    queue: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    task_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    headers: dict[str, Any] = field(default_factory=dict)
    link: list[dict[str, Any]] | None = None
    link_error: list[dict[str, Any]] | None = None
    expires: float | None = None  # seconds from now: a worker that gets it later drops it


def signature_dict(name: str, args: list[Any], queue: str) -> dict[str, Any]:
    """A signature of task ``name`` as the dict a message embeds (what ``Signature`` dumps)."""
    return {
        "task": name,
        "args": args,
        "kwargs": {},
        "options": {"queue": queue},
        "subtask_type": None,
        "immutable": False,
    }


def frame_task(publisher: Publisher, m: TaskMessage, bucket: int = 0) -> tuple[str, str]:
    """The list to push ``m`` onto and what to push (JSON, protocol 2), as the publisher frames
    Baton's own: its queue list and kombu's envelope, or ``bucket``'s outbox (a separate
    broker) and an outbox entry."""
    tm = publisher.app.amqp.as_task_v2(
        m.task_id,
        m.name,
        args=tuple(m.args),
        kwargs=m.kwargs,
        callbacks=m.link,
        errbacks=m.link_error,
        expires=m.expires,
        origin="baton",
        argsrepr=json.dumps(m.args)[:REPR_MAX],
        kwargsrepr=json.dumps(m.kwargs)[:REPR_MAX],
    )
    headers = {**tm.headers, **m.headers}
    return publisher.wrap(m.queue, m.task_id, tm.body, headers, tm.properties, bucket)

"""Publishing task messages inside Baton's own Redis pipeline.

A step hop writes its state and sends its successors in ONE round trip: messages are framed by
Celery's own protocol-2 code (``app.amqp.as_task_v2``) and kombu's Redis envelope, then pushed
onto the queue lists with the state writes. Workers consume them as any Celery message.
kombu's own publish builds a new Redis client per message and costs one round trip each —
most of a hop's time, and all of a 1,000-wide fan-out's dispatch.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

from celery import Celery

from tasks.protocol import TOOL_TASK_PREFIX, Message, OutboxEntry, StepArgs

ARGSREPR_MAX = 200  # Flower shows it in a table cell; the event payload never goes in it


class Publisher:
    """Frames messages for the Redis transport and pushes them on a pipeline.

    With ``outbox`` (a separate broker), every message is framed as an :class:`OutboxEntry`
    and pushed onto that list instead, with the same writes: a relay publishes it to the
    broker (``tasks.relay``). Callers (the Lua scripts included) cannot tell the difference:
    they get a key and a payload to push either way."""

    def __init__(
        self,
        app: Celery,
        key_prefix: str,
        outbox: Callable[[int], str] | None = None,
        bucket_of: Callable[[str], int] = lambda _: 0,
    ) -> None:
        self.app = app
        self.key_prefix = key_prefix
        self.outbox = outbox  # a bucket's outbox key, with a separate broker
        self.bucket_of = bucket_of  # a run's bucket (``Keys.bucket_of``)
        self.origin = "baton"
        # task name -> what sends its messages instead of ``frame`` (a task-backed tool's
        # call is the plain task's own message: ``tasks.interop_tools.push_call``)
        self.senders: dict[str, Callable[[Any, Message], None]] = {}

    def frame(self, m: Message, bucket: int | None = None) -> tuple[str, str]:
        """The list to push onto and what to push: a queue list and the JSON envelope kombu's
        Redis transport expects, or an outbox (its run's bucket's, unless ``bucket`` says
        which: a limit's waiting messages go out with the limit's writes) and an entry."""
        tm = self._task(m)
        at = self.bucket_of(m.run_id) if bucket is None else bucket
        return self.wrap(m.queue, m.task_id, tm.body, tm.headers, tm.properties, at)

    def wrap(
        self,
        queue: str,
        task_id: str,
        body: Any,
        headers: dict[str, Any],
        properties: dict[str, Any],
        bucket: int = 0,
    ) -> tuple[str, str]:
        """Celery's protocol-2 message (``as_task_v2``'s body, headers and properties) as what
        to push where: kombu's Redis envelope on the queue list, or an outbox entry (onto
        ``bucket``'s outbox)."""
        if self.outbox is not None:
            entry = OutboxEntry(queue, task_id, body, headers, properties)
            return self.outbox(bucket), entry.to_json()
        raw = json.dumps(body, separators=(",", ":")).encode()
        props: dict[str, Any] = {
            **properties,
            "delivery_mode": 2,
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
            "delivery_info": {"exchange": queue, "routing_key": queue},
        }
        envelope = {
            "body": base64.b64encode(raw).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": props,
        }
        return f"{self.key_prefix}{queue}", json.dumps(envelope, separators=(",", ":"))

    def _task(self, m: Message) -> Any:
        """Celery's protocol-2 task message (headers, properties, body) for ``m``."""
        return self.app.amqp.as_task_v2(
            m.task_id,
            m.name,
            args=tuple(m.args.wire()),
            kwargs={},
            # never an ETA: a worker would hold the message in memory, past its visibility
            # timeout; a delayed message waits in Baton's timer set instead (``tasks.timers``)
            countdown=None,
            retries=m.args.attempt - 1,  # what Flower shows as the task's retries
            # no time limits on the wire: the worker that runs the task applies its own (the
            # task's defaults, see ``tasks.registry``), the ones its visibility timeout covers
            ignore_result=True,
            origin=self.origin,
            # what Flower shows as the arguments and searches: see ``argsrepr``; Celery's own
            # saferepr of them costs more than the rest of the framing
            argsrepr=argsrepr(m),
            kwargsrepr="{}",
        )

    def push(self, pipe: Any, messages: list[Message]) -> None:
        for m in messages:
            sender = self.senders.get(m.name)
            if sender is not None:
                sender(pipe, m)
                continue
            key, payload = self.frame(m)
            pipe.lpush(key, payload)


def argsrepr(m: Message) -> str:
    """What Flower shows as a task's arguments: the run id first, then what runs, so Flower's
    search for a run id (or ``Research.score``, ``tool search``) finds its tasks; then the ids
    that address the call; ``delayed=`` for one that waited in the timer set (a retry's backoff
    or a rate limit), so Flower's search for ``delayed`` finds them. Short, and never the
    payload (it may be large or private)::

        r1 Research.score inv=i1 attempt=1
        r1 tool search inv=i1 call=i1.2 attempt=2 delayed=1.5s
    """
    a = m.args
    if isinstance(a, StepArgs):
        text = f"{a.run_id} {m.name} inv={a.inv_id} attempt={a.attempt}"
    else:
        tool = m.name.removeprefix(TOOL_TASK_PREFIX)
        text = f"{a.run_id} tool {tool} inv={a.inv_id} call={a.call_id} attempt={a.attempt}"
    if m.countdown:
        text += f" delayed={m.countdown:.3g}s"
    return text[:ARGSREPR_MAX]

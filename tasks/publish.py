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
from typing import Any

from celery import Celery

from tasks.protocol import Message


class Publisher:
    """Frames messages for the Redis transport and pushes them on a pipeline."""

    def __init__(self, app: Celery, key_prefix: str) -> None:
        self.app = app
        self.key_prefix = key_prefix
        self.origin = "baton"

    def frame(self, m: Message) -> tuple[str, str]:
        """The queue list key and the JSON envelope kombu's Redis transport expects."""
        tm = self.app.amqp.as_task_v2(
            m.task_id,
            m.name,
            args=tuple(m.args.wire()),
            kwargs={},
            countdown=m.countdown,
            # no time limits on the wire: the worker that runs the task applies its own (the
            # task's defaults, see ``tasks.registry``), the ones its visibility timeout covers
            ignore_result=True,
            origin=self.origin,
            # what Flower shows as the arguments; Celery's own saferepr of them costs more
            # than the rest of the framing
            argsrepr=json.dumps(m.args.wire(), separators=(",", ":"))[:256],
            kwargsrepr="{}",
        )
        body = json.dumps(tm.body, separators=(",", ":")).encode()
        properties: dict[str, Any] = {
            **tm.properties,
            "delivery_mode": 2,
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
            "delivery_info": {"exchange": m.queue, "routing_key": m.queue},
        }
        envelope = {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": tm.headers,
            "properties": properties,
        }
        return f"{self.key_prefix}{m.queue}", json.dumps(envelope, separators=(",", ":"))

    def push(self, pipe: Any, messages: list[Message]) -> None:
        for m in messages:
            key, payload = self.frame(m)
            pipe.lpush(key, payload)

"""Guards a worker installs on kombu's Redis transport, so that neither Redis dying under the
consumer nor a stray item on a queue list can stop the worker process.

Both are narrow patches of kombu 5.7 behaviour that Celery treats as unrecoverable (the worker
exits); each keeps what it cannot serve where an operator can see it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery.worker.consumer import consumer as celery_consumer
from celery.worker.consumer import events as celery_events_step
from kombu.transport import redis as kombu_redis

from tasks import deadletters
from tasks.runtime import Runtime

log = logging.getLogger("baton.worker")
# kombu's Redis transport, untyped: its module globals and methods are what is patched
redis_transport: Any = kombu_redis


class Undecodable(dict[str, Any]):
    """What a queue item that is not JSON decodes to: kept as a dead letter, never delivered."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


def envelope_problem(item: Any) -> str | None:
    """Why a queue item is not a kombu envelope this worker can hand to Celery, or None.

    Checked before kombu builds its message (and records it as unacked): an item that fails
    here has touched no state, so keeping it as a dead letter loses nothing."""
    if isinstance(item, Undecodable):
        return "not JSON"
    if not isinstance(item, dict):
        return f"a JSON {type(item).__name__}, not an envelope object"
    properties = item.get("properties")
    if not isinstance(properties, dict):
        return "no 'properties' object"
    if not isinstance(properties.get("delivery_tag"), str | int):
        return "no 'properties.delivery_tag'"
    if not isinstance(properties.get("delivery_info"), dict):
        return "no 'properties.delivery_info' object"
    if not isinstance(item.get("headers") or {}, dict):
        return "'headers' is not an object"
    body = item.get("body")
    if body is not None and not isinstance(body, str):
        return "'body' is not a string"
    if body and properties.get("body_encoding") == "base64":
        try:
            base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return "'body' is not base64"
    return None


def guard_queue_items(rt: Runtime) -> None:
    """Keep a worker serving when a queue list holds something that is not a Celery message.

    kombu pops an item with BRPOP and decodes it before anything else; a plain-text item
    raises ``JSONDecodeError`` and a JSON value of the wrong shape a ``KeyError`` out of the
    consumer, which Celery calls unrecoverable: the worker exits and the item is gone. Here
    such an item is kept as a dead letter (reason ``undecodable: ...``) and the worker reads on.
    """
    if getattr(redis_transport.loads, "baton_guarded", False):
        return
    original_loads = redis_transport.loads
    original_deliver = redis_transport.Transport._deliver

    def loads(text: Any) -> Any:
        try:
            return original_loads(text)
        except ValueError:
            return Undecodable(text if isinstance(text, str) else repr(text))

    def deliver(self: Any, message: Any, queue: str) -> Any:
        problem = envelope_problem(message)
        if problem is None:
            return original_deliver(self, message, queue)
        raw = message.text if isinstance(message, Undecodable) else json.dumps(message)
        log.error(
            "queue %s: dropped an item that is not a message (%s); kept as a dead letter",
            queue,
            problem,
        )
        try:
            deadletters.keep(rt, f"undecodable: queue {queue}: {problem}", raw)
        except Exception:  # Redis went away meanwhile: say so, and keep serving
            log.exception("could not keep the item as a dead letter: %s", raw[:200])
        return None

    loads.baton_guarded = True  # type: ignore[attr-defined]
    redis_transport.loads = loads
    redis_transport.Transport._deliver = deliver


def lean_unacked_bookkeeping() -> None:
    """kombu's Redis QoS records each taken message (``ZADD`` index + ``HSET`` payload) and
    forgets it at the ack (``ZREM`` + ``HDEL``) in MULTI/EXEC pipelines: 4 of a hop's commands
    are those wrappers. The pair is sent in one round trip either way; without MULTI another
    client may run between the two, which is harmless (a visibility sweep only restores tags
    older than the visibility timeout, and restoring a tag whose payload is missing just drops
    it), and a Redis crash between them leaves at most an index entry without payload (dropped
    by the next sweep) or a payload the index no longer names (an orphan field, never
    delivered again: the message was acked). Restores keep their own transaction (``pipe`` is
    given there)."""
    qos: Any = kombu_redis.QoS
    if getattr(qos.pipe_or_acquire, "baton_lean", False):
        return

    @contextmanager
    def pipe_or_acquire(self: Any, pipe: Any = None, client: Any = None) -> Iterator[Any]:
        if pipe:
            yield pipe
        else:
            with self.channel.conn_or_acquire(client) as conn:
                yield conn.pipeline(transaction=False)

    pipe_or_acquire.baton_lean = True  # type: ignore[attr-defined]
    qos.pipe_or_acquire = pipe_or_acquire


EVENT_FLUSH = 0.05  # seconds a worker gathers its task events before publishing them


def batched_task_events() -> None:
    """A worker with an event loop buffers its task events and publishes each buffer as one
    ``task.multi`` message (Flower and Celery's receivers read the list). Celery flushes on
    the loop's next turn, which under load holds one event: 3 ``PUBLISH`` per hop (received,
    started, succeeded). Flushing once per ``EVENT_FLUSH`` instead sends the events of that
    time in one message, a fraction of a command per hop at any load; Flower sees them up to
    50 ms later. A full buffer (Celery's limit, 24 events) still flushes at once."""
    consumer: Any = celery_consumer.Consumer
    if getattr(consumer.on_send_event_buffered, "baton_batched", False):
        return

    def on_send_event_buffered(self: Any) -> None:
        if not self.hub or getattr(self, "baton_flush_due", False):
            return
        self.baton_flush_due = True

        def flush() -> None:
            self.baton_flush_due = False
            self._flush_events()

        self.hub.call_later(EVENT_FLUSH, flush)

    on_send_event_buffered.baton_batched = True  # type: ignore[attr-defined]
    consumer.on_send_event_buffered = on_send_event_buffered
    # a flush due on a timer would not run once the loop stops: flush what is buffered when
    # the consumer closes its dispatcher (shutdown, reconnect), as Celery's next-turn flush did
    events: Any = celery_events_step.Events
    close = events._close

    def _close(self: Any, c: Any) -> Any:
        if c.event_dispatcher is not None:
            with contextlib.suppress(Exception):  # the broker away: Celery drops them too
                c.event_dispatcher.flush()
        return close(self, c)

    events._close = _close


def guard_unacked_restore() -> None:
    """Keep a worker alive when Redis dies under it (a kombu 5.7 bug, seen in our restart test).

    On a lost connection the consumer closes its channel; kombu first drops the channel's
    connection pools, then tries to push the channel's unacked messages back through a pool it
    can no longer build (``AttributeError: 'NoneType' object has no attribute 'hostname'``),
    and Celery treats that as unrecoverable: the worker process exits. Skipping that restore is
    safe: those messages are still in kombu's unacked hash in Redis, and the visibility sweep
    (every 2 s, see ``app.celery_app.celery_config``) brings them back once their visibility
    timeout passes.
    """
    original = kombu_redis.QoS.restore_unacked
    if getattr(original, "baton_guarded", False):
        return

    def restore_unacked(self: Any, client: Any = None) -> Any:
        try:
            return original(self, client)
        except Exception:
            log.warning("could not restore unacked messages now; the visibility sweep will")
            self._delivered.clear()
            return None

    restore_unacked.baton_guarded = True  # type: ignore[attr-defined]
    kombu_redis.QoS.restore_unacked = restore_unacked  # type: ignore[method-assign]


def guard_closed_channel_acks() -> None:
    """Keep a worker alive when a task finishes after Redis came back (the same kombu 5.7 bug,
    on the ack path; the chaos suite killed an asyncio worker with it).

    A task that outlives a lost connection acks through its old channel, whose connection
    kombu dropped: ``AttributeError: 'NoneType' object has no attribute 'client'``, which
    Celery treats as unrecoverable. Skipping that ack is safe: the message stays in kombu's
    unacked hash, comes back a visibility timeout later, and its task finds it no longer in
    flight and does nothing.
    """
    qos: Any = kombu_redis.QoS
    for name in ("ack", "reject"):
        original = getattr(qos, name)
        if getattr(original, "baton_guarded", False):
            continue

        def guarded(
            self: Any, delivery_tag: Any, *args: Any, _original: Any = original, **kw: Any
        ) -> Any:
            try:
                return _original(self, delivery_tag, *args, **kw)
            except AttributeError:
                log.warning(
                    "could not settle message %s on a channel closed by a lost connection; "
                    "it comes back after the visibility timeout",
                    delivery_tag,
                )
                self._delivered.pop(delivery_tag, None)
                return None

        guarded.baton_guarded = True  # type: ignore[attr-defined]
        setattr(qos, name, guarded)

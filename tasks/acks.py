"""Batched acks on the Redis broker: a worker forgets its acked messages together.

kombu's Redis QoS forgets an acked message with ``ZREM`` (unacked index) and ``HDEL``
(unacked hash): 2 of a hop's commands. A Baton worker acks at once in the QoS (its prefetch
window, what it restores at shutdown) and leaves the two Redis commands to a thread that sends
every ``ACK_FLUSH`` seconds one ``ZREM`` and one ``HDEL`` naming all the tags acked meanwhile:
a fraction of a command per hop, at any load.

Safe because a tag still in the index is touched only by a visibility sweep, and only once it
is older than the visibility timeout (minutes; a flush comes within milliseconds). A worker
killed before its flush leaves tags that sweep restores later; their redelivery finds the
message finished (Baton's in-flight record is gone) and does nothing. Baton's own tasks are
the only ones its workers run, and all of them are safe to deliver twice.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from tasks.worker_threads import run_while_worker_lives

log = logging.getLogger("baton.worker")

ACK_FLUSH = 0.02  # seconds acks are gathered before their Redis bookkeeping is sent
MAX_PENDING = 100_000  # tags held while Redis is away; past it the oldest are left to a sweep


class AckBatcher(threading.Thread):
    """Gathers acked delivery tags per QoS and forgets them in Redis together."""

    def __init__(self) -> None:
        super().__init__(name="baton-acks", daemon=True)
        self.lock = threading.Lock()
        self.pending: dict[Any, list[str]] = {}  # a QoS -> its acked tags, oldest first
        self.wake = threading.Event()
        self.stopped = threading.Event()

    def add(self, qos: Any, tag: str) -> None:
        with self.lock:
            tags = self.pending.setdefault(qos, [])
            tags.append(tag)
            if len(tags) > MAX_PENDING:
                del tags[: len(tags) - MAX_PENDING]
        self.wake.set()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.wake.wait()
            self.stopped.wait(ACK_FLUSH)  # gather: the acks of this time go in one flush
            self.wake.clear()
            if not self.flush():
                self.stopped.wait(0.5)  # Redis away: the tags wait (and are tried again)
                self.wake.set()
        self.flush()

    def flush(self, only: Any = None) -> bool:
        """Forget every pending tag in Redis (``only``: that QoS's); False (the failed ones
        kept) if Redis is away. A closed channel's tags are dropped: a visibility sweep
        restores them, and their redelivery finds the messages finished."""
        with self.lock:
            if only is None:
                batches, self.pending = self.pending, {}
            else:
                batches = {only: self.pending.pop(only)} if only in self.pending else {}
        ok = True
        for qos, tags in batches.items():
            if getattr(qos.channel, "connection", None) is None:
                log.debug("acks: %d acks of a closed channel left to a sweep", len(tags))
                continue
            try:
                with qos.channel.conn_or_acquire() as client:
                    pipe = client.pipeline(transaction=False)
                    pipe.zrem(qos.unacked_index_key, *tags)
                    pipe.hdel(qos.unacked_key, *tags)
                    pipe.execute()
            except Exception:  # Redis away: keep them for the next round
                if ok:
                    log.warning("acks: cannot reach Redis; %d acks wait", len(tags))
                ok = False
                with self.lock:
                    self.pending[qos] = tags + self.pending.get(qos, [])
        return ok

    def stop(self) -> None:
        self.stopped.set()
        self.wake.set()


def batch_acks() -> None:
    """Patch kombu's Redis QoS in this worker so its acks go through one batcher, started
    once the worker is ready and flushed at its shutdown."""
    qos: Any = kombu_redis.QoS
    if getattr(qos.ack, "baton_batched", False):
        return
    batcher = AckBatcher()

    def ack(self: Any, delivery_tag: str) -> None:
        batcher.add(self, delivery_tag)
        virtual.QoS.ack(self, delivery_tag)  # the QoS's own bookkeeping, at once

    ack.baton_batched = True  # type: ignore[attr-defined]
    qos.ack = ack
    restore = qos.restore_unacked_once

    def restore_unacked_once(self: Any, stderr: Any = None) -> Any:
        batcher.flush(only=self)  # the channel closes next: its acks go first
        return restore(self, stderr)

    qos.restore_unacked_once = restore_unacked_once
    run_while_worker_lives(lambda _: batcher, join=2.0)

"""The outbox relay: publishes what Baton wrote to the state Redis's outbox to a separate broker.

With one Redis, a hop pushes its successor messages onto the queue lists in the same round trip
as its state (``tasks.publish``). With a separate broker (``BATON_BROKER_URL``: RabbitMQ, or
another Redis) no write can span both, so every message is framed as an
:class:`~tasks.protocol.OutboxEntry` and pushed onto the outbox list *with the state it belongs
to* (the Lua scripts that resume a step, release a timer or hand on a permit push there too,
unchanged), and a relay publishes it. A hop that crashes after its write has its messages in
the outbox; one that crashes before wrote nothing.

Each worker's main process runs one relay thread:

1. ``BLMOVE`` the oldest entry onto its own relaying list (it blocks: no polling, and Redis
   hands each entry to one relay), then ``RELAY_TAKE`` up to a batch more, atomically;
2. publish them through kombu, oldest first (RabbitMQ: with publisher confirms, so a publish
   returns once the broker has the message, and messages are persistent on durable queues);
3. delete its relaying list.

On a Redis Cluster each bucket has its outbox (``tasks.keys``), and no relay can block on them
all: a write that filled one rings the bell list afterwards, naming its bucket, and relays
``BRPOP`` the bell instead, then take from the buckets it names; every ``SWEEP_EVERY`` seconds a
relay also looks in every bucket, since a ring is only a hint (a process may die between its
write and its ring).

A relay that dies between 1 and 3 leaves its entries on its relaying list. Every relay keeps a
short-lived liveness key fresh and, every ``SWEEP_EVERY`` seconds, puts the entries of the
relays whose key expired back on the outbox (``RELAY_RETURN``). A message published twice is
harmless: the second delivery finds its task no longer in flight and does nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from typing import Any

from tasks import deadletters, runs
from tasks.protocol import OutboxEntry
from tasks.runtime import Runtime
from tasks.worker_threads import run_while_worker_lives
from workflows.errors import ErrorInfo, PayloadError

log = logging.getLogger("baton.relay")

BATCH = 200  # entries per publish round (one BLMOVE, one RELAY_TAKE, one DEL)
BLOCK = 1.0  # seconds a relay blocks waiting for an entry before it checks in
ALIVE_TTL = 15  # seconds a relay's liveness key outlives its last refresh
SWEEP_EVERY = 5.0  # seconds between refreshes of the liveness key and sweeps for dead relays
REFUSALS = 3  # times the broker may refuse one entry before it is dead-lettered
PUBLISH_TIMEOUT = 10.0  # seconds one publish (and its confirm) may take


class Refused(Exception):
    """The broker refused one entry (not the connection: that entry, every time it is sent)."""

    def __init__(self, entry: OutboxEntry, cause: BaseException) -> None:
        super().__init__(f"broker refused task {entry.task_id} for queue {entry.queue}: {cause}")
        self.entry = entry


class BrokerPublisher:
    """Publishes outbox entries to the broker with kombu, on one connection (reopened after an
    error), declaring each queue the way Celery does the first time it is used."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._connection: Any = None
        self._producer: Any = None
        self._declared: set[str] = set()

    def publish(self, entries: list[OutboxEntry]) -> None:
        """Publish each, in order. A connection error propagates (all are tried again later);
        one the broker refused on its own (a channel error: a queue declared otherwise, a
        message too large) is raised as :class:`Refused`, naming the entry."""
        if self._producer is None:
            self._connection = self.app.connection_for_write()
            self._connection.ensure_connection(max_retries=1)
            self._producer = self.app.amqp.Producer(self._connection)
        for e in entries:
            queue = self.app.amqp.queues[e.queue]  # made as Celery makes a missing queue
            try:
                self._producer.publish(
                    e.body,
                    exchange=queue.exchange,
                    routing_key=queue.routing_key,
                    serializer="json",
                    headers=e.headers,
                    declare=[] if e.queue in self._declared else [queue],
                    delivery_mode=2,
                    retry=False,  # the entries stay on the relaying list until a publish works
                    # a broker that stops answering (an alarm, a half-open connection) fails
                    # the round instead of holding the relay forever
                    timeout=PUBLISH_TIMEOUT,
                    confirm_timeout=PUBLISH_TIMEOUT,
                    **e.properties,
                )
            except self._connection.channel_errors as exc:
                raise Refused(e, exc) from exc
            self._declared.add(e.queue)

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # already broken: nothing to release
                self._connection.release()
        self._connection = self._producer = None
        self._declared.clear()


class Relay(threading.Thread):
    """Moves the outbox to the broker while the worker lives; logs (and keeps trying) while
    Redis or the broker is away."""

    def __init__(self, rt: Runtime, name: str | None = None, batch: int = BATCH) -> None:
        super().__init__(name="baton-relay", daemon=True)
        self.rt, self.batch = rt, batch
        self.relay = name or f"{uuid.uuid4().hex[:12]}"
        self.publisher = BrokerPublisher(rt.app)
        self.stopped = threading.Event()
        self.published = 0
        # the buckets whose relaying list may hold entries (at start: every one, left by a
        # relay of the same name)
        self.holding: set[int] = set(rt.keys.all_buckets())
        self.refusals: dict[str, int] = {}  # task id -> how often the broker refused it
        self.swept = 0.0  # when this relay last looked in every bucket's outbox (a cluster)

    def run(self) -> None:
        failing = False
        checked_in = 0.0
        while not self.stopped.is_set():
            try:
                if time.monotonic() - checked_in >= SWEEP_EVERY:
                    self.check_in()
                    self.return_dead()
                    checked_in = time.monotonic()
                self.relay_once(block=BLOCK)
            except Exception:  # Redis or the broker away: the entries wait where they are
                if not failing:
                    log.warning("outbox relay: cannot publish", exc_info=True)
                failing = True
                self.publisher.close()
                self.stopped.wait(0.5)
                continue
            if failing:
                log.warning("outbox relay: publishing again")
                failing = False
        self.publisher.close()
        with contextlib.suppress(Exception):  # Redis away: the check-in expires by itself
            self.check_out()

    def relay_once(self, block: float | None = None) -> int:
        """Publish what this relay holds, else the oldest entries of the outbox (waiting up to
        ``block`` seconds for one); returns how many were published."""
        if not self.rt.keys.buckets:
            return self._relay_bucket(0, block)
        buckets = self._buckets_to_relay(block)
        published = sum(self._relay_bucket(b) for b in buckets)
        if buckets and not published:
            # a stale ring (its entries went with an earlier one's batch): rings pile up
            # under load, so take the rest of them at once, each bucket once
            stale = self.rt.redis.rpop(self.rt.keys.outbox_bell(), self.batch) or []
            published += sum(self._relay_bucket(b) for b in sorted({int(x) for x in stale}))
        return published

    def _buckets_to_relay(self, block: float | None) -> list[int]:
        """On a cluster (an outbox per bucket): the buckets whose relaying list this relay
        holds entries of, else the ones the bell names (waiting up to ``block`` seconds for a
        ring), and every bucket once every ``SWEEP_EVERY`` seconds (a write that died before
        it rang)."""
        k, r = self.rt.keys, self.rt.redis
        if self.holding:
            return sorted(self.holding)
        if time.monotonic() - self.swept >= SWEEP_EVERY:
            self.swept = time.monotonic()
            return list(k.all_buckets())
        bell = k.outbox_bell()
        if block is None:
            rung = r.rpop(bell, self.batch) or []
        else:  # one ring (BRPOP: redis-py asks a node for BLMPOP's keys, a round trip more)
            got = r.brpop([bell], timeout=block)
            rung = [got[1]] if got else []
        return sorted({int(b) for b in rung})

    def _relay_bucket(self, bucket: int, block: float | None = None) -> int:
        """Publish what this relay holds of ``bucket``, else the oldest entries of its outbox
        (waiting up to ``block`` seconds for one); returns how many were published."""
        k, r = self.rt.keys, self.rt.redis
        outbox, mine = k.outbox(bucket), k.relaying(self.relay, bucket)
        # what a failed round left on this relay's list (oldest first): read only then
        held = list(reversed(r.lrange(mine, 0, -1))) if bucket in self.holding else []
        if not held:
            self.holding.add(bucket)  # from here until the DEL, the list may hold entries
            if block is not None:
                first = r.blmove(outbox, mine, block, "RIGHT", "LEFT")
                if first is None:
                    self.holding.discard(bucket)
                    return 0
                held = [first]
            held += list(self.rt.script("RELAY_TAKE")(keys=[outbox, mine], args=[self.batch]))
        if held:
            try:
                self.publisher.publish(self._entries(held))
            except Refused as refused:
                self._refused(refused, held, mine)
                raise
            r.delete(mine)
            if len(held) >= self.batch:
                self.rt.ring(bucket)  # more may wait: come back at once
        self.holding.discard(bucket)
        self.published += len(held)
        return len(held)

    def _refused(self, refused: Refused, held: list[str], mine: str) -> None:
        """An entry the broker refused ``REFUSALS`` times is taken off this relay's list and
        kept as a dead letter, its run failed as data: it must not block the entries behind
        it (the round is tried again, so those before it may go out twice: harmless)."""
        e = refused.entry
        self.refusals[e.task_id] = self.refusals.get(e.task_id, 0) + 1
        if self.refusals[e.task_id] < REFUSALS:
            return
        del self.refusals[e.task_id]
        raw = next((text for text in held if f'"id":"{e.task_id}"' in text), None)
        if raw is not None:
            self.rt.redis.lrem(mine, 1, raw)
        deadletters.keep(self.rt, str(refused), raw or e.task_id)
        run_id = _run_of(e)
        if run_id:
            info = ErrorInfo(type="BrokerRefused", message=str(refused))
            runs.fail_run(self.rt, run_id, info)
        log.error("outbox relay: %s; kept as a dead letter", refused)

    def _entries(self, raw: list[str]) -> list[OutboxEntry]:
        """The entries to publish; one that is not an outbox entry is kept as a dead letter."""
        entries = []
        for text in raw:
            try:
                entries.append(OutboxEntry.from_json(text))
            except PayloadError as exc:
                deadletters.keep(self.rt, f"not an outbox entry: {exc}", text)
        return entries

    def check_in(self) -> None:
        """Say this relay is alive (its relaying list is its own) for ``ALIVE_TTL`` seconds."""
        k = self.rt.keys
        pipe = self.rt.redis.pipeline(transaction=False)
        pipe.sadd(k.relays(), self.relay)  # no expiry: a name leaves once its list is back
        pipe.set(k.relay_alive(self.relay), "1", ex=ALIVE_TTL)
        pipe.execute()

    def check_out(self) -> None:
        """A clean stop: nothing held (a failed publish's entries go back), nothing left."""
        k = self.rt.keys
        for b in k.all_buckets():
            self.rt.script("RELAY_RETURN")(keys=[k.outbox(b), k.relaying(self.relay, b)], args=[])
        pipe = self.rt.redis.pipeline(transaction=False)
        pipe.srem(k.relays(), self.relay)
        pipe.delete(k.relay_alive(self.relay))
        pipe.execute()

    def return_dead(self) -> int:
        """Put the entries of relays that stopped checking in back on the outbox; how many."""
        k, r = self.rt.keys, self.rt.redis
        names = sorted(r.smembers(k.relays()))
        if not names:
            return 0
        pipe = r.pipeline(transaction=False)
        for name in names:
            pipe.exists(k.relay_alive(name))
        back = 0
        for name, alive in zip(names, pipe.execute(), strict=True):
            if alive:
                continue
            for b in k.all_buckets():
                returned = self.rt.script("RELAY_RETURN")(
                    keys=[k.outbox(b), k.relaying(name, b)], args=[]
                )
                if int(returned):
                    back += int(returned)
                    self.rt.ring(b)
            r.srem(k.relays(), name)
        if back:
            log.warning("outbox relay: %d entries of a dead relay put back on the outbox", back)
        return back

    def stop(self) -> None:
        self.stopped.set()


def _run_of(e: OutboxEntry) -> str | None:
    """The run an entry's message belongs to: a plain task's names it in a header, Baton's own
    tasks take it as their first argument."""
    named = e.headers.get("baton_run")
    if named:
        return str(named)
    args = e.body[0] if isinstance(e.body, list) and e.body else None
    return str(args[0]) if isinstance(args, list) and args and isinstance(args[0], str) else None


def install(rt: Runtime) -> None:
    """With a separate broker, start a relay in each worker's main process once it is ready;
    stop it on shutdown (what it holds goes back to the outbox once its key expires)."""
    if not rt.settings.separate_broker:
        return

    def make(sender: Any) -> Relay:
        hostname = getattr(sender, "hostname", None) or "worker"
        return Relay(rt, f"{hostname}:{uuid.uuid4().hex[:8]}")

    run_while_worker_lives(make, join=BLOCK + 2)

"""The Redis side of global rate and concurrency limits, for tools and steps alike.

A limited delivery asks for its rate-limit slot (``ACQUIRE``) and then for a permit of its
concurrency limit (``TAKE``); a holder gives its permit back when its delivery ends (``GIVE``).
One that may not start is re-sent to wait where no worker holds it: in the timer set until its
slot (:func:`wait_for_slot`), or on the limit's FIFO waiting list (``TAKE`` puts it there). The
tool task (:mod:`tasks.tool_task`) and the step task (:mod:`tasks.step_task`) differ only in
what they re-send and how they write their span; whose limit it is (a :class:`Limited`: kind,
name, key) names the keys (``tasks.keys``: a step's never collide with a tool's) and the text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from tasks.protocol import InflightRecord, Message
from tasks.runtime import Runtime, now
from workflows.rate_limit import RateLimit

EARLY = 0.005  # seconds a call may come back before its rate-limit slot (clock estimates)
RESERVED_FOR = 3600  # seconds rate-limit state and reservations outlive their slots
LEASE_MARGIN = 2.0  # seconds a concurrency permit outlives its holder's hard time limit
Kind = Literal["tool", "step"]


@dataclass(frozen=True, slots=True)
class Limited:
    """Whose limit a delivery is under: a tool's or a step's (``kind``), by name, for a key."""

    kind: Kind
    name: str
    key: str = ""

    def __str__(self) -> str:
        """``tool X (key K)``: how the wait's text names it."""
        keyed = f" (key {self.key})" if self.key else ""
        return f"{self.kind} {self.name}{keyed}"


@dataclass(frozen=True, slots=True)
class SlotWait:
    """A start the rate limit does not allow yet: its slot's time (wall clock, Redis's) and
    how many seconds from now that is."""

    due: float
    delay: float


def take_slot(rt: Runtime, who: Limited, rate: RateLimit, reservation: str) -> SlotWait | None:
    """Take (or find) the slot of one attempt under ``rate`` (``ACQUIRE``): None, it starts
    now (its start is counted); else when it may."""
    acquire = rt.script("ACQUIRE")
    due, server_now, starts = acquire(
        keys=[rt.keys.rate(who.name, who.key, who.kind), reservation],
        args=[repr(rate.interval), RESERVED_FOR, EARLY, repr(rate.tolerance)],
    )
    if int(starts):
        return None
    return SlotWait(float(due), float(due) - float(server_now))


def rate_wait_text(who: Limited, rate: RateLimit, wait: SlotWait) -> str:
    """What a delivery waiting for its slot says (its span's error, Flower's RETRY)."""
    slot = wait.due
    until = time.strftime("%H:%M:%S", time.localtime(slot)) + f".{int(slot * 1000) % 1000:03d}"
    return f"waiting for rate limit {rate.text} of {who} until {until}"


def wait_for_slot(rt: Runtime, pipe: Any, message: Message, task_id: str | None) -> None:
    """Re-send ``message`` (a new task id) to the timer set and finish this delivery, with
    whatever the caller put on ``pipe`` (its span): one round trip, and no worker holds it."""
    rt.send([message], pipe)
    rt.finished(pipe, message.run_id, task_id)
    pipe.execute()


def lease(hard_limit: float) -> float:
    """How long a permit is held without being given back: the holder's hard limit + margin."""
    return hard_limit + LEASE_MARGIN


def take_permit(
    rt: Runtime, who: Limited, n: int, lease_s: float, holder: str, message: Message
) -> bool:
    """Take a permit of ``who``'s limit of ``n`` (``TAKE``): True, it runs now. Else
    ``message`` (a copy of the delivery's, with a new task id) was put in flight on the limit's
    waiting list, where no worker holds it, and this delivery (``holder``) was finished."""
    k = rt.keys
    at = k.concurrency_bucket(who.name, who.key, who.kind)
    # the waiting copy goes out with the limit's writes: onto the limit's bucket's outbox
    queue_key, envelope = rt.publisher.frame(message, at)
    record = InflightRecord(now(), message).to_json()
    args = [
        k.concurrency(who.name, who.key, who.kind),
        n,
        repr(lease_s),
        holder,
        message.task_id,
        record,
        queue_key,
        envelope,
    ]
    inflight = k.inflight(message.run_id)
    if not k.buckets:  # one Redis: one atomic script
        runs_now = rt.script("TAKE")(keys=[k.concurrency_index(), inflight], args=args)
        return bool(int(runs_now))
    # a cluster: the limit's slot is not the run's, so no script can write both. The copy is
    # recorded in flight first (a message delivered without its record would be dropped as
    # a duplicate), then TAKE decides on the limit's slot alone, then the record of the one
    # that does not go on is deleted. A crash between leaves an extra record (the reaper
    # resends it: a duplicate delivery, which finds its work done) or an unfinished delivery
    # (redelivered: it asks again).
    rt.redis.hset(inflight, message.task_id, record)
    runs_now = int(rt.script("TAKE")(keys=[k.concurrency_index(at)], args=args))
    rt.redis.hdel(inflight, message.task_id if runs_now else holder)
    rt.ring(at)  # TAKE hands expired holders' permits on first
    return bool(runs_now)


def permit_wait_text(who: Limited, n: int) -> str:
    """What a delivery waiting for a permit says (its span's error, Flower's RETRY)."""
    return f"waiting for concurrency limit {n} of {who}"


def give_permit(rt: Runtime, who: Limited, n: int, lease_s: float, holder: str) -> None:
    """Give ``holder``'s permit back, if it holds one (``GIVE`` also hands free permits to the
    oldest waiting deliveries). Not giving it back (a crash) costs a lease."""
    k = rt.keys
    at = k.concurrency_bucket(who.name, who.key, who.kind)
    moved = rt.script("GIVE")(
        keys=[k.concurrency_index(at)],
        args=[k.concurrency(who.name, who.key, who.kind), n, repr(lease_s), holder],
    )
    if int(moved):
        rt.ring(at)

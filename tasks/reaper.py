"""The reaper: resends task messages that a crash lost, and never those that are only waiting.

Every message Baton sends is recorded in its run's in-flight hash until the task that took it
is done. kombu's Redis transport can lose a message outright when Redis dies between a worker
popping it and recording it as unacked; Celery then never redelivers it and the run would
hang. The reaper, a thread in every worker (one sweeps at a time, under a Redis lock), resends
such messages. Resending is safe (a task that already ran finds its journal entry or done
marker), but not free: a message re-sent while it waits in a long queue makes the queue longer,
so an overload would feed itself. A sweep therefore decides *lost* in three steps:

1. **Overdue.** A record is a candidate once it is a visibility timeout past due (a started
   task: past due plus its time limit). A sweep with no candidates reads nothing more.
2. **Present?** Only the queues that hold candidates are read: their lists page by page from
   the head (``LRANGE``, 1,000 at a time; new messages pushed on the head shift items towards
   pages not read yet and consumers pop the tail, so no item is skipped), then kombu's unacked
   hash (small: prefetch x workers) for what is still missing (a started task's message found
   there is kombu's to restore if its worker died), then the timer set (``tasks.timers``) for
   what is still missing: a delayed message's record is due when its timer is, so it is only
   ever a candidate there when no pump ran for a visibility timeout past its due time; then
   the concurrency limits' waiting lists (``TAKE``), where a call may wait for its permit far
   longer than a visibility timeout. Task
   ids come out of the raw envelopes with a regex on ``"id"`` keys (the body is base64, so
   only headers match; a key must follow ``{`` or ``,`` so ``root_id`` and ``parent_id``
   never do). Every in-flight
   record found waiting in a scanned queue, overdue or not, gets ``due = now`` through a
   compare-and-set script (a task that finished meanwhile deleted its record, and that stays
   deleted): a backlog costs one scan per visibility timeout, not one per sweep, although new
   messages go overdue all the time. The scan stops once every record of the queue is found.
3. **Absent twice.** A message moving from the list to a worker is briefly in neither place,
   so a candidate found nowhere is only a *suspect*; it is resent when a later sweep of the
   same reaper, at least one interval later, finds it absent again with the same due time.

Cost: O(live runs + in-flight records) per sweep as before, plus O(scanned backlog) about once
per visibility timeout for each backlogged queue. Limits: a queue's priority sub-lists are not
read (Baton sends priority 0 only); suspects live in the sweeping worker's memory, so a lost
message waits for one reaper's second sweep (each reaper sweeps once per interval).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

from celery import signals

from tasks import runs
from tasks.protocol import InflightRecord, Message, RunStatus
from tasks.runtime import Runtime, now

log = logging.getLogger("baton.reaper")

PAGE = 1000  # queue items per LRANGE, and runs or records per pipeline
BROKER_TRUST = 10  # visibility timeouts RabbitMQ is trusted to hold a message never started
# a header key exactly "id" (not root_id/parent_id), with or without kombu's spaces
_TASK_ID = re.compile(r'[{,]\s*"id"\s*:\s*"([^"]+)"')


class Inflight(NamedTuple):
    """One in-flight record as read, and whether it is overdue (lost unless found waiting).

    Atoms only, the raw form kept for compare-and-set and parsed again when needed: a sweep
    may hold 100,000 of these, and as many parsed records keep the garbage collector busy."""

    run_id: str
    task_id: str
    queue: str
    due: float
    raw: str
    overdue: bool = False
    started: bool = False  # delivered at least once (read for overdue records only)

    @classmethod
    def read(cls, run_id: str, raw: str) -> Inflight:
        record = InflightRecord.from_json(raw)
        return cls(run_id, record.message.task_id, record.message.queue, record.due, raw)

    def message(self) -> Message:
        return InflightRecord.from_json(self.raw).message


class Suspects:
    """Candidates found nowhere, by (run, task) -> (due, when first found absent)."""

    def __init__(self, gap: float) -> None:
        self.gap = gap
        self._seen: dict[tuple[str, str], tuple[float, float]] = {}

    def confirm(self, absent: list[Inflight]) -> list[Inflight]:
        """The ones also found absent, with the same due time, at least ``gap`` ago; the rest
        become suspects, and suspects no longer absent are forgotten."""
        at = time.monotonic()
        seen: dict[tuple[str, str], tuple[float, float]] = {}
        lost = []
        for c in absent:
            key = (c.run_id, c.task_id)
            prior = self._seen.get(key)
            if prior is None or prior[0] != c.due:  # new, or re-sent/re-stamped since
                seen[key] = (c.due, at)
            elif at - prior[1] >= self.gap:
                lost.append(c)
            else:
                seen[key] = prior
        self._seen = seen
        return lost


def sweep(rt: Runtime, lost_after: float, suspects: Suspects) -> int:
    """Resend the in-flight messages of running runs that are overdue by ``lost_after``
    seconds and found neither in their queue nor unacked, twice; returns how many."""
    at = now()
    records = _live_inflight(rt, at, at - lost_after)
    candidates = [c for c in records if c.overdue]
    trusted = _trusted(rt, candidates, at - lost_after * BROKER_TRUST)
    unsure = [c for c in candidates if c.task_id not in trusted]
    present = _present(rt, records, unsure) if unsure else set()
    _restamp(rt, [c for c in records if c.task_id in present], now())
    lost = suspects.confirm([c for c in candidates if c.task_id not in present | trusted])
    return _resend(rt, lost)


def _trusted(rt: Runtime, candidates: list[Inflight], since: float) -> set[str]:
    """RabbitMQ's queues cannot be read, and lose no message they confirmed: a message that
    never started is taken to wait there, up to ``BROKER_TRUST`` visibility timeouts past its
    due time (not restamped, so that bound holds). Past it, it counts as lost: a delivery Celery
    acked without Baton seeing it (killed at its hard limit while Redis was frozen) comes back,
    and a message that was only waiting that long is sent twice, which its task id makes a
    no-op."""
    if not rt.settings.broker.startswith("amqp"):
        return set()
    return {c.task_id for c in candidates if not c.started and c.due >= since}


def _live_inflight(rt: Runtime, at: float, cutoff: float) -> list[Inflight]:
    k = rt.keys
    live = sorted({run_id for b in k.all_buckets() for run_id in rt.redis.smembers(k.live(b))})
    records: list[Inflight] = []
    for i in range(0, len(live), PAGE):
        records += _inflight_of(rt, _running(rt, live[i : i + PAGE], at), cutoff)
    return records


def _running(rt: Runtime, run_ids: list[str], at: float) -> list[str]:
    """The runs still running; fails those past their deadline, settles ended ones (answers
    their parent, expires their keys, drops them from live)."""
    r, k = rt.redis, rt.keys
    pipe = r.pipeline(transaction=False)
    for run_id in run_ids:
        pipe.hmget(k.run(run_id), ["status", "deadline"])
    running = []
    for run_id, (status, deadline) in zip(run_ids, pipe.execute(), strict=True):
        if status is None:  # expired
            r.srem(k.live(k.bucket_of(run_id)), run_id)
        elif status != RunStatus.RUNNING:  # ended, its follow-up cut short by a crash
            runs.settle_ended(rt, run_id, RunStatus(status))
        elif deadline and at > float(deadline):
            runs.fail_past_deadline(rt, run_id)
        else:
            running.append(run_id)
    return running


def _inflight_of(rt: Runtime, run_ids: list[str], cutoff: float) -> list[Inflight]:
    """The runs' in-flight records, the overdue ones marked (the deliveries of past-due
    records are read to tell started tasks: at most two round trips)."""
    pipe = rt.redis.pipeline(transaction=False)
    for run_id in run_ids:
        pipe.hvals(rt.keys.inflight(run_id))
    records = [
        Inflight.read(run_id, raw)
        for run_id, raws in zip(run_ids, pipe.execute(), strict=True)
        for raw in raws
    ]
    past: dict[str, list[Inflight]] = {}
    for c in records:
        if c.due < cutoff:
            past.setdefault(c.run_id, []).append(c)
    if not past:
        return records
    for run_id, cs in past.items():
        pipe.hmget(rt.keys.deliveries(run_id), [c.task_id for c in cs])
    started = {
        c.task_id
        for cs, delivered in zip(past.values(), pipe.execute(), strict=True)
        for c, d in zip(cs, delivered, strict=True)
        if d is not None
    }
    return [
        c._replace(overdue=True, started=c.task_id in started)
        if _overdue(c, c.task_id in started, cutoff)
        else c
        for c in records
    ]


def _overdue(c: Inflight, started: bool, cutoff: float) -> bool:
    """Never started and past due; or started, yet past any time it could still be running
    (a task that died on an unexpected error is acked by Celery and never comes back)."""
    limit = (c.message().time_limit or 0.0) if started else 0.0
    return c.due + limit < cutoff


def _present(rt: Runtime, records: list[Inflight], candidates: list[Inflight]) -> set[str]:
    """Task ids found waiting: every record of a candidate's queue found in its list, then
    the candidates still missing found in the unacked hash."""
    by_queue: dict[str, set[str]] = {}
    for c in records:
        by_queue.setdefault(c.queue, set()).add(c.task_id)
    found: set[str] = set()
    amqp = rt.settings.broker.startswith("amqp")  # its queues: ``_trusted``
    broker = rt.broker_redis  # a Redis broker's lists: the state's own, or a separate one's
    for queue in sorted({c.queue for c in candidates} if not amqp else set()):
        waiting = _in_list(broker, rt.keys.queue(queue), by_queue[queue])
        if waiting:  # a backlog older than a visibility timeout: worth an operator's look
            log.info("queue %s: %d message(s) waiting, not lost", queue, len(waiting))
        found |= waiting
    missing = {c.task_id for c in candidates} - found
    if missing and not amqp:
        found |= _in_unacked(broker, rt.keys.unacked(), missing)
    missing -= found
    if missing and rt.settings.separate_broker:  # not yet published: still in the outbox
        found |= _in_outbox(rt, missing)
    missing -= found
    k = rt.keys
    for b in k.all_buckets():
        missing -= found
        if missing:  # held by a timer no pump released yet (every worker was down past due)
            found |= _in_timers(rt.redis, k.timers(b), missing)
        missing -= found
        if missing:  # waiting for a concurrency limit's permit (``TAKE``): not lost
            found |= _in_waiting(rt.redis, k.concurrency_index(b), missing)
    return found


def _in_outbox(rt: Runtime, wanted: set[str]) -> set[str]:
    """The ``wanted`` ids in an outbox or a relay's list (``tasks.relay``)."""
    k, found = rt.keys, set[str]()
    relays = sorted(rt.redis.smembers(k.relays()))
    for b in k.all_buckets():
        for key in [k.outbox(b), *(k.relaying(name, b) for name in relays)]:
            if len(found) == len(wanted):
                return found
            found |= _in_list(rt.redis, key, wanted - found)
    return found


def _in_list(r: Any, key: str, wanted: set[str]) -> set[str]:
    """The ``wanted`` ids in the list at ``key``, read head to tail until all are found."""
    found: set[str] = set()
    start = 0
    while len(found) < len(wanted):
        page = r.lrange(key, start, start + PAGE - 1)
        found |= _task_ids(page) & wanted
        if len(page) < PAGE:
            break
        start += PAGE
    return found


def _in_unacked(r: Any, key: str, wanted: set[str]) -> set[str]:
    """The ``wanted`` ids in kombu's unacked hash (values: ``[envelope, exchange, key]``)."""
    found: set[str] = set()
    for _, raw in r.hscan_iter(key, count=PAGE):
        found |= _task_ids([raw]) & wanted
        if len(found) == len(wanted):
            break
    return found


def _in_timers(r: Any, key: str, wanted: set[str]) -> set[str]:
    """The ``wanted`` ids in the timer set (members: ``queue key \\n envelope``)."""
    found: set[str] = set()
    for member, _ in r.zscan_iter(key, count=PAGE):
        found |= _task_ids([member]) & wanted
        if len(found) == len(wanted):
            break
    return found


def _in_waiting(r: Any, index: str, wanted: set[str]) -> set[str]:
    """The ``wanted`` ids in the concurrency limits' waiting lists (entries: ``task id \n
    queue key \n envelope``), every limit in use named by the index hash."""
    found: set[str] = set()
    for base in r.hkeys(index):
        found |= _in_list(r, f"{base}:waiting", wanted - found)
        if len(found) == len(wanted):
            break
    return found


def _task_ids(raws: Iterable[str]) -> set[str]:
    """The task ids named by raw kombu envelopes (or unacked entries holding one)."""
    return {task_id for raw in raws for task_id in _TASK_ID.findall(raw)}


def _restamp(rt: Runtime, waiting: list[Inflight], at: float) -> None:
    """Set ``due = at`` (the end of the scan that saw them waiting) on records, unless they
    changed since they were read."""
    stale = [c for c in waiting if c.due < at]
    if not stale:
        return
    script, k = rt.script("RESTAMP"), rt.keys
    by_bucket: dict[int, list[Inflight]] = {}  # a script's keys share a slot (a cluster)
    for c in stale:
        by_bucket.setdefault(k.bucket_of(c.run_id), []).append(c)
    for records in by_bucket.values():
        for i in range(0, len(records), PAGE):
            chunk = records[i : i + PAGE]
            args: list[str] = []
            for c in chunk:
                old = hashlib.sha1(c.raw.encode()).hexdigest()  # a checksum, not security
                args += [c.task_id, old, InflightRecord(at, c.message()).to_json()]
            script(keys=[k.inflight(c.run_id) for c in chunk], args=args)


def _resend(rt: Runtime, lost: list[Inflight]) -> int:
    by_run: dict[str, list[Message]] = {}
    for c in lost:
        by_run.setdefault(c.run_id, []).append(c.message())
    for run_id, messages in by_run.items():
        log.warning("run %s: resending %d lost message(s)", run_id, len(messages))
        rt.send(messages)
    return len(lost)


class Reaper(threading.Thread):
    """Sweeps every ``interval`` seconds while the worker lives."""

    def __init__(self, rt: Runtime, interval: float, lost_after: float) -> None:
        super().__init__(name="baton-reaper", daemon=True)
        self.rt, self.interval, self.lost_after = rt, interval, lost_after
        self.suspects = Suspects(gap=interval)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.sweep_once()
            except Exception:  # Redis down or restarting: try again next round
                log.warning("reaper sweep failed", exc_info=True)

    def sweep_once(self) -> int:
        """Sweep unless another worker is sweeping (the lock is held only while sweeping);
        returns how many messages were resent."""
        r, key, token = self.rt.redis, self.rt.keys.reaper_lock(), self.name + str(id(self))
        if not r.set(key, token, nx=True, ex=60):
            return 0
        try:
            return sweep(self.rt, self.lost_after, self.suspects)
        finally:
            if r.get(key) == token:
                r.delete(key)


def install(rt: Runtime) -> None:
    """Start a reaper in each worker's main process once it is ready."""
    vt = float(rt.settings.visibility_timeout)
    interval = min(10.0, max(1.0, vt / 4))

    def start(**_: Any) -> None:
        Reaper(rt, interval, lost_after=vt).start()

    signals.worker_ready.connect(start, weak=False)

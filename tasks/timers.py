"""Durable timers: delayed task messages wait in Redis, never in a broker's ETA.

A message sent with a countdown (a step or tool retry's backoff, the timer of a ``ctx.sleep``)
is framed without ETA and added by ``Runtime.send`` to the timer sorted set (``Keys.timers``;
score: when it is due, by Redis's clock; member: a :class:`~tasks.protocol.TimerEntry`), in the
same round trip as the sender's other writes. A pump thread in every worker's main process
releases the due entries every ``INTERVAL`` seconds with the RELEASE script: one atomic step
that pushes them onto their queue lists and removes them, so several pumps never release an
entry twice. The set lives in Redis (AOF), so a timer of hours or days survives restarts of
every worker and of Redis; no worker holds a delayed message in memory, so none can pass its
visibility timeout there.

``ctx.sleep(seconds)`` distributed parks the step like a tool call does (PARK counts the sleep's
call id as pending) and adds a :class:`~tasks.protocol.TimerAnswer` in the same round trip: once
due, RELEASE journals the call's answer (``None``) exactly as COMPLETE journals a tool's, and the
last answer resumes the step. One hop per wake-up (the resume), no task for the timer itself;
the call id journals the sleep, so a replay does not sleep again.

The pump also sweeps the concurrency limits about once a second (``RECLAIM``): a permit whose
lease expired (its holder's worker died) is handed to the oldest waiting call.

Every worker has a pump, so a big fleet would poll Redis as often as it has workers. A pump
therefore spaces its rounds by the number of live workers (the registry, ``tasks.heartbeat``)
so that the fleet together polls about ``POLLERS`` times per ``INTERVAL``, each pump at a random
phase (a jittered pause): Redis sees a bounded number of polls per second (about 200 with the
defaults), however many workers there are, while a due timer still waits about ``INTERVAL /
POLLERS`` on average for the next poll of some pump.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from tasks import heartbeat
from tasks.protocol import JournalEntry, TimerAnswer
from tasks.runtime import Runtime
from tasks.worker_threads import run_while_worker_lives

log = logging.getLogger("baton.timers")

INTERVAL = 0.02  # seconds between releases: what a timer may be late by, before its hop
POLLERS = 4  # about how many pumps of the whole fleet poll per INTERVAL (at least one: each)
FLEET_EVERY = 5.0  # seconds between reads of the fleet's size
BATCH = 500  # entries per script call (a full batch is followed at once by the next)
RECLAIM_EVERY = 1.0  # seconds between a pump's sweeps of expired concurrency permits


def add_sleep(
    rt: Runtime, pipe: Any, run_id: str, inv_id: str, call_id: str, seconds: float
) -> None:
    """On ``pipe`` (after the PARK that counts ``call_id`` as pending): answer the call with
    ``None`` in ``seconds``, by Redis's clock."""
    k = rt.keys
    answer = TimerAnswer(
        k.journal(run_id, inv_id),
        k.wait(run_id, inv_id),
        k.inflight(run_id),
        call_id,
        JournalEntry.ok(None).to_json(),
    )
    pipe.zadd(k.timers(k.bucket_of(run_id)), {answer.dump(): rt.server_time() + seconds})


class TimerPump(threading.Thread):
    """Releases due timers every ``interval`` seconds while the worker lives; logs (and keeps
    trying) while Redis is away."""

    def __init__(self, rt: Runtime, interval: float = INTERVAL, batch: int = BATCH) -> None:
        super().__init__(name="baton-timers", daemon=True)
        self.rt, self.interval, self.batch = rt, interval, batch
        self.stopped = threading.Event()

    def run(self) -> None:
        failing = False
        fleet, fleet_read, reclaimed = 1, 0.0, time.monotonic()
        while not self.stopped.wait(self.pause(fleet)):
            try:
                if time.monotonic() - fleet_read >= FLEET_EVERY:
                    fleet, fleet_read = self.fleet_size(), time.monotonic()
                self.release_once()
                if time.monotonic() - reclaimed >= RECLAIM_EVERY * max(1.0, fleet / POLLERS):
                    self.reclaim_once()
                    reclaimed = time.monotonic()
            except Exception:  # Redis down or restarting: the timers wait in Redis
                if not failing:
                    log.warning("timer pump: cannot release due timers", exc_info=True)
                failing = True
                self.stopped.wait(0.5)
                continue
            if failing:
                log.warning("timer pump: releasing due timers again")
                failing = False

    def pause(self, fleet: int) -> float:
        """Seconds until this pump's next round: ``interval`` alone, longer in a fleet of more
        than ``POLLERS`` workers, jittered so the pumps' rounds spread out in time."""
        return self.interval * max(1.0, fleet / POLLERS) * random.uniform(0.5, 1.5)

    def fleet_size(self) -> int:
        """How many workers (each with a pump) are live, by the registry; at least 1."""
        since = time.time() - heartbeat.TTL  # beats are stamped with the workers' clocks
        return max(1, int(self.rt.redis.zcount(self.rt.keys.workers(), since, "+inf")))

    def release_once(self) -> int:
        """Push the due timers onto their queues, a batch per script call, every bucket's
        (a full batch is followed at once by the next); returns how many."""
        k, total = self.rt.keys, 0
        buckets = list(k.all_buckets())
        while buckets and not self.stopped.is_set():
            released = self._each("RELEASE", k.timers, buckets, [self.batch])
            total += sum(released)
            buckets = [b for b, n in zip(buckets, released, strict=True) if n >= self.batch]
        return total

    def reclaim_once(self) -> int:
        """Take back the concurrency permits whose lease expired (their holder's worker died)
        and hand them to waiting calls (``RECLAIM``); returns how many were handed on."""
        k = self.rt.keys
        return sum(self._each("RECLAIM", k.concurrency_index, list(k.all_buckets()), []))

    def _each(
        self, name: str, key_of: Callable[[int], str], buckets: list[int], args: list[Any]
    ) -> list[int]:
        """Run script ``name`` on each bucket's key (one script on one Redis, one pipelined
        round trip per node on a cluster); ring the relays' bell for the buckets whose outbox
        it may have filled. The counts, in the buckets' order."""
        script, rt = self.rt.script(name), self.rt
        if len(buckets) == 1:
            counts = [int(script(keys=[key_of(buckets[0])], args=args))]
        else:
            pipe = rt.redis.pipeline(transaction=False)
            for b in buckets:
                script(keys=[key_of(b)], args=args, client=pipe)
            counts = [int(n) for n in pipe.execute()]
        rt.ring(*(b for b, n in zip(buckets, counts, strict=True) if n))
        return counts

    def stop(self) -> None:
        self.stopped.set()


def install(rt: Runtime) -> None:
    """Start a timer pump in each worker's main process once it is ready; stop on shutdown."""
    run_while_worker_lives(lambda _: TimerPump(rt))

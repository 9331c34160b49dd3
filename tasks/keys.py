"""Every Redis key Baton uses, in one place, under the configured prefix.

On one Redis (``buckets == 0``) keys carry no hash tag. On a Redis Cluster every key carries
the hash tag of a bucket (``{prefix}:{7}:run:<id>``), and what one write or Lua script touches
shares one bucket, hence one slot: a run tree's keys are in its root's bucket (a child run id
starts with its root's first ``TAG_CHARS`` characters, see :func:`child_run_id`), and so are
that bucket's index keys (``live``, ``runs``, ``timers``, ``outbox``) its writes touch. A rate
or concurrency limit's keys live in the bucket of the limit, with their own outbox and
concurrency index. Keys that no script shares (workers, metrics, schedules) need no bucket.
"""

from __future__ import annotations

import hashlib
import uuid
import zlib
from dataclasses import dataclass

TAG_CHARS = 4  # a run id's first characters, shared by its tree, choose its bucket


def bucket_hint(text: str) -> str:
    """``TAG_CHARS`` hex characters derived from ``text``: a root run id starting so lands in
    ``text``'s bucket (an idempotent submit's run shares its claim key's slot)."""
    return hashlib.blake2s(text.encode(), digest_size=4).hexdigest()[:TAG_CHARS]


def root_run_id(idempotency_key: str | None = None) -> str:
    """A new root run id; with an idempotency key, one in that key's bucket."""
    fresh = uuid.uuid4().hex
    if idempotency_key is None:
        return fresh
    return bucket_hint(idempotency_key) + fresh[TAG_CHARS:]


def child_run_id(parent: str, call_id: str) -> str:
    """A child run's id: deterministic (a redelivered step creates the same child) and starting
    with its parent's (hence its root's) first characters, so it shares the root's bucket."""
    tail = hashlib.blake2s(f"{parent}/{call_id}".encode(), digest_size=9).hexdigest()
    return parent[:TAG_CHARS] + tail


@dataclass(frozen=True)
class Keys:
    """Key names for a prefix. A run's keys share ``{prefix}:run:{id}`` so they expire together;
    ``buckets`` > 0 tags them for a Redis Cluster (see the module's docstring)."""

    prefix: str
    buckets: int = 0

    def bucket_of(self, run_id: str) -> int:
        """The bucket of a run (and of its whole tree): 0 on one Redis."""
        if not self.buckets:
            return 0
        return zlib.crc32(run_id[:TAG_CHARS].encode()) % self.buckets

    def limit_bucket(self, name: str) -> int:
        """The bucket of a rate or concurrency limit's keys (``name``: what the limit is of)."""
        if not self.buckets:
            return 0
        return zlib.crc32(name.encode()) % self.buckets

    def all_buckets(self) -> range:
        """Every bucket, for what scans an index (the reaper, the timer pumps, the relays)."""
        return range(max(self.buckets, 1))

    def _in(self, bucket: int) -> str:
        """The prefix of a bucket's keys: ``{prefix}`` untagged, ``{prefix}:{N}`` tagged."""
        return f"{self.prefix}:{{{bucket}}}" if self.buckets else self.prefix

    def _of(self, run_id: str) -> str:
        return self._in(self.bucket_of(run_id))

    def run(self, run_id: str) -> str:
        """Hash: workflow, status, input, result, error, parent, root, timestamps, attempts."""
        return f"{self._of(run_id)}:run:{run_id}"

    def events(self, run_id: str) -> str:
        """Stream: every event of the run, in order."""
        return f"{self._of(run_id)}:run:{run_id}:events"

    def store(self, run_id: str) -> str:
        """Hash: the run's context store (JSON values)."""
        return f"{self._of(run_id)}:run:{run_id}:store"

    def state_lock(self, run_id: str) -> str:
        """String: the token of the step editing the store (``edit_state``); expires."""
        return f"{self._of(run_id)}:run:{run_id}:store:lock"

    def journal(self, run_id: str, inv: str) -> str:
        """Hash: recorded answers of one step invocation's calls (call id -> JSON)."""
        return f"{self._of(run_id)}:run:{run_id}:j:{inv}"

    def spans(self, run_id: str) -> str:
        """List: a span per step delivery and tool attempt (JSON, in the order they ended)."""
        return f"{self._of(run_id)}:run:{run_id}:spans"

    def wait(self, run_id: str, inv: str) -> str:
        """Hash: a suspended invocation: pending call count and how to resume it."""
        return f"{self._of(run_id)}:run:{run_id}:w:{inv}"

    def buffer(self, run_id: str, buffer_id: str) -> str:
        """List: events buffered by ``collect_events``."""
        return f"{self._of(run_id)}:run:{run_id}:buf:{buffer_id}"

    def counts(self, run_id: str, buffer_id: str) -> str:
        """Hash: per event type, how many events a collect buffer holds."""
        return f"{self._of(run_id)}:run:{run_id}:cnt:{buffer_id}"

    def done(self, run_id: str) -> str:
        """Hash: finished invocations -> the messages they sent (re-sent on redelivery)."""
        return f"{self._of(run_id)}:run:{run_id}:done"

    def deliveries(self, run_id: str) -> str:
        """Hash: task id -> how often that message was delivered (bounds lost-worker loops;
        a message with no entry never started)."""
        return f"{self._of(run_id)}:run:{run_id}:dlv"

    def inflight(self, run_id: str) -> str:
        """Hash: task id -> [due time, message] for every message sent and not yet finished.

        The reaper resends what stays here past the visibility timeout (a message lost in a
        crash), and cancel revokes what is here."""
        return f"{self._of(run_id)}:run:{run_id}:inflight"

    def live(self, bucket: int = 0) -> str:
        """Set: ids of a bucket's runs that are running (what the reaper looks at)."""
        return f"{self._in(bucket)}:live"

    def workers(self) -> str:
        """Sorted set: live workers' names by their last heartbeat (``tasks.heartbeat``)."""
        return f"{self.prefix}:workers"

    def worker(self, name: str) -> str:
        """String: a live worker's record (JSON); expires unless its heartbeat renews it."""
        return f"{self.prefix}:worker:{name}"

    def metrics(self) -> str:
        """Hash: step and tool duration histograms and outcome counts, summed over every
        process (``tasks.metric_counts``); only grows, never expires (bounded by names)."""
        return f"{self.prefix}:metrics"

    def timers(self, bucket: int = 0) -> str:
        """Sorted set: delayed task messages (``TimerEntry``) by due time (Redis's clock), pushed
        onto their queue lists by the timer pump (``tasks.timers``) once due."""
        return f"{self._in(bucket)}:timers"

    def _limits(self, kind: str, bucket: int = 0) -> str:
        """Where a kind's limits live: a tool's under ``limit:``, a step's under
        ``limit:step:`` (no tool name can make a tool's key start so)."""
        at = self._in(bucket)
        return f"{at}:limit:" if kind == "tool" else f"{at}:limit:{kind}:"

    def rate_bucket(self, tool: str, key: str, kind: str = "tool") -> int:
        """The bucket of a rate limit's keys (its state and its reservations)."""
        return self.limit_bucket(f"rate:{kind}:{tool}:{key}")

    def rate(self, tool: str, key: str, kind: str = "tool") -> str:
        """Hash: a rate-limited tool's or step's (and key's) next free slot, lateness absorbed
        and last start, Redis's clock (``ACQUIRE``); expires an hour after its last slot."""
        return f"{self._limits(kind, self.rate_bucket(tool, key, kind))}rate:{tool}:{key}"

    def reservation(
        self, run_id: str, call_id: str, attempt: int, kind: str = "tool", bucket: int = 0
    ) -> str:
        """String: the slot ``ACQUIRE`` gave one attempt of a rate-limited call (a step's: of
        an invocation; a redelivery or its delayed resend is not charged again); expires an
        hour after the slot. In the bucket of its rate limit (``rate_bucket``)."""
        return f"{self._limits(kind, bucket)}res:{run_id}:{call_id}:{attempt}"

    def concurrency_bucket(self, tool: str, key: str, kind: str = "tool") -> int:
        """The bucket of a concurrency limit's keys, its waiting messages' outbox and index."""
        return self.limit_bucket(f"conc:{kind}:{tool}:{key}")

    def concurrency(self, tool: str, key: str, kind: str = "tool") -> str:
        """The base of a concurrency-limited tool's or step's (and key's) keys (``TAKE``,
        ``GIVE``): ``base:holders`` (sorted set: holding task id -> lease expiry, Redis's
        clock) and ``base:waiting`` (list: ``task id \n queue key \n envelope``, FIFO)."""
        at = self._limits(kind, self.concurrency_bucket(tool, key, kind))
        return f"{at}conc:{tool}:{key}"

    def concurrency_index(self, bucket: int = 0) -> str:
        """Hash: every concurrency limit's base with holders or waiting calls -> ``"N lease"``
        (swept by ``RECLAIM``, read by the reaper)."""
        return f"{self._in(bucket)}:limit:conc:index"

    def reaper_lock(self) -> str:
        return f"{self.prefix}:reaper"

    def waiters(self, run_id: str) -> str:
        """Hash on a root run: steps (of it or its children) waiting for an external event."""
        return f"{self._of(run_id)}:run:{run_id}:waiters"

    def canvas_claim(self, run_id: str) -> str:
        """String: the process continuing a run's Celery canvas (``tasks.canvas_end``)."""
        return f"{self._of(run_id)}:run:{run_id}:canvas"

    def children(self, run_id: str) -> str:
        """Set: child run ids (cancelled with the parent)."""
        return f"{self._of(run_id)}:run:{run_id}:children"

    def idempotency(self, key: str) -> str:
        """String: the run an idempotency key started, in that run's bucket (``root_run_id``)."""
        return f"{self._in(self.bucket_of(bucket_hint(key)))}:idem:{key}"

    def schedules(self) -> str:
        """Hash: schedule name -> its definition (JSON, ``tasks.protocol.schedules``); in
        bucket 0 with every schedule's runs (one transaction removes both)."""
        return f"{self._in(0)}:schedules"

    def schedule_runs(self, name: str) -> str:
        """Sorted set: the runs a schedule started, by tick (trimmed to retention)."""
        return f"{self._in(0)}:schedule:{name}:runs"

    def runs(self, bucket: int = 0) -> str:
        """Sorted set: every run id of a bucket by creation time."""
        return f"{self._in(bucket)}:runs"

    def dead_letters(self) -> str:
        """List: messages that were rejected (undecodable, unknown task, invalid)."""
        return f"{self.prefix}:dead"

    def broker_prefix(self) -> str:
        """kombu's ``global_keyprefix``: every broker key (queue lists, unacked hash) under it."""
        return f"{self.prefix}:q:"

    def outbox(self, bucket: int = 0) -> str:
        """List: framed messages for a separate broker (``tasks.relay``), pushed with the state
        they belong to and published by a relay; the oldest at the tail."""
        return f"{self._in(bucket)}:outbox"

    def relaying(self, relay: str, bucket: int = 0) -> str:
        """List: the entries one relay took from a bucket's outbox and has not yet seen
        confirmed by the broker (put back on that outbox if the relay dies)."""
        return f"{self._in(bucket)}:outbox:relaying:{relay}"

    def bucket_count(self) -> str:
        """String (cluster only): the bucket count the cluster's keys were written with; a
        worker configured otherwise would look for runs where they are not, so it refuses to
        start (``tasks.worker``)."""
        return f"{self._in(0)}:buckets"

    def outbox_bell(self) -> str:
        """List (cluster only): bucket numbers whose outbox got entries, pushed after the write
        that filled it, so a relay wakes at once (``BRPOP``); only a hint, since no write can
        ring it atomically across slots: relays also sweep every bucket now and then."""
        return f"{self.prefix}:outbox:bell"

    def relays(self) -> str:
        """Set: the names of the relays that have checked in (``tasks.relay``)."""
        return f"{self.prefix}:outbox:relays"

    def relay_alive(self, relay: str) -> str:
        """String with a short expiry: the relay ``relay`` is alive (its list is its own)."""
        return f"{self.prefix}:outbox:alive:{relay}"

    def queue(self, name: str) -> str:
        """List: a Celery queue's waiting messages (kombu's Redis transport)."""
        return f"{self.broker_prefix()}{name}"

    def unacked(self) -> str:
        """Hash: messages taken by a worker and not yet acknowledged (kombu's)."""
        return f"{self.broker_prefix()}unacked"

    def run_keys(self, run_id: str) -> list[str]:
        """The fixed per-run keys (expired together on completion)."""
        return [
            self.run(run_id),
            self.events(run_id),
            self.spans(run_id),
            self.store(run_id),
            self.state_lock(run_id),
            self.done(run_id),
            self.deliveries(run_id),
            self.inflight(run_id),
            self.waiters(run_id),
            self.children(run_id),
        ]

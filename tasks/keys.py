"""Every Redis key Baton uses, in one place, under the configured prefix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key names for a prefix. A run's keys share ``{prefix}:run:{id}`` so they expire together."""

    prefix: str

    def run(self, run_id: str) -> str:
        """Hash: workflow, status, input, result, error, parent, root, timestamps, attempts."""
        return f"{self.prefix}:run:{run_id}"

    def events(self, run_id: str) -> str:
        """Stream: every event of the run, in order."""
        return f"{self.prefix}:run:{run_id}:events"

    def store(self, run_id: str) -> str:
        """Hash: the run's context store (JSON values)."""
        return f"{self.prefix}:run:{run_id}:store"

    def state_lock(self, run_id: str) -> str:
        """String: the token of the step editing the store (``edit_state``); expires."""
        return f"{self.prefix}:run:{run_id}:store:lock"

    def journal(self, run_id: str, inv: str) -> str:
        """Hash: recorded answers of one step invocation's calls (call id -> JSON)."""
        return f"{self.prefix}:run:{run_id}:j:{inv}"

    def spans(self, run_id: str) -> str:
        """List: a span per step delivery and tool attempt (JSON, in the order they ended)."""
        return f"{self.prefix}:run:{run_id}:spans"

    def wait(self, run_id: str, inv: str) -> str:
        """Hash: a suspended invocation: pending call count and how to resume it."""
        return f"{self.prefix}:run:{run_id}:w:{inv}"

    def buffer(self, run_id: str, buffer_id: str) -> str:
        """List: events buffered by ``collect_events``."""
        return f"{self.prefix}:run:{run_id}:buf:{buffer_id}"

    def counts(self, run_id: str, buffer_id: str) -> str:
        """Hash: per event type, how many events a collect buffer holds."""
        return f"{self.prefix}:run:{run_id}:cnt:{buffer_id}"

    def done(self, run_id: str) -> str:
        """Hash: finished invocations -> the messages they sent (re-sent on redelivery)."""
        return f"{self.prefix}:run:{run_id}:done"

    def deliveries(self, run_id: str) -> str:
        """Hash: task id -> how often that message was delivered (bounds lost-worker loops;
        a message with no entry never started)."""
        return f"{self.prefix}:run:{run_id}:dlv"

    def inflight(self, run_id: str) -> str:
        """Hash: task id -> [due time, message] for every message sent and not yet finished.

        The reaper resends what stays here past the visibility timeout (a message lost in a
        crash), and cancel revokes what is here."""
        return f"{self.prefix}:run:{run_id}:inflight"

    def live(self) -> str:
        """Set: ids of runs that are running (what the reaper looks at)."""
        return f"{self.prefix}:live"

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

    def timers(self) -> str:
        """Sorted set: delayed task messages (``TimerEntry``) by due time (Redis's clock), pushed
        onto their queue lists by the timer pump (``tasks.timers``) once due."""
        return f"{self.prefix}:timers"

    def _limits(self, kind: str) -> str:
        """Where a kind's limits live: a tool's under ``limit:``, a step's under
        ``limit:step:`` (no tool name can make a tool's key start so)."""
        return f"{self.prefix}:limit:" if kind == "tool" else f"{self.prefix}:limit:{kind}:"

    def rate(self, tool: str, key: str, kind: str = "tool") -> str:
        """Hash: a rate-limited tool's or step's (and key's) next free slot, lateness absorbed
        and last start, Redis's clock (``ACQUIRE``); expires an hour after its last slot."""
        return f"{self._limits(kind)}rate:{tool}:{key}"

    def reservation(self, run_id: str, call_id: str, attempt: int, kind: str = "tool") -> str:
        """String: the slot ``ACQUIRE`` gave one attempt of a rate-limited call (a step's: of
        an invocation; a redelivery or its delayed resend is not charged again); expires an
        hour after the slot."""
        return f"{self._limits(kind)}res:{run_id}:{call_id}:{attempt}"

    def concurrency(self, tool: str, key: str, kind: str = "tool") -> str:
        """The base of a concurrency-limited tool's or step's (and key's) keys (``TAKE``,
        ``GIVE``): ``base:holders`` (sorted set: holding task id -> lease expiry, Redis's
        clock) and ``base:waiting`` (list: ``task id \n queue key \n envelope``, FIFO)."""
        return f"{self._limits(kind)}conc:{tool}:{key}"

    def concurrency_index(self) -> str:
        """Hash: every concurrency limit's base with holders or waiting calls -> ``"N lease"``
        (swept by ``RECLAIM``, read by the reaper)."""
        return f"{self.prefix}:limit:conc:index"

    def reaper_lock(self) -> str:
        return f"{self.prefix}:reaper"

    def waiters(self, run_id: str) -> str:
        """Hash on a root run: steps (of it or its children) waiting for an external event."""
        return f"{self.prefix}:run:{run_id}:waiters"

    def canvas_claim(self, run_id: str) -> str:
        """String: the process continuing a run's Celery canvas (``tasks.canvas_end``)."""
        return f"{self.prefix}:run:{run_id}:canvas"

    def children(self, run_id: str) -> str:
        """Set: child run ids (cancelled with the parent)."""
        return f"{self.prefix}:run:{run_id}:children"

    def idempotency(self, key: str) -> str:
        return f"{self.prefix}:idem:{key}"

    def schedules(self) -> str:
        """Hash: schedule name -> its definition (JSON, ``tasks.protocol.schedules``)."""
        return f"{self.prefix}:schedules"

    def schedule_runs(self, name: str) -> str:
        """Sorted set: the runs a schedule started, by tick (trimmed to retention)."""
        return f"{self.prefix}:schedule:{name}:runs"

    def runs(self) -> str:
        """Sorted set: every run id by creation time."""
        return f"{self.prefix}:runs"

    def dead_letters(self) -> str:
        """List: messages that were rejected (undecodable, unknown task, invalid)."""
        return f"{self.prefix}:dead"

    def broker_prefix(self) -> str:
        """kombu's ``global_keyprefix``: every broker key (queue lists, unacked hash) under it."""
        return f"{self.prefix}:q:"

    def outbox(self) -> str:
        """List: framed messages for a separate broker (``tasks.relay``), pushed with the state
        they belong to and published by a relay; the oldest at the tail."""
        return f"{self.prefix}:outbox"

    def relaying(self, relay: str) -> str:
        """List: the outbox entries one relay took and has not yet seen confirmed by the
        broker (put back on the outbox if that relay dies)."""
        return f"{self.prefix}:outbox:relaying:{relay}"

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

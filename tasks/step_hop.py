"""One hop of a step task: one pipelined read before the step runs, one pipelined write after.

The read (:func:`load`) also decides whether this delivery has anything to do: not for a
duplicate, an ended run, an invocation already finished (it resends what that sent), a run
past its deadline or a message whose worker keeps dying. The write (:class:`Hop`) gathers log
entries, state and the messages to send, and commits them in one round trip.
"""

from __future__ import annotations

from typing import Any

from tasks import runs
from tasks.metric_counts import observe
from tasks.protocol import (
    CallAddress,
    LogKind,
    Message,
    RunStatus,
    Span,
    dump_messages,
    journal_fields,
    log_fields,
    parse_journal_hash,
    parse_messages,
)
from tasks.runtime import MAX_DELIVERIES, Runtime, now
from tasks.step_delivery import Delivery, Loaded
from workflows._engine.backend import Invocation
from workflows.errors import ErrorInfo


def load(d: Delivery) -> Loaded | None:
    """Read run status, journal and done marker in one round trip; None: nothing to do."""
    k = d.rt.keys
    pipe = d.rt.redis.pipeline(transaction=False)
    pipe.hmget(k.run(d.run_id), ["status", "root", "parent", "deadline"])
    pipe.hgetall(k.journal(d.run_id, d.args.inv_id))
    pipe.hget(k.done(d.run_id), d.args.inv_id)
    # per message: a redelivery (or a reaper resend) keeps the task id, a resume does not
    pipe.hincrby(k.deliveries(d.run_id), d.task_id or d.args.inv_id, 1)
    pipe.hexists(k.inflight(d.run_id), d.task_id or "")
    (status, root, parent_field, deadline), raw_journal, done, delivered, in_flight = pipe.execute()
    parent = CallAddress.from_field(parent_field)
    if d.task_id is not None and not in_flight and status == RunStatus.RUNNING:
        return None  # an earlier delivery finished this message: a duplicate
    if status != RunStatus.RUNNING:
        runs.expire_deliveries(d.rt, d.run_id)
        if status is not None and parent is not None:
            runs.reanswer_parent(d.rt, d.run_id, RunStatus(status), parent)
        return None
    if done is not None:
        _resend_outputs(d, done)
        return None
    if deadline and now() > float(deadline):
        runs.fail_past_deadline(d.rt, d.run_id, parent)
        return None
    if delivered > MAX_DELIVERIES:
        info = ErrorInfo(
            type="StepFailedError",
            retryable=False,
            details={"step": d.step.qualname},
            message=f"step {d.step.qualname} was delivered {delivered} times "
            "(its worker keeps dying); giving up",
        )
        runs.fail_run(d.rt, d.run_id, info, parent=parent)
        return None
    journal, effects = parse_journal_hash(raw_journal)
    return Loaded(journal, effects, root or d.run_id, parent, bool(raw_journal))


def _resend_outputs(d: Delivery, done: str) -> None:
    """A redelivered, already finished step: resend what it sent, unless already done."""
    messages = parse_messages(done)
    if not messages:
        return
    inv_ids = [m.args.inv_id for m in messages]
    finished = d.rt.redis.hmget(d.rt.keys.done(d.run_id), inv_ids)
    d.rt.send([m for m, f in zip(messages, finished, strict=True) if f is None])


def finish_message(d: Delivery, span: Span | None = None) -> None:
    """A hop with nothing else to write (but maybe its span): only the message is finished."""
    pipe = d.rt.redis.pipeline(transaction=False)
    if span is not None:
        write_span(d.rt, pipe, span)
    d.rt.finished(pipe, d.run_id, d.task_id)
    pipe.execute()


def write_span(rt: Runtime, pipe: Any, span: Span) -> None:
    """One command, on a pipeline about to be sent anyway: spans cost no round trip."""
    pipe.rpush(rt.keys.spans(span.run), span.to_json())
    observe(rt, span)  # in memory: flushed to the metrics hash by a thread, off the hop path


class Hop:
    """One hop's writes, on one pipeline: log entries, state, then the messages, sent together
    in one round trip by :meth:`commit`."""

    def __init__(self, rt: Runtime, run_id: str, root: str, task_id: str | None) -> None:
        self.rt, self.run_id, self.root, self.task_id = rt, run_id, root, task_id
        self.pipe = rt.redis.pipeline(transaction=False)
        self.messages: list[Message] = []
        self.rings = False  # a script on the pipeline may push to the outbox (``PARK``)

    def log(self, kind: LogKind, payload: str) -> None:
        """Log an entry; what a user should see (streamed, input requests) goes to the root
        run's stream too, marked with the run it came from."""
        self.pipe.xadd(self.rt.keys.events(self.run_id), log_fields(kind, payload))
        if kind in (LogKind.STREAM, LogKind.INPUT) and self.root != self.run_id:
            self.pipe.xadd(self.rt.keys.events(self.root), log_fields(kind, payload, self.run_id))

    def persist(self, inv: Invocation, loaded: set[str]) -> None:
        """Write the invocation's journal for its next attempt or resume: the entries it did not
        load (those are stored already) and its effects."""
        key = self.rt.keys.journal(self.run_id, inv.id)
        self.pipe.hset(key, mapping=journal_fields(inv.journal, inv.effects_done, loaded))
        self.pipe.expire(key, self.rt.settings.retention_seconds)

    def mark_done(self, inv_id: str) -> None:
        """The invocation is finished: remember what it sent, so a redelivery resends it."""
        self.pipe.hset(self.rt.keys.done(self.run_id), inv_id, dump_messages(self.messages))

    def commit(self, span: Span | None = None, finish: bool = True) -> list[Any]:
        """Send it all, with the delivery's span; the replies of the pipeline's commands.
        ``finish=False``: the message stays in flight (the caller finishes it later)."""
        if span is not None:
            write_span(self.rt, self.pipe, span)
        # the message is finished last: if Redis loses the tail of this round trip (a crash
        # under AOF everysec), a message still in flight is delivered again and resends
        self.rt.send(self.messages, self.pipe)
        if finish:
            self.rt.finished(self.pipe, self.run_id, self.task_id)
        replies = list(self.pipe.execute())
        if self.messages or self.rings:  # the relays' bell, after the write (``Runtime.ring``)
            self.rt.ring(self.rt.keys.bucket_of(self.run_id))
        return replies

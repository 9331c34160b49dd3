"""What a step did, written into its hop: the events it sent or streamed, then its output (and
the run's end) when it completed, or its parked calls when it suspended.

A failed attempt is :mod:`tasks.step_failure`'s; everything here is the step going on.
"""

from __future__ import annotations

from dataclasses import replace

from tasks import runs, timers
from tasks.attempts import Attempt
from tasks.backend import RedisBackend
from tasks.keys import child_run_id
from tasks.protocol import (
    CallAddress,
    LogKind,
    Message,
    SpanOutcome,
    ToolArgs,
    WaiterRecord,
    compact,
)
from tasks.step_delivery import Delivery, Loaded
from tasks.step_hop import Hop
from workflows._engine import core
from workflows._engine.backend import Invocation
from workflows._engine.executor import Completed, Suspended
from workflows._engine.records import (
    ChildCall,
    EffectKind,
    ParkedCall,
    SleepCall,
    ToolCall,
    WaitCall,
)
from workflows.codec import decode_event, dumps
from workflows.events import InputRequiredEvent, StopEvent
from workflows.tools import get_tool


def effects_hop(d: Delivery, backend: RedisBackend, inv: Invocation) -> Hop:
    """A hop that already carries the step's effects: sent events (routed) and streamed."""
    hop = Hop(d.rt, d.run_id, backend.root, d.task_id)
    for effect in backend.effects:
        streamed = effect.kind is EffectKind.STREAM
        hop.log(LogKind.STREAM if streamed else LogKind.EVENT, dumps(effect.event))
        if not streamed:
            deliveries = core.route_sent(d.cls.spec, inv.id, effect.pos, effect.event, effect.step)
            hop.messages += d.deliver(deliveries)
    return hop


def completed(d: Delivery, hop: Hop, inv: Invocation, outcome: Completed, state: Loaded) -> Attempt:
    """The step returned: log its output, send what accepts it, end the run on a StopEvent
    and mark the invocation done, all in one round trip."""
    for event in outcome.emitted.events:
        if isinstance(event, StopEvent):
            continue  # logged once, as the run's end, by the FINISH script
        kind = LogKind.INPUT if isinstance(event, InputRequiredEvent) else LogKind.EVENT
        hop.log(kind, dumps(event))
    finish: core.CompleteRun | None = None
    for command in core.react_to_output(d.cls.spec, inv.id, outcome.emitted):
        if isinstance(command, core.Dispatch):
            hop.messages += d.deliver(command.deliveries)
        elif isinstance(command, core.CompleteRun):
            finish = command
    # the run's end (status + StopEvent, atomically) rides in the same round trip as the
    # done marker: a redelivery after a crash finds both, and re-answers the parent
    end_at = len(hop.pipe)
    answer = None
    if finish is not None:
        answer = runs.finish_run(d.rt, d.run_id, finish.result, finish.stop_event, hop.pipe)
    hop.mark_done(inv.id)
    # none was stored or written (by this run's calls, edits or collects): none to drop
    if state.journal_stored or inv.journal or inv.effects_done:
        hop.pipe.delete(d.rt.keys.journal(d.run_id, inv.id))
    span = d.span(SpanOutcome.COMPLETED)
    replies = hop.commit(span)
    if answer is not None:
        runs.after_end(d.rt, d.run_id, replies[end_at], state.parent, answer)
    return Attempt(span)


def suspended(
    d: Delivery, hop: Hop, inv: Invocation, outcome: Suspended, loaded: set[str]
) -> Attempt:
    """The step waits on calls: keep its journal, send its tool calls, start its children,
    register its waiters, and park it (PARK) to be resent by the last answer."""
    k = d.rt.keys
    hop.persist(inv, loaded)
    calls = [c for c in outcome.calls if c.call_id not in inv.journal]
    children: list[ChildCall] = []
    sleeps: list[SleepCall] = []
    for call in calls:
        if isinstance(call, ToolCall):
            hop.messages.append(_tool_message(d, inv, call))
        elif isinstance(call, ChildCall):
            children.append(call)
        elif isinstance(call, SleepCall):
            sleeps.append(call)
        else:
            _register_waiter(d, hop, inv, call)
    args = replace(d.args, first_started=d.carried_start())
    resume = d.rt.placement.step_message(d.cls.name, d.step.name, args)
    queue, envelope = d.rt.publisher.frame(resume)
    # PARK runs before the calls are pushed, in the same round trip: it counts them all
    # as pending unless every answer is already journaled (then it resumes the step now).
    d.rt.script("PARK")(
        keys=[
            k.journal(d.run_id, inv.id),
            k.wait(d.run_id, inv.id),
            k.inflight(d.run_id),
            queue,
        ],
        args=[
            resume.to_json(),
            d.rt.settings.retention_seconds,
            resume.task_id,
            envelope,
            *_ids(calls),
        ],
        client=hop.pipe,
    )
    hop.rings = True  # PARK sends the resume if every call is answered already
    for sleep in sleeps:  # after PARK: a timer due at once must find the call pending
        timers.add_sleep(d.rt, hop.pipe, d.run_id, inv.id, sleep.call_id, sleep.seconds)
    for child in children:
        runs.create_run(
            d.rt,
            child.workflow,
            child_run_id(d.run_id, child.call_id),
            decode_event(child.start),
            parent=CallAddress(d.run_id, inv.id, child.call_id),
            root=hop.root,
            pipe=hop.pipe,
        )
    span = d.span(SpanOutcome.SUSPENDED)
    if sleeps:  # what the run's state shows while it sleeps (``queries.sleeping_until``)
        longest = max(s.seconds for s in sleeps)
        span = replace(span, error=f"sleeping {longest:g}s", until=span.end + longest)
    hop.commit(span)
    return Attempt(span)


def _tool_message(d: Delivery, inv: Invocation, call: ToolCall) -> Message:
    args = ToolArgs(d.run_id, inv.id, call.call_id, call.args)
    return d.rt.placement.tool_message(get_tool(call.tool), args)


def _register_waiter(d: Delivery, hop: Hop, inv: Invocation, call: WaitCall) -> None:
    waiter = WaiterRecord(CallAddress(d.run_id, inv.id, call.call_id), call.tag, call.requirements)
    hop.pipe.hset(d.rt.keys.waiters(hop.root), waiter.field, waiter.to_json())
    if call.waiter is not None:
        hop.log(LogKind.INPUT, compact(call.waiter))


def _ids(calls: list[ParkedCall]) -> list[str]:
    return [c.call_id for c in calls]

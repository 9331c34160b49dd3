"""The body of every step task: load, replay, run, then persist and dispatch in one go.

Choreography: a step task persists its output events and sends the steps that accept them;
no process holds a run in memory. Per hop: one pipelined read, then one pipelined write that
also pushes the successor messages (a parked step's answers or a run's end may cost a few
more). A suspended step frees its worker; the last answer to its calls resends it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from tasks import runs
from tasks.backend import RedisBackend
from tasks.protocol import (
    CallAddress,
    LogKind,
    Message,
    RetryNote,
    RunStatus,
    StepArgs,
    ToolArgs,
    WaiterRecord,
    compact,
    dump_messages,
    journal_fields,
    log_fields,
    parse_journal_hash,
    parse_messages,
)
from tasks.runtime import MAX_DELIVERIES, Runtime, now
from workflows._engine import core
from workflows._engine.backend import Invocation
from workflows._engine.executor import Completed, Failed, Suspended, execute
from workflows._engine.records import (
    ChildCall,
    EffectKind,
    Journal,
    ParkedCall,
    ToolCall,
    WaitCall,
)
from workflows.codec import decode_event, dumps
from workflows.context import Context, state_type_of
from workflows.errors import ConfigurationError, ErrorInfo, WorkflowTimeoutError, error_info
from workflows.events import Event, InputRequiredEvent, StopEvent
from workflows.factories import workflow_instance
from workflows.tools import get_tool
from workflows.workflow import require_workflow


@dataclass
class Loaded:
    """What a step needs from Redis before it runs (read in one round trip)."""

    journal: Journal
    effects_done: dict[str, int]
    root: str
    parent: CallAddress | None


class Hop:
    """One hop's writes, on one pipeline: log entries, state, then the messages, sent together
    in one round trip by :meth:`commit`."""

    def __init__(self, rt: Runtime, run_id: str, root: str, task_id: str | None) -> None:
        self.rt, self.run_id, self.root, self.task_id = rt, run_id, root, task_id
        self.pipe = rt.redis.pipeline(transaction=False)
        self.messages: list[Message] = []

    def log(self, kind: LogKind, payload: str) -> None:
        """Log an entry; what a user should see (streamed, input requests) goes to the root
        run's stream too, marked with the run it came from."""
        self.pipe.xadd(self.rt.keys.events(self.run_id), log_fields(kind, payload))
        if kind in (LogKind.STREAM, LogKind.INPUT) and self.root != self.run_id:
            self.pipe.xadd(self.rt.keys.events(self.root), log_fields(kind, payload, self.run_id))

    def mark_done(self, inv_id: str) -> None:
        """The invocation is finished: remember what it sent, so a redelivery resends it."""
        self.pipe.hset(self.rt.keys.done(self.run_id), inv_id, dump_messages(self.messages))

    def commit(self) -> list[Any]:
        # the message is finished last: if Redis loses the tail of this round trip (a crash
        # under AOF everysec), a message still in flight is delivered again and resends
        self.rt.send(self.messages, self.pipe)
        self.rt.finished(self.pipe, self.run_id, self.task_id)
        return list(self.pipe.execute())


class StepTask:
    """One delivery of one step invocation."""

    def __init__(
        self, rt: Runtime, workflow: str, step: str, args: StepArgs, task_id: str | None = None
    ) -> None:
        self.rt, self.k = rt, rt.keys
        self.task_id = task_id
        self.cls = require_workflow(workflow)
        self.step = self.cls.spec.steps[step]
        self.args = args
        self.run_id = args.run_id
        # when this delivery began (wall clock: the next attempt may run on another machine)
        self.started = time.time()

    def run(self) -> None:
        state = self._load()
        if state is None:
            self._finish_message()
            return
        try:
            workflow = workflow_instance(self.cls)
        except ConfigurationError as exc:  # its factory failed: this attempt cannot run
            self._cannot_build(exc, state)
            return
        inv = self._invocation(state)
        loaded = set(state.journal)
        backend = RedisBackend(self.rt, self.run_id, state.root, state_type_of(self.cls))
        outcome = self.rt.run(execute(workflow, self.step, Context(backend, inv), inv))
        hop = self._hop(backend, inv)
        if isinstance(outcome, Completed):
            self._completed(hop, inv, outcome, state.parent)
        elif isinstance(outcome, Suspended):
            self._suspended(hop, inv, outcome, loaded)
        else:
            self._failed(hop, inv, outcome, loaded, state.parent)

    def _finish_message(self) -> None:
        pipe = self.rt.redis.pipeline(transaction=False)
        self.rt.finished(pipe, self.run_id, self.task_id)
        pipe.execute()

    def _cannot_build(self, error: ConfigurationError, state: Loaded) -> None:
        """The workflow's factory failed: a failure of this attempt, retried as the step's
        policy says of what the factory raised (it may pass: a model server briefly down).
        Else the run fails with the ConfigurationError naming the workflow (no error handler
        step: it would need the same instance). The run ends before the message is finished:
        a crash in between leaves a redelivery that finds the run ended, never a live run."""
        inv = self._invocation(state)
        # the policy judges what the factory raised; a wrong type (no cause) is never retried
        cause = error.__cause__ if isinstance(error.__cause__, Exception) else error
        retry = self._retry_command(inv, cause)
        if retry is None:
            info = error.to_info(self.args.attempt)
            runs.fail_run(self.rt, self.run_id, info, parent=state.parent)
            self._finish_message()
            return
        hop = Hop(self.rt, self.run_id, state.root, self.task_id)
        self._retry(hop, inv, error, retry, set(state.journal))
        hop.commit()

    def _retry_command(self, inv: Invocation, error: BaseException) -> core.RetryStep | None:
        commands = core.react_to_failure(
            self.cls.spec, self.step, inv.id, inv.event, error, inv.attempt, self._elapsed()
        )
        return next((c for c in commands if isinstance(c, core.RetryStep)), None)

    def _load(self) -> Loaded | None:
        """Read run status, journal and done marker in one round trip; None: nothing to do."""
        pipe = self.rt.redis.pipeline(transaction=False)
        pipe.hmget(self.k.run(self.run_id), ["status", "root", "parent", "deadline"])
        pipe.hgetall(self.k.journal(self.run_id, self.args.inv_id))
        pipe.hget(self.k.done(self.run_id), self.args.inv_id)
        # per message: a redelivery (or a reaper resend) keeps the task id, a resume does not
        pipe.hincrby(self.k.deliveries(self.run_id), self.task_id or self.args.inv_id, 1)
        pipe.hexists(self.k.inflight(self.run_id), self.task_id or "")
        (status, root, parent_field, deadline), raw_journal, done, delivered, in_flight = (
            pipe.execute()
        )
        parent = CallAddress.from_field(parent_field)
        if self.task_id is not None and not in_flight and status == RunStatus.RUNNING:
            return None  # an earlier delivery finished this message: a duplicate
        if status != RunStatus.RUNNING:
            runs.expire_deliveries(self.rt, self.run_id)
            if status is not None and parent is not None:
                runs.reanswer_parent(self.rt, self.run_id, RunStatus(status), parent)
            return None
        if done is not None:
            self._resend_outputs(done)
            return None
        if deadline and now() > float(deadline):
            runs.fail_past_deadline(self.rt, self.run_id, parent)
            return None
        if delivered > MAX_DELIVERIES:
            info = ErrorInfo(
                type="StepFailedError",
                retryable=False,
                details={"step": self.step.qualname},
                message=f"step {self.step.qualname} was delivered {delivered} times "
                "(its worker keeps dying); giving up",
            )
            runs.fail_run(self.rt, self.run_id, info, parent=parent)
            return None
        journal, effects = parse_journal_hash(raw_journal)
        return Loaded(journal, effects, root or self.run_id, parent)

    def hard_timeout(self, seconds: float) -> None:
        """Celery killed this step at its hard time limit (sync code the step's own asyncio
        timeout could not interrupt): a timeout, retried or failed as its policy says."""
        state = self._load()
        if state is None:
            return
        self.started -= seconds  # the attempt began when the limit started counting
        inv = self._invocation(state)
        error = WorkflowTimeoutError(
            f"step {self.step.qualname} was stopped at its hard time limit ({seconds:g}s)",
            step=self.step.qualname,
        )
        hop = Hop(self.rt, self.run_id, state.root, self.task_id)
        self._failed(hop, inv, Failed(error), set(state.journal), state.parent)

    def _invocation(self, state: Loaded) -> Invocation:
        inv = Invocation(
            self.args.inv_id,
            self.step.name,
            self._event(),
            self.args.attempt,
            state.journal,
            state.effects_done,
        )
        inv.first_started = time.monotonic() - self._elapsed()  # the Invocation's clock
        return inv

    @property
    def first_started(self) -> float:
        """When the invocation's first attempt began (wall clock): carried by the message,
        else (a first attempt, or a message from an older Baton) this delivery's start."""
        carried = self.args.first_started
        return self.started if carried is None else carried

    def _carried_start(self) -> float | None:
        """What a resume carries: the first attempt's start once the step has retried; a first
        attempt's resume carries none, so a worker older than that field can still take it
        during a rolling upgrade (its timing restarts at the resume)."""
        return self.first_started if self.args.attempt > 1 else None

    def _elapsed(self) -> float:
        """Seconds since the first attempt began (never negative: clocks of two machines may
        disagree a little)."""
        return max(0.0, time.time() - self.first_started)

    def _event(self) -> Event | list[Event]:
        payload = self.args.payload
        if isinstance(payload, list):
            return [decode_event(e) for e in payload]
        return decode_event(payload)

    def _resend_outputs(self, done: str) -> None:
        """A redelivered, already finished step: resend what it sent, unless already done."""
        messages = parse_messages(done)
        if not messages:
            return
        inv_ids = [m.args.inv_id for m in messages]
        finished = self.rt.redis.hmget(self.k.done(self.run_id), inv_ids)
        self.rt.send([m for m, f in zip(messages, finished, strict=True) if f is None])

    def _hop(self, backend: RedisBackend, inv: Invocation) -> Hop:
        """A hop that already carries the step's effects: sent events (routed) and streamed."""
        hop = Hop(self.rt, self.run_id, backend.root, self.task_id)
        for effect in backend.effects:
            streamed = effect.kind is EffectKind.STREAM
            hop.log(LogKind.STREAM if streamed else LogKind.EVENT, dumps(effect.event))
            if not streamed:
                deliveries = core.route_sent(
                    self.cls.spec, inv.id, effect.pos, effect.event, effect.step
                )
                hop.messages += self._deliver(deliveries)
        return hop

    def _deliver(
        self, deliveries: tuple[core.Delivery, ...] | list[core.Delivery]
    ) -> list[Message]:
        return runs.delivery_messages(self.rt, self.cls.name, self.run_id, deliveries)

    def _completed(
        self, hop: Hop, inv: Invocation, outcome: Completed, parent: CallAddress | None
    ) -> None:
        for event in outcome.emitted.events:
            if isinstance(event, StopEvent):
                continue  # logged once, as the run's end, by the FINISH script
            kind = LogKind.INPUT if isinstance(event, InputRequiredEvent) else LogKind.EVENT
            hop.log(kind, dumps(event))
        finish: core.CompleteRun | None = None
        for command in core.react_to_output(self.cls.spec, inv.id, outcome.emitted):
            if isinstance(command, core.Dispatch):
                hop.messages += self._deliver(command.deliveries)
            elif isinstance(command, core.CompleteRun):
                finish = command
        # the run's end (status + StopEvent, atomically) rides in the same round trip as the
        # done marker: a redelivery after a crash finds both, and re-answers the parent
        end_at = len(hop.pipe)
        answer = None
        if finish is not None:
            answer = runs.finish_run(
                self.rt, self.run_id, finish.result, finish.stop_event, hop.pipe
            )
        hop.mark_done(inv.id)
        hop.pipe.delete(self.k.journal(self.run_id, inv.id))
        replies = hop.commit()
        if answer is not None:
            runs.after_end(self.rt, self.run_id, replies[end_at], parent, answer)

    def _persist(self, hop: Hop, inv: Invocation, loaded: set[str]) -> None:
        key = self.k.journal(self.run_id, inv.id)
        hop.pipe.hset(key, mapping=journal_fields(inv.journal, inv.effects_done, loaded))
        hop.pipe.expire(key, self.rt.settings.retention_seconds)

    def _suspended(self, hop: Hop, inv: Invocation, outcome: Suspended, loaded: set[str]) -> None:
        self._persist(hop, inv, loaded)
        calls = [c for c in outcome.calls if c.call_id not in inv.journal]
        children: list[ChildCall] = []
        for call in calls:
            if isinstance(call, ToolCall):
                hop.messages.append(self._tool_message(inv, call))
            elif isinstance(call, ChildCall):
                children.append(call)
            else:
                self._register_waiter(hop, inv, call)
        args = replace(self.args, first_started=self._carried_start())
        resume = self.rt.placement.step_message(self.cls.name, self.step.name, args)
        queue, envelope = self.rt.publisher.frame(resume)
        # PARK runs before the calls are pushed, in the same round trip: it counts them all
        # as pending unless every answer is already journaled (then it resumes the step now).
        self.rt.script("PARK")(
            keys=[
                self.k.journal(self.run_id, inv.id),
                self.k.wait(self.run_id, inv.id),
                self.k.inflight(self.run_id),
                queue,
            ],
            args=[
                resume.to_json(),
                self.rt.settings.retention_seconds,
                resume.task_id,
                envelope,
                *_ids(calls),
            ],
            client=hop.pipe,
        )
        for child in children:
            runs.create_run(
                self.rt,
                child.workflow,
                core.child_id(self.run_id, child.call_id),
                decode_event(child.start),
                parent=CallAddress(self.run_id, inv.id, child.call_id),
                root=hop.root,
                pipe=hop.pipe,
            )
        hop.commit()

    def _tool_message(self, inv: Invocation, call: ToolCall) -> Message:
        args = ToolArgs(self.run_id, inv.id, call.call_id, call.args)
        return self.rt.placement.tool_message(get_tool(call.tool), args)

    def _register_waiter(self, hop: Hop, inv: Invocation, call: WaitCall) -> None:
        waiter = WaiterRecord(
            CallAddress(self.run_id, inv.id, call.call_id), call.tag, call.requirements
        )
        hop.pipe.hset(self.k.waiters(hop.root), waiter.field, waiter.to_json())
        if call.waiter is not None:
            hop.log(LogKind.INPUT, compact(call.waiter))

    def _failed(
        self,
        hop: Hop,
        inv: Invocation,
        outcome: Failed,
        loaded: set[str],
        parent: CallAddress | None,
    ) -> None:
        commands = core.react_to_failure(
            self.cls.spec, self.step, inv.id, inv.event, outcome.error, inv.attempt, self._elapsed()
        )
        failure: ErrorInfo | None = None
        for command in commands:
            if isinstance(command, core.RetryStep):
                self._retry(hop, inv, outcome.error, command, loaded)
            elif isinstance(command, core.Dispatch):
                hop.messages += self._deliver(command.deliveries)
                hop.mark_done(inv.id)
            elif isinstance(command, core.FailRun):
                failure = command.error
        hop.commit()
        if failure is not None:
            runs.fail_run(self.rt, self.run_id, failure, parent=parent)

    def _retry(
        self,
        hop: Hop,
        inv: Invocation,
        error: BaseException,
        command: core.RetryStep,
        loaded: set[str],
    ) -> None:
        """Keep the completed calls, drop the failed ones, and send the next attempt."""
        inv.forget_errors()
        errors = [c for c in loaded if c not in inv.journal]
        if errors:
            hop.pipe.hdel(self.k.journal(self.run_id, inv.id), *errors)
        self._persist(hop, inv, loaded)
        args = StepArgs(self.run_id, inv.id, self.args.payload, command.attempt, self.first_started)
        retry = self.rt.placement.step_message(self.cls.name, self.step.name, args)
        hop.messages.append(retry.delayed(command.delay or None))
        note = RetryNote(
            what="step",
            name=self.step.qualname,
            attempt=command.attempt,
            error=error_info(error, inv.attempt),
        )
        hop.log(LogKind.RETRY, note.model_dump_json())


def _ids(calls: list[ParkedCall]) -> list[str]:
    return [c.call_id for c in calls]

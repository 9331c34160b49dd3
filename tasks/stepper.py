"""The body of every step task: load, replay, run, then persist and dispatch in one go.

Choreography: a step task persists its output events and sends the steps that accept them;
no process holds a run in memory. Per hop: one pipelined read, one pipelined write, one
publish. A suspended step frees its worker; the last answer to its calls resends it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tasks import runs
from tasks.backend import RedisBackend
from tasks.runtime import Message, Runtime, now
from workflows._engine import core
from workflows._engine.executor import Completed, Failed, Parking, Suspended, execute
from workflows._engine.runtime import Invocation
from workflows.codec import decode_event, dumps, encode_event
from workflows.context import Context
from workflows.errors import ErrorInfo, WorkflowTimeoutError
from workflows.events import Event, InputRequiredEvent, StopEvent
from workflows.workflow import require_workflow

MAX_DELIVERIES = 5
_loop: asyncio.AbstractEventLoop | None = None


def run_async(coro: Any) -> Any:
    """One event loop per worker process, reused by every step it runs."""
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop.run_until_complete(coro)


class StepTask:
    """One delivery of one step invocation."""

    def __init__(
        self,
        rt: Runtime,
        workflow: str,
        step: str,
        run_id: str,
        inv_id: str,
        payload: Any,
        attempt: int,
        task_id: str | None = None,
    ) -> None:
        self.rt, self.k = rt, rt.keys
        self.task_id = task_id
        self.cls = require_workflow(workflow)
        self.step = self.cls.spec.steps[step]
        self.run_id, self.inv_id, self.payload, self.attempt = run_id, inv_id, payload, attempt
        self.args = [run_id, inv_id, payload, attempt]

    def run(self) -> None:
        state = self._load()
        if state is None:
            pipe = self.rt.redis.pipeline(transaction=False)
            self.rt.finished(pipe, self.run_id, self.task_id)
            pipe.execute()
            return
        journal, root, parent = state
        event: Event | list[Event] = (
            [decode_event(e) for e in self.payload]
            if isinstance(self.payload, list)
            else decode_event(self.payload)
        )
        fx = journal.pop("__fx", None) or {}
        inv = Invocation(self.inv_id, self.step.name, event, self.attempt, journal, fx)
        loaded = set(journal)
        backend = RedisBackend(self.rt, self.run_id, root)
        outcome = run_async(execute(self.cls(), self.step, Context(backend, inv), inv, Parking()))
        if isinstance(outcome, Completed):
            self._completed(inv, backend, outcome, parent)
        elif isinstance(outcome, Suspended):
            self._suspended(inv, backend, outcome, loaded)
        else:
            self._failed(inv, backend, outcome, loaded, parent)

    def _load(self) -> tuple[dict[str, Any], str, str] | None:
        """Read run status, journal and done-marker in one round trip; None: nothing to do."""
        pipe = self.rt.redis.pipeline(transaction=False)
        pipe.hmget(self.k.run(self.run_id), ["status", "root", "parent", "deadline"])
        pipe.hgetall(self.k.journal(self.run_id, self.inv_id))
        pipe.hget(self.k.done(self.run_id), self.inv_id)
        # per message: a redelivery (or a reaper resend) keeps the task id, a resume does not
        pipe.hincrby(self.k.deliveries(self.run_id), self.task_id or self.inv_id, 1)
        (status, root, parent, deadline), raw_journal, done, delivered = pipe.execute()
        if status != "running":
            if status in runs.FINAL and parent:
                runs.reanswer_parent(self.rt, self.run_id, status, parent)
            return None
        if done is not None:
            self._resend_outputs(done)
            return None
        if deadline and now() > float(deadline):
            err = WorkflowTimeoutError(f"run {self.run_id} ran past its deadline")
            runs.fail_run(self.rt, self.run_id, err.to_info(), parent=parent or "")
            return None
        if delivered > MAX_DELIVERIES:
            info = ErrorInfo(
                type="StepFailedError",
                retryable=False,
                details={"step": self.step.qualname},
                message=f"step {self.step.qualname} was delivered {delivered} times "
                "(its worker keeps dying); giving up",
            )
            runs.fail_run(self.rt, self.run_id, info, parent=parent or "")
            return None
        journal = {key: json.loads(v) for key, v in raw_journal.items()}
        return journal, root or self.run_id, parent or ""

    def _resend_outputs(self, done: str) -> None:
        """A redelivered, already finished step: resend what it sent, unless already done."""
        messages = [Message.from_json(m) for m in json.loads(done)]
        if not messages:
            return
        finished = self.rt.redis.hmget(self.k.done(self.run_id), [m.args[1] for m in messages])
        self.rt.send([m for m, f in zip(messages, finished, strict=True) if f is None])

    def _effects(self, pipe: Any, backend: RedisBackend, inv: Invocation) -> list[Message]:
        """Log sent and streamed events; route the sent ones. Returns the messages to send."""
        messages: list[Message] = []
        for pos, kind, event, only in backend.effects:
            self._log(pipe, backend, "stream" if kind == "stream" else "event", event)
            if kind == "send":
                deliveries = core.route_sent(self.cls.spec, inv.id, pos, event, only)
                messages += runs.delivery_messages(self.rt, self.cls.name, self.run_id, deliveries)
        return messages

    def _log(self, pipe: Any, backend: RedisBackend, kind: str, event: Event) -> None:
        self._append(pipe, backend, {"k": kind, "e": dumps(event)})

    def _append(self, pipe: Any, backend: RedisBackend, entry: dict[str, str]) -> None:
        """Log an entry; what a user should see (streamed, input requests) goes to the root run's
        stream too, marked with the run it came from."""
        pipe.xadd(self.k.events(self.run_id), entry)
        if entry["k"] in ("stream", "input") and backend.root != self.run_id:
            pipe.xadd(self.k.events(backend.root), {**entry, "r": self.run_id})

    def _completed(
        self, inv: Invocation, backend: RedisBackend, outcome: Completed, parent: str
    ) -> None:
        pipe = self.rt.redis.pipeline(transaction=False)
        messages = self._effects(pipe, backend, inv)
        for event in outcome.emitted.events:
            if isinstance(event, StopEvent):
                continue  # logged once, as the run's end, by finish_run
            self._log(
                pipe, backend, "input" if isinstance(event, InputRequiredEvent) else "event", event
            )
        finish: core.CompleteRun | None = None
        for command in core.react_to_output(self.cls.spec, inv.id, outcome.emitted):
            if isinstance(command, core.Dispatch):
                messages += runs.delivery_messages(
                    self.rt, self.cls.name, self.run_id, command.deliveries
                )
            elif isinstance(command, core.CompleteRun):
                finish = command
        # the run's end (status + StopEvent, atomically) rides in the same round trip as the
        # done marker: a redelivery after a crash finds both, and re-answers the parent
        end_at = len(pipe)
        if finish is not None:
            runs.finish_run(
                self.rt, self.run_id, finish.result, finish.stop_event, parent, pipe=pipe
            )
        pipe.hset(self.k.done(self.run_id), inv.id, json.dumps([m.to_json() for m in messages]))
        pipe.delete(self.k.journal(self.run_id, inv.id))
        self.rt.finished(pipe, self.run_id, self.task_id)
        self.rt.send(messages, pipe)
        replies = pipe.execute()
        if finish is not None:
            value = finish.result
            value = encode_event(value) if isinstance(value, Event) else value
            runs.after_end(self.rt, self.run_id, replies[end_at], parent, {"ok": value})

    def _persist(self, pipe: Any, inv: Invocation, loaded: set[str]) -> None:
        key = self.k.journal(self.run_id, inv.id)
        new = {c: json.dumps(v) for c, v in inv.journal.items() if c not in loaded}
        new["__fx"] = json.dumps(inv.effects_done)
        pipe.hset(key, mapping=new)
        pipe.expire(key, self.rt.settings.retention_seconds)

    def _suspended(
        self, inv: Invocation, backend: RedisBackend, outcome: Suspended, loaded: set[str]
    ) -> None:
        pipe = self.rt.redis.pipeline(transaction=False)
        messages = self._effects(pipe, backend, inv)
        self._persist(pipe, inv, loaded)
        calls = [c for c in outcome.calls if c["call_id"] not in inv.journal]
        here = {"run": self.run_id, "inv": inv.id}
        children: list[tuple[str, dict[str, Any]]] = []
        for call in calls:
            where = {**here, "call_id": call["call_id"]}
            if call["kind"] == "tool":
                messages.append(self._tool_message(call, where))
            elif call["kind"] == "child":
                children.append((core.child_id(self.run_id, call["call_id"]), call))
            else:
                self._register_waiter(pipe, backend, call, where)
        resume = self.rt.step_message(self.cls.name, self.step.name, self.args)
        # PARK runs before the calls are pushed, in the same round trip: it counts them all
        # as pending unless every answer is already journaled (then it asks to resume now).
        park_at = len(pipe)
        self.rt.script("PARK")(
            keys=[self.k.journal(self.run_id, inv.id), self.k.wait(self.run_id, inv.id)],
            args=[
                json.dumps(resume.to_json()),
                self.rt.settings.retention_seconds,
                *[c["call_id"] for c in calls],
            ],
            client=pipe,
        )
        self.rt.send(messages, pipe)
        for child_run, call in children:
            runs.create_run(
                self.rt,
                call["workflow"],
                child_run,
                decode_event(call["start"]),
                parent={**here, "call_id": call["call_id"]},
                root=backend.root,
                pipe=pipe,
            )
        self.rt.finished(pipe, self.run_id, self.task_id)
        if pipe.execute()[park_at] == 1:
            self.rt.send([resume])

    def _tool_message(self, call: dict[str, Any], where: dict[str, Any]) -> Message:
        from workflows.tools import get_tool

        spec = get_tool(call["tool"])
        return self.rt.tool_message(
            spec, [self.run_id, where["inv"], call["call_id"], call["args"], 1]
        )

    def _register_waiter(
        self, pipe: Any, backend: RedisBackend, call: dict[str, Any], where: dict[str, Any]
    ) -> None:
        waiter = {**where, "tag": call["tag"], "requirements": call["requirements"]}
        pipe.hset(
            self.k.waiters(backend.root), f"{self.run_id}|{call['call_id']}", json.dumps(waiter)
        )
        if call["waiter"] is not None:
            self._append(pipe, backend, {"k": "input", "e": json.dumps(call["waiter"])})

    def _failed(
        self, inv: Invocation, backend: RedisBackend, outcome: Failed, loaded: set[str], parent: str
    ) -> None:
        pipe = self.rt.redis.pipeline(transaction=False)
        messages = self._effects(pipe, backend, inv)
        commands = core.react_to_failure(
            self.cls.spec, self.step, inv.id, inv.event, outcome.error, inv.attempt
        )
        failure: ErrorInfo | None = None
        for command in commands:
            if isinstance(command, core.RetryStep):
                inv.forget_errors()
                errors = [c for c in loaded if c not in inv.journal]
                if errors:
                    pipe.hdel(self.k.journal(self.run_id, inv.id), *errors)
                self._persist(pipe, inv, loaded)
                retry = self.rt.step_message(
                    self.cls.name,
                    self.step.name,
                    [self.run_id, inv.id, self.payload, command.attempt],
                )
                retry.countdown = command.delay or None
                messages.append(retry)
                pipe.xadd(
                    self.k.events(self.run_id),
                    {
                        "k": "retry",
                        "e": json.dumps(
                            {
                                "step": self.step.qualname,
                                "attempt": command.attempt,
                                "error": repr(outcome.error),
                            }
                        ),
                    },
                )
            elif isinstance(command, core.Dispatch):
                messages += runs.delivery_messages(
                    self.rt, self.cls.name, self.run_id, command.deliveries
                )
                pipe.hset(
                    self.k.done(self.run_id), inv.id, json.dumps([m.to_json() for m in messages])
                )
            elif isinstance(command, core.FailRun):
                failure = command.error
        self.rt.finished(pipe, self.run_id, self.task_id)
        self.rt.send(messages, pipe)
        pipe.execute()
        if failure is not None:
            runs.fail_run(self.rt, self.run_id, failure, parent=parent)

"""One delivery of one step invocation: which step, with which message, and its clock.

The read, the outcome's writes and the failure decision of a step task all need the same few
facts about the delivery at hand (and what its read found); they live here, apart from what
is done with them, so each of those parts is a function of the delivery.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tasks import runs
from tasks.protocol import CallAddress, Message, Span, SpanKind, SpanOutcome, StepArgs, Where
from tasks.runtime import Runtime
from workflows._engine import core
from workflows._engine.backend import Invocation
from workflows._engine.records import Journal
from workflows.codec import decode_event
from workflows.events import Event
from workflows.step import StepSpec
from workflows.workflow import Workflow


@dataclass
class Loaded:
    """What a step needs from Redis before it runs (read in one round trip)."""

    journal: Journal
    effects_done: dict[str, int]
    root: str
    parent: CallAddress | None
    journal_stored: bool = True  # its journal hash existed (even empty: deleted at the end)


@dataclass
class Delivery:
    """One delivery of one step invocation. ``started``: when this delivery began (wall
    clock: the next attempt may run on another machine); ``where``: its queue and worker."""

    rt: Runtime
    cls: type[Workflow]
    step: StepSpec
    args: StepArgs
    task_id: str | None
    started: float
    where: Where

    @property
    def run_id(self) -> str:
        return self.args.run_id

    @property
    def first_started(self) -> float:
        """When the invocation's first attempt began (wall clock): carried by the message,
        else (a first attempt, or a message from an older Baton) this delivery's start."""
        carried = self.args.first_started
        return self.started if carried is None else carried

    def carried_start(self) -> float | None:
        """What a resume carries: the first attempt's start once the step has retried; a first
        attempt's resume carries none, so a worker older than that field can still take it
        during a rolling upgrade (its timing restarts at the resume)."""
        return self.first_started if self.args.attempt > 1 else None

    def elapsed(self) -> float:
        """Seconds since the first attempt began (never negative: clocks of two machines may
        disagree a little)."""
        return max(0.0, time.time() - self.first_started)

    def span(self, outcome: SpanOutcome, error: str = "") -> Span:
        """This delivery as a span, ending now."""
        return Span(
            SpanKind.STEP,
            self.step.qualname,
            self.run_id,
            self.args.inv_id,
            "",
            self.args.attempt,
            self.where.queue,
            self.where.worker,
            self.started,
            time.time(),
            outcome,
            error,
        )

    def again(self) -> Message:
        """This delivery's message re-sent as is (a new task id): to wait for a limit."""
        return self.rt.placement.step_message(self.cls.name, self.step.name, self.args)

    def invocation(self, state: Loaded) -> Invocation:
        """The invocation to run (or judge) for this delivery, on its journal as loaded."""
        inv = Invocation(
            self.args.inv_id,
            self.step.name,
            self.event(),
            self.args.attempt,
            state.journal,
            state.effects_done,
        )
        inv.first_started = time.monotonic() - self.elapsed()  # the Invocation's clock
        return inv

    def event(self) -> Event | list[Event]:
        """The event the step takes: one, or a batch for a step taking ``list[E]``."""
        payload = self.args.payload
        if isinstance(payload, list):
            return [decode_event(e) for e in payload]
        return decode_event(payload)

    def deliver(self, deliveries: tuple[core.Delivery, ...] | list[core.Delivery]) -> list[Message]:
        """The messages that deliver events the engine routed to steps of this run."""
        return runs.delivery_messages(self.rt, self.cls.name, self.run_id, deliveries)

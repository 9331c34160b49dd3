"""The pure core both runtimes drive: routing, fan-in, step outcomes and what follows them.

No I/O here. A runtime executes a step, hands the outcome to :func:`react`, and carries out the
commands it gets back — the in-process runtime with asyncio, the Celery runtime with tasks and
Redis writes. That is why both run the same workflows the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from workflows._engine.graph import WorkflowSpec
from workflows._error_root import traceback_text
from workflows.codec import encode_event
from workflows.errors import (
    BatonError,
    ErrorInfo,
    StepFailedError,
    WorkflowRuntimeError,
    WorkflowStepDoesNotExistError,
    WorkflowTimeoutError,
    original_of,
    type_name,
)
from workflows.events import Event, StepFailedEvent, StopEvent
from workflows.step import StepSpec


@dataclass(frozen=True)
class Delivery:
    """An event (or, for a step taking ``list[E]``, a whole fan-out batch) on its way to a step."""

    step: str
    event: Event | list[Event]
    invocation_id: str


# --- commands -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Dispatch:
    deliveries: tuple[Delivery, ...]


@dataclass(frozen=True)
class CompleteRun:
    result: Any
    stop_event: StopEvent


@dataclass(frozen=True)
class FailRun:
    error: ErrorInfo


@dataclass(frozen=True)
class RetryStep:
    delay: float
    attempt: int


Command = Dispatch | CompleteRun | FailRun | RetryStep


@dataclass
class Emitted:
    """Events a step produced, in order; ``batch`` is set when the step returned a list."""

    events: list[Event] = field(default_factory=list)
    batch: bool = False


def child_id(parent: str, index: int | str) -> str:
    """A deterministic invocation id, so a redelivered step dispatches the same successors."""
    return hashlib.blake2s(f"{parent}/{index}".encode(), digest_size=9).hexdigest()


def normalize_output(result: Any) -> Emitted:
    if result is None:
        return Emitted()
    if isinstance(result, list):
        return Emitted([e for e in result if isinstance(e, Event)], batch=True)
    if isinstance(result, Event):
        return Emitted([result])
    raise StepFailedError(f"a step returned {type(result).__name__}, not an Event or None")


def route(
    spec: WorkflowSpec,
    parent_inv: str,
    events: Sequence[tuple[Event, str | None]],
    batch: bool,
) -> list[Delivery]:
    """Deliveries for emitted events: each to every step accepting it (or the one named).

    When a step returned a list, a step taking ``list[E]`` receives the matching events as one
    batch — the emitting step holds the whole batch, so no fan-in state is needed.
    """
    out: list[Delivery] = []
    batches: dict[str, list[Event]] = {}
    for event, only in events:
        for s in spec.steps_for(type(event)):
            if only is not None and s.name != only:
                continue
            if batch and s.batch:
                batches.setdefault(s.name, []).append(event)
            elif not s.batch:
                out.append(Delivery(s.name, event, child_id(parent_inv, len(out))))
    for name, items in batches.items():
        out.append(Delivery(name, items, child_id(parent_inv, f"b{name}")))
    return out


def check_target(spec: WorkflowSpec, step: str, event_type: type[Event]) -> None:
    """An event sent to one ``step`` (``send_event(ev, step=...)``): the step must exist and
    take the event, else the sender learns it now (as in LlamaIndex), not never."""
    if step not in spec.steps:
        raise WorkflowStepDoesNotExistError(f"Step {step} does not exist")
    if all(s.name != step for s in spec.steps_for(event_type)):
        raise WorkflowRuntimeError(
            f"Step {step} does not accept event of type {event_type.__name__}"
        )


def react_to_output(spec: WorkflowSpec, inv_id: str, emitted: Emitted) -> list[Command]:
    """After a step succeeded: complete the run on a StopEvent, else dispatch what it emitted."""
    for event in emitted.events:
        if isinstance(event, StopEvent):
            return [CompleteRun(_result_of(event), event)]
    deliveries = route(spec, inv_id, [(e, None) for e in emitted.events], emitted.batch)
    return [Dispatch(tuple(deliveries))] if deliveries else []


def route_sent(
    spec: WorkflowSpec, inv_id: str, pos: str, event: Event, only: str | None
) -> list[Delivery]:
    """Deliveries for an event sent with ``ctx.send_event`` as the step's effect number ``pos``."""
    return route(spec, f"{inv_id}/s{pos}", [(event, only)], batch=False)


def react_to_failure(
    spec: WorkflowSpec,
    step: StepSpec,
    inv_id: str,
    event: Event | list[Event],
    exc: BaseException,
    attempt: int,
    elapsed: float = 0.0,
) -> list[Command]:
    """After a step raised: retry under its policy, hand it to an error handler, or fail the run.

    ``elapsed``: seconds since the step's first attempt started, for policies that ask (0.0
    where the runtime does not know it)."""
    retryable = not isinstance(exc, BatonError) or exc.retryable
    if isinstance(exc, WorkflowTimeoutError):
        retryable = True
    delay, why_not = _retry_delay(step, exc, attempt, elapsed) if retryable else (None, "")
    if delay is not None:
        return [RetryStep(delay, attempt + 1)]
    info = step_error_info(step, exc, attempt, why_not)
    handler_event = StepFailedEvent(
        step_name=step.name, error=info, attempts=attempt, input_event=_event_data(event)
    )
    handlers = [s for s in spec.steps_for(StepFailedEvent) if _handles(s, step.name)]
    if handlers and not isinstance(event, StepFailedEvent):
        deliveries = [Delivery(h.name, handler_event, child_id(inv_id, 0)) for h in handlers[:1]]
        return [Dispatch(tuple(deliveries))]
    return [FailRun(info)]


def _retry_delay(
    step: StepSpec, exc: BaseException, attempt: int, elapsed: float
) -> tuple[float | None, str]:
    """The policy's delay before the next attempt. A policy that cannot decide (it raised, or
    gave no delay) means no retry, and the second value says why: a run must fail, not hang."""
    try:
        return step.options.retry.after_failure(attempt, exc, elapsed), ""
    except Exception as err:
        text = err.message if isinstance(err, BatonError) else f"{type(err).__name__}: {err}"
        return None, f"; not retried: {text}"


def step_error_info(
    step: StepSpec, exc: BaseException, attempts: int, why_not_retried: str = ""
) -> ErrorInfo:
    """The StepFailedError, as data, of a step whose retries are spent: the step, the cause
    (its type, and as data), the original exception and its formatted, size-capped traceback."""
    kind = type_name(exc)  # a Baton error that is also a KeyError is still named as Baton's
    text = exc.message if isinstance(exc, BatonError) else str(exc)
    details: dict[str, Any] = {"step": step.qualname, "cause_type": kind}
    if isinstance(exc, BatonError):
        details["cause"] = exc.to_info(attempts).model_dump()
    original = original_of(exc)  # so the error can be rebuilt as the step's exception class too
    if original is not None:
        details["original"] = original.model_dump()
    details["traceback"] = traceback_text(exc)
    return ErrorInfo(
        type="StepFailedError",
        message=f"step {step.qualname} failed after {attempts} attempt(s): "
        f"{kind}: {text}{why_not_retried}",
        attempts=attempts,
        retryable=False,
        details=details,
    )


def collect_match(buffer: Sequence[str], expected: Sequence[str]) -> list[int] | None:
    """Which buffered entries (by tag, in arrival order) fill ``expected``; None if not all in.

    The Celery runtime runs the same rule as a Lua script, atomically in Redis.
    """
    if len(buffer) < len(expected):  # the common "not all in yet" case, in O(1)
        return None
    positions: dict[str, list[int]] = {}
    for i, have in enumerate(buffer):
        positions.setdefault(have, []).append(i)
    taken: dict[str, int] = {}
    chosen: list[int] = []
    for tag in expected:  # the k-th expected `tag` takes the k-th buffered `tag`
        k = taken.get(tag, 0)
        found = positions.get(tag, ())
        if k >= len(found):
            return None
        chosen.append(found[k])
        taken[tag] = k + 1
    return chosen


def arrange(taken: list[Event], expected: Sequence[str]) -> list[Event]:
    """Order collected events as ``expected`` lists their types (oldest first per type), so a
    fan-in answer reads the same whether it was just decided or replayed from the journal."""
    by_tag: dict[str, list[Event]] = {}
    for event in taken:
        by_tag.setdefault(type(event).type_tag, []).append(event)
    return [by_tag[tag].pop(0) for tag in expected]


def _handles(handler: StepSpec, failed_step: str) -> bool:
    only = getattr(handler.fn, "__baton_catch__", None)
    return only is None or failed_step in only


def _event_data(event: Event | list[Event]) -> dict[str, Any]:
    if isinstance(event, list):
        return {"batch": [encode_event(e) for e in event]}
    return encode_event(event)


def _result_of(event: StopEvent) -> Any:
    return event.result if type(event) is StopEvent else event

"""The pure engine core, table by table: routing, step outcomes, failures and fan-in matching.

Each row is a claim about ``workflows._engine.core``; the workflows below exist only to give the
core a real step graph to route over.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from workflows import (
    BatonError,
    Event,
    InvalidInputError,
    Retry,
    RunCancelledError,
    StartEvent,
    StepFailedEvent,
    StopEvent,
    ToolError,
    UnknownWorkflowError,
    Workflow,
    WorkflowTimeoutError,
    catch_error,
    step,
)
from workflows._engine.core import (
    Command,
    CompleteRun,
    Delivery,
    Dispatch,
    Emitted,
    FailRun,
    RetryStep,
    arrange,
    child_id,
    collect_match,
    normalize_output,
    react_to_failure,
    react_to_output,
    route,
)
from workflows._engine.graph import WorkflowSpec
from workflows.codec import encode_event
from workflows.errors import StepFailedError
from workflows.step import StepSpec

# --- events -------------------------------------------------------------------------------


class CTAlpha(Event):
    n: int = 0


class CTAlphaPrime(CTAlpha):
    """A subclass: routed only to steps that take it exactly or accept subclasses."""


class CTBeta(Event):
    n: int = 0


class CTGamma(Event):
    n: int = 0


class CTStray(Event):
    """Accepted by no step of any workflow here."""

    n: int = 0


class CTReport(StopEvent):
    """A typed StopEvent: the run's result is the event itself."""

    summary: str = ""


# --- workflows ----------------------------------------------------------------------------


class CoreTableFanout(Workflow):
    """start fans out CTAlpha to two single steps and one list step; CTBeta | CTGamma stop."""

    @step
    async def start(self, ev: StartEvent) -> list[CTAlpha]:
        return [CTAlpha(n=i) for i in range(3)]

    @step
    async def left(self, ev: CTAlpha) -> CTBeta:
        return CTBeta(n=ev.n)

    @step
    async def right(self, ev: CTAlpha) -> CTBeta:
        return CTBeta(n=-ev.n)

    @step
    async def gather(self, ev: list[CTAlpha]) -> CTGamma:
        return CTGamma(n=len(ev))

    @step
    async def either(self, ev: CTBeta | CTGamma) -> StopEvent:
        return StopEvent(result=ev.n)


class CoreTableRetrying(Workflow):
    """``flaky`` may take 3 attempts (delays 0.5 s then 1.0 s); ``once`` has no retries."""

    @step(retry=Retry(max_attempts=3, delay=0.5, backoff=2.0))
    async def flaky(self, ev: StartEvent) -> CTBeta:
        return CTBeta()

    @step
    async def once(self, ev: CTBeta) -> StopEvent:
        return StopEvent()


class CoreTableGuarded(Workflow):
    """A catch-all ``@catch_error`` handler over a retrying step and a list step."""

    @step(retry=Retry(max_attempts=2, delay=1.0))
    async def risky(self, ev: StartEvent) -> list[CTAlpha]:
        return [CTAlpha()]

    @step
    async def pool(self, ev: list[CTAlpha]) -> StopEvent:
        return StopEvent(result=len(ev))

    @catch_error
    async def recover(self, ev: StepFailedEvent) -> StopEvent:
        return StopEvent(result=ev.step_name)


Handler = Callable[..., Awaitable[StopEvent]]
# catch_error(for_steps=...) is typed as Any; give the decorator its real shape for mypy
only_guarded: Callable[[Handler], Handler] = catch_error(for_steps=["guarded"])


class CoreTableNarrowGuard(Workflow):
    """A handler for ``guarded`` only: ``unguarded`` failing fails the run."""

    @step
    async def guarded(self, ev: StartEvent) -> CTBeta:
        return CTBeta()

    @step
    async def unguarded(self, ev: CTBeta) -> StopEvent:
        return StopEvent()

    @only_guarded
    async def recover(self, ev: StepFailedEvent) -> StopEvent:
        return StopEvent()


FANOUT: WorkflowSpec = CoreTableFanout.spec
RETRYING: WorkflowSpec = CoreTableRetrying.spec
GUARDED: WorkflowSpec = CoreTableGuarded.spec
NARROW: WorkflowSpec = CoreTableNarrowGuard.spec

A0, A1, A2 = CTAlpha(n=0), CTAlpha(n=1), CTAlpha(n=2)
AP = CTAlphaPrime(n=7)
B0, G0, S0 = CTBeta(n=10), CTGamma(n=20), CTStray(n=30)
START = StartEvent(topic="x")

# --- route --------------------------------------------------------------------------------

Routed = list[tuple[str, Event | list[Event]]]


def routed(deliveries: Sequence[Delivery]) -> Routed:
    return [(d.step, d.event) for d in deliveries]


ROUTE_TABLE = [
    pytest.param(
        [(A0, None)], False, [("left", A0), ("right", A0)],
        id="an event goes to every step accepting it",
    ),
    pytest.param(
        [(AP, None)], False, [],
        id="a subclass of an accepted event is not routed to a step taking its base",
    ),
    pytest.param([(B0, None)], False, [("either", B0)], id="a union step accepts its 1st type"),
    pytest.param([(G0, None)], False, [("either", G0)], id="a union step accepts its 2nd type"),
    pytest.param([(A0, "right")], False, [("right", A0)], id="only narrows to the named step"),
    pytest.param(
        [(B0, "left")], False, [], id="only naming a step that does not accept it delivers nothing"
    ),
    pytest.param(
        [(A0, "nosuchstep")], False, [], id="only naming an unknown step delivers nothing"
    ),
    pytest.param(
        [(A0, None), (A1, None)], True,
        [("left", A0), ("right", A0), ("left", A1), ("right", A1), ("gather", [A0, A1])],
        id="a list step gets the whole returned list as one batch, after the single deliveries",
    ),
    pytest.param(
        [(A0, None), (A1, None)], False, [("left", A0), ("right", A0), ("left", A1), ("right", A1)],
        id="a list step gets nothing from events that were not returned as a list",
    ),
    pytest.param(
        [(A0, None), (AP, None)], True,
        [("left", A0), ("right", A0), ("gather", [A0])],
        id="a batch leaves out subclass members its step does not take exactly",
    ),
    pytest.param(
        [(A0, None), (B0, None), (A1, None)], True,
        [("left", A0), ("right", A0), ("either", B0), ("left", A1), ("right", A1),
         ("gather", [A0, A1])],
        id="a batch holds only the events its step accepts",
    ),
    pytest.param(
        [(A0, "gather"), (A1, "gather")], True, [("gather", [A0, A1])],
        id="only naming the list step sends it the batch and nothing else",
    ),
    pytest.param(
        [(A0, "gather")], False, [], id="only naming the list step outside a batch delivers nothing"
    ),
    pytest.param([(S0, None)], False, [], id="an event no step accepts is dropped"),
    pytest.param([(S0, None)], True, [], id="a batch of events no step accepts gives no batch"),
    pytest.param([], True, [], id="an empty returned list delivers nothing"),
]  # fmt: skip


@pytest.mark.parametrize(("events", "batch", "expected"), ROUTE_TABLE)
def test_route(events: list[tuple[Event, str | None]], batch: bool, expected: Routed) -> None:
    assert routed(route(FANOUT, "parent", events, batch)) == expected


def test_a_batch_delivery_carries_a_list_and_single_deliveries_carry_events() -> None:
    out = route(FANOUT, "parent", [(A0, None), (A1, None)], batch=True)
    assert [type(d.event) for d in out] == [CTAlpha] * 4 + [list]
    assert all(d.event is A0 for d in out[:2]) and all(d.event is A1 for d in out[2:4])


MANY: list[tuple[Event, str | None]] = [(A0, None), (B0, None), (A1, None), (G0, None)]


def test_invocation_ids_are_deterministic_for_the_same_inputs() -> None:
    first = route(FANOUT, "inv-1", MANY, batch=True)
    again = route(FANOUT, "inv-1", [(e.model_copy(), only) for e, only in MANY], batch=True)
    assert [d.invocation_id for d in first] == [d.invocation_id for d in again]
    assert first == again


def test_invocation_ids_within_one_route_are_distinct() -> None:
    ids = [d.invocation_id for d in route(FANOUT, "inv-1", MANY, batch=True)]
    assert len(ids) == 7  # left, right x 2 alphas; either x beta, gamma; one gather batch
    assert len(set(ids)) == len(ids)


def test_invocation_ids_of_different_parents_are_disjoint() -> None:
    one = {d.invocation_id for d in route(FANOUT, "inv-1", MANY, batch=True)}
    two = {d.invocation_id for d in route(FANOUT, "inv-2", MANY, batch=True)}
    assert len(one) == len(two) == 7
    assert one.isdisjoint(two)


def test_invocation_ids_do_not_repeat_the_parent_or_each_other_across_generations() -> None:
    parent = "root"
    seen = {parent}
    for _ in range(4):  # a chain of redeliveries / successors must never reuse an id
        ids = [d.invocation_id for d in route(FANOUT, parent, MANY, batch=True)]
        assert seen.isdisjoint(ids)
        seen.update(ids)
        parent = ids[0]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        pytest.param(("p", 0), ("p", 0), True, id="same parent and index give the same id"),
        pytest.param(("p", 0), ("p", 1), False, id="another index gives another id"),
        pytest.param(("p", 0), ("q", 0), False, id="another parent gives another id"),
        pytest.param(("p", "bgather"), ("p", "bleft"), False, id="batch ids differ by step"),
        pytest.param(("p", 0), ("p", "b0"), False, id="a batch id differs from a single id"),
    ],
)
def test_child_id(a: tuple[str, int | str], b: tuple[str, int | str], same: bool) -> None:
    assert (child_id(*a) == child_id(*b)) is same
    assert len(child_id(*a)) == 18 and int(child_id(*a), 16) >= 0  # 9 bytes, hex


# --- normalize_output / react_to_output ---------------------------------------------------


@pytest.mark.parametrize(
    ("result", "events", "batch"),
    [
        pytest.param(None, [], False, id="None emits nothing"),
        pytest.param(B0, [B0], False, id="an event is emitted alone"),
        pytest.param([A0, A1], [A0, A1], True, id="a list is emitted as a batch, in order"),
        pytest.param([], [], True, id="an empty list is an empty batch"),
    ],
)
def test_normalize_output(result: Any, events: list[Event], batch: bool) -> None:
    out = normalize_output(result)
    assert (out.events, out.batch) == (events, batch)


@pytest.mark.parametrize("result", [42, "text", {"k": 1}, (B0,)])
def test_a_step_returning_something_else_than_events_fails(result: Any) -> None:
    with pytest.raises(StepFailedError, match="not an Event or None"):
        normalize_output(result)


def view(commands: Sequence[Command]) -> list[tuple[Any, ...]]:
    """Commands as comparable tuples (invocation ids are checked separately)."""
    out: list[tuple[Any, ...]] = []
    for c in commands:
        if isinstance(c, CompleteRun):
            out.append(("complete", c.result, c.stop_event))
        elif isinstance(c, Dispatch):
            out.append(("dispatch", routed(c.deliveries)))
        elif isinstance(c, FailRun):
            out.append(("fail", c.error.type, c.error.attempts, c.error.details["cause_type"]))
        elif isinstance(c, RetryStep):
            out.append(("retry", c.delay, c.attempt))
        else:  # pragma: no cover - a new command kind must be added here
            raise AssertionError(f"unknown command {c!r}")
    return out


STOP_7 = StopEvent(result={"answer": 7})
STOP_NONE = StopEvent()
REPORT = CTReport(summary="done", result="ignored")

OUTPUT_TABLE = [
    pytest.param(
        Emitted([STOP_7]), [("complete", {"answer": 7}, STOP_7)],
        id="a StopEvent completes the run with its result",
    ),
    pytest.param(
        Emitted([STOP_NONE]), [("complete", None, STOP_NONE)],
        id="a StopEvent without a result completes the run with None",
    ),
    pytest.param(
        Emitted([REPORT]), [("complete", REPORT, REPORT)],
        id="a StopEvent subclass is itself the result",
    ),
    pytest.param(
        Emitted([B0, STOP_7]), [("complete", {"answer": 7}, STOP_7)],
        id="a StopEvent among other events completes the run and dispatches nothing",
    ),
    pytest.param(
        Emitted([B0]), [("dispatch", [("either", B0)])], id="a plain event gives one Dispatch"
    ),
    pytest.param(
        Emitted([A0, B0]), [("dispatch", [("left", A0), ("right", A0), ("either", B0)])],
        id="several events give a single Dispatch holding every delivery",
    ),
    pytest.param(
        Emitted([A0, A1], batch=True),
        [("dispatch", [("left", A0), ("right", A0), ("left", A1), ("right", A1),
                       ("gather", [A0, A1])])],
        id="a returned list also feeds the list step as one batch",
    ),
    pytest.param(Emitted(), [], id="nothing emitted gives no commands"),
    pytest.param(Emitted([], batch=True), [], id="an empty returned list gives no commands"),
    pytest.param(Emitted([S0]), [], id="an event no step accepts gives no commands"),
]  # fmt: skip


@pytest.mark.parametrize(("emitted", "expected"), OUTPUT_TABLE)
def test_react_to_output(emitted: Emitted, expected: list[tuple[Any, ...]]) -> None:
    assert view(react_to_output(FANOUT, "inv", emitted)) == expected


def test_a_stop_event_subclass_result_is_the_very_event_and_a_plain_one_unwraps() -> None:
    [typed] = react_to_output(FANOUT, "inv", Emitted([REPORT]))
    [plain] = react_to_output(FANOUT, "inv", Emitted([STOP_7]))
    assert isinstance(typed, CompleteRun) and typed.result is REPORT
    assert isinstance(plain, CompleteRun) and plain.result is STOP_7.result


def test_a_redelivered_step_dispatches_the_same_successors() -> None:
    def emitted() -> Emitted:
        return Emitted([CTAlpha(n=0), CTBeta(n=10), CTAlpha(n=1)], batch=True)

    first = react_to_output(FANOUT, "inv-9", emitted())
    again = react_to_output(FANOUT, "inv-9", emitted())
    other = react_to_output(FANOUT, "inv-8", emitted())
    assert first == again
    [d1], [d2] = first, other
    assert isinstance(d1, Dispatch) and isinstance(d2, Dispatch)
    assert {d.invocation_id for d in d1.deliveries}.isdisjoint(
        d.invocation_id for d in d2.deliveries
    )


# --- react_to_failure ---------------------------------------------------------------------


def spec_step(spec: WorkflowSpec, name: str) -> StepSpec:
    return spec.steps[name]


class Forced(WorkflowTimeoutError):
    retryable = False  # a timeout is retried whatever its flag says


FAILURE_TABLE = [
    pytest.param(ValueError("boom"), 1, [("retry", 0.5, 2)],
                 id="a plain error on attempt 1 of 3 is retried after the first delay"),
    pytest.param(ValueError("boom"), 2, [("retry", 1.0, 3)],
                 id="the next retry waits the backed-off delay"),
    pytest.param(ValueError("boom"), 3, [("fail", "StepFailedError", 3, "ValueError")],
                 id="with attempts spent the run fails with StepFailedError"),
    pytest.param(ConnectionError("down"), 1, [("retry", 0.5, 2)],
                 id="any non-Baton exception is retryable"),
    pytest.param(WorkflowTimeoutError("slow"), 1, [("retry", 0.5, 2)],
                 id="a step timeout is retried"),
    pytest.param(Forced("slow"), 2, [("retry", 1.0, 3)],
                 id="a step timeout is retried even when flagged not retryable"),
    pytest.param(WorkflowTimeoutError("slow"), 3, [("fail", "StepFailedError", 3,
                                                    "WorkflowTimeoutError")],
                 id="a step timeout with attempts spent fails the run"),
    pytest.param(ToolError("flaky tool", retryable=True), 1, [("retry", 0.5, 2)],
                 id="a retryable ToolError is retried"),
    pytest.param(ToolError("bad args", retryable=False), 1,
                 [("fail", "StepFailedError", 1, "ToolError")],
                 id="a ToolError marked not retryable fails at once"),
    pytest.param(InvalidInputError("bad"), 1, [("fail", "StepFailedError", 1, "InvalidInputError")],
                 id="a non-retryable BatonError fails the run at once despite retries left"),
    pytest.param(RunCancelledError("stop"), 1, [("fail", "StepFailedError", 1,
                                                 "RunCancelledError")],
                 id="a cancellation is not retried"),
]  # fmt: skip


@pytest.mark.parametrize(("exc", "attempt", "expected"), FAILURE_TABLE)
def test_react_to_failure_under_a_retry_policy(
    exc: BaseException, attempt: int, expected: list[tuple[Any, ...]]
) -> None:
    flaky = spec_step(RETRYING, "flaky")
    assert view(react_to_failure(RETRYING, flaky, "inv", START, exc, attempt)) == expected


def test_a_step_without_a_retry_policy_fails_on_its_first_error() -> None:
    once = spec_step(RETRYING, "once")
    commands = react_to_failure(RETRYING, once, "inv", B0, ValueError("x"), 1)
    assert view(commands) == [("fail", "StepFailedError", 1, "ValueError")]


def test_the_failure_names_the_step_the_attempts_and_the_cause() -> None:
    flaky = spec_step(RETRYING, "flaky")
    [cmd] = react_to_failure(RETRYING, flaky, "inv", START, ValueError("boom"), 3)
    assert isinstance(cmd, FailRun)
    err = cmd.error
    assert err.type == "StepFailedError"
    assert err.message == (
        "step CoreTableRetrying.flaky failed after 3 attempt(s): ValueError: boom"
    )
    assert (err.attempts, err.retryable) == (3, False)
    assert err.details["step"] == "CoreTableRetrying.flaky"
    assert err.details["cause_type"] == "ValueError"
    assert "cause" not in err.details  # only Baton errors carry their own info


def test_a_baton_cause_travels_as_data_inside_the_failure() -> None:
    flaky = spec_step(RETRYING, "flaky")
    cause = UnknownWorkflowError("no such workflow", workflow="Nope")
    [cmd] = react_to_failure(RETRYING, flaky, "inv", START, cause, 1)
    assert isinstance(cmd, FailRun)
    inner = cmd.error.details["cause"]
    assert (inner["type"], inner["message"], inner["retryable"]) == (
        "UnknownWorkflowError",
        "no such workflow",
        False,
    )
    assert inner["details"] == {"workflow": "Nope"}


def handler_view(commands: list[Command]) -> tuple[str, str, StepFailedEvent]:
    [cmd] = commands
    assert isinstance(cmd, Dispatch), cmd
    [delivery] = cmd.deliveries
    assert isinstance(delivery.event, StepFailedEvent)
    return delivery.step, delivery.invocation_id, delivery.event


def test_a_step_with_retries_left_is_retried_before_its_error_handler_is_called() -> None:
    risky = spec_step(GUARDED, "risky")
    commands = react_to_failure(GUARDED, risky, "inv", START, ValueError("x"), 1)
    assert view(commands) == [("retry", 1.0, 2)]


def test_spent_retries_dispatch_a_step_failed_event_to_the_error_handler() -> None:
    risky = spec_step(GUARDED, "risky")
    commands = react_to_failure(GUARDED, risky, "inv-r", START, ValueError("boom"), 2)
    name, inv_id, failed = handler_view(commands)
    assert name == "recover"
    assert (failed.step_name, failed.attempts) == ("risky", 2)
    assert failed.error.type == "StepFailedError"
    assert failed.error.details["step"] == "CoreTableGuarded.risky"
    assert failed.error.message.endswith("failed after 2 attempt(s): ValueError: boom")
    assert failed.input_event == encode_event(START)
    # deterministic: a redelivered failure hands the same invocation to the handler
    assert (
        handler_view(react_to_failure(GUARDED, risky, "inv-r", START, ValueError("boom"), 2))[1]
        == inv_id
    )
    assert (
        inv_id
        != handler_view(react_to_failure(GUARDED, risky, "inv-s", START, ValueError("boom"), 2))[1]
    )


def test_a_non_retryable_error_goes_to_the_handler_at_once() -> None:
    risky = spec_step(GUARDED, "risky")
    commands = react_to_failure(GUARDED, risky, "inv", START, InvalidInputError("bad"), 1)
    name, _, failed = handler_view(commands)
    assert (name, failed.step_name, failed.attempts) == ("recover", "risky", 1)
    assert failed.error.details["cause_type"] == "InvalidInputError"


def test_a_failed_batch_step_hands_its_whole_batch_to_the_handler() -> None:
    pool = spec_step(GUARDED, "pool")
    commands = react_to_failure(GUARDED, pool, "inv", [A0, A1], RuntimeError("x"), 1)
    name, _, failed = handler_view(commands)
    assert (name, failed.step_name) == ("recover", "pool")
    assert failed.input_event == {"batch": [encode_event(A0), encode_event(A1)]}


@pytest.mark.parametrize(
    ("exc", "attempt"),
    [
        pytest.param(ValueError("handler broke"), 1, id="a plain error"),
        pytest.param(InvalidInputError("handler broke"), 1, id="a non-retryable error"),
        pytest.param(ValueError("handler broke"), 5, id="late attempt"),
    ],
)
def test_a_failing_error_handler_fails_the_run_instead_of_handling_itself(
    exc: BaseException, attempt: int
) -> None:
    recover = spec_step(GUARDED, "recover")
    failed = StepFailedEvent(step_name="risky", error=BatonError("x").to_info(), attempts=2)
    [cmd] = react_to_failure(GUARDED, recover, "inv", failed, exc, attempt)
    assert isinstance(cmd, FailRun)
    assert cmd.error.details["step"] == "CoreTableGuarded.recover"
    assert cmd.error.details["cause_type"] == type(exc).__name__


@pytest.mark.parametrize(
    ("failing", "event", "handled"),
    [
        pytest.param("guarded", START, True, id="a step the handler names goes to it"),
        pytest.param("unguarded", B0, False, id="a step the handler does not name fails the run"),
    ],
)
def test_a_handler_limited_to_some_steps(failing: str, event: Event, handled: bool) -> None:
    commands = react_to_failure(NARROW, spec_step(NARROW, failing), "inv", event, KeyError(), 1)
    if handled:
        name, _, failed = handler_view(commands)
        assert (name, failed.step_name) == ("recover", failing)
    else:
        [cmd] = commands
        assert isinstance(cmd, FailRun)
        assert cmd.error.details["step"] == f"CoreTableNarrowGuard.{failing}"


def test_without_a_handler_a_spent_step_fails_the_run() -> None:
    gather = spec_step(FANOUT, "gather")
    [cmd] = react_to_failure(FANOUT, gather, "inv", [A0], ValueError("x"), 1)
    assert isinstance(cmd, FailRun)
    assert cmd.error.details["step"] == "CoreTableFanout.gather"


# --- collect_match / arrange --------------------------------------------------------------

COLLECT_TABLE = [
    pytest.param([], [], [], id="nothing expected is complete at once"),
    pytest.param(["A", "B"], [], [], id="nothing expected takes nothing"),
    pytest.param([], ["A"], None, id="an empty buffer fills nothing"),
    pytest.param(["A"], ["A"], [0], id="a single expected event"),
    pytest.param(["A"], ["A", "B"], None, id="a short buffer is not complete"),
    pytest.param(["B", "A"], ["A", "B"], [1, 0], id="positions follow the expected order"),
    pytest.param(["A", "B"], ["B", "A"], [1, 0], id="expected order, not arrival order"),
    pytest.param(["A", "A", "B"], ["A", "B"], [0, 2], id="of duplicates the oldest is taken"),
    pytest.param(["A", "B", "A"], ["A", "A"], [0, 2], id="a repeated type takes in arrival order"),
    pytest.param(["A", "A"], ["A", "A", "A"], None, id="too few of a repeated type"),
    pytest.param(["A", "A", "A", "C"], ["A", "B"], None, id="a missing type, buffer long enough"),
    pytest.param(["C", "C", "C"], ["A"], None, id="only strays"),
    pytest.param(["C", "A", "C", "B"], ["B", "A"], [3, 1], id="strays are skipped"),
    pytest.param(
        ["A", "B", "A", "B", "A", "B"], ["B", "B", "A"], [1, 3, 0], id="interleaved surplus"
    ),
    pytest.param(
        ["B", "A", "B", "C", "A"], ["A", "B", "A"], [1, 0, 4], id="the k-th expected takes the k-th"
    ),
    pytest.param(
        ["B", "A", "B", "C", "A"], ["C", "B", "B"], [3, 0, 2], id="a late type with early ones"
    ),
    pytest.param(["B", "A", "B", "C", "A"], ["A", "A", "A"], None, id="one short of a type"),
]


@pytest.mark.parametrize(("buffer", "expected", "answer"), COLLECT_TABLE)
def test_collect_match(buffer: list[str], expected: list[str], answer: list[int] | None) -> None:
    assert collect_match(buffer, expected) == answer


def test_collect_match_takes_the_oldest_of_each_type_exactly_when_all_are_in() -> None:
    rng = random.Random(20240611)
    for _ in range(500):
        buffer = rng.choices("ABC", k=rng.randint(0, 9))
        expected = rng.choices("ABC", k=rng.randint(0, 4))
        chosen = collect_match(buffer, expected)
        need, have = Counter(expected), Counter(buffer)
        if any(have[t] < n for t, n in need.items()):
            assert chosen is None, (buffer, expected)
            continue
        assert chosen is not None, (buffer, expected)
        assert [buffer[i] for i in chosen] == expected, (buffer, expected)
        for tag, n in need.items():  # per type: the n oldest, oldest first
            oldest = [i for i, t in enumerate(buffer) if t == tag][:n]
            assert [i for i, t in zip(chosen, expected, strict=True) if t == tag] == oldest


TA, TAP, TB, TG = CTAlpha.type_tag, CTAlphaPrime.type_tag, CTBeta.type_tag, CTGamma.type_tag

ARRANGE_TABLE = [
    pytest.param([], [], [], id="nothing"),
    pytest.param([A1], [TA], [A1], id="one event"),
    pytest.param([A1, B0, A2], [TA, TA, TB], [A1, A2, B0], id="grouped as expected lists types"),
    pytest.param([B0, A1, A2], [TA, TB, TA], [A1, B0, A2], id="interleaved as expected lists"),
    pytest.param([A2, A1], [TA, TA], [A2, A1], id="oldest first within a type"),
    pytest.param([A1, B0, A2], [TA, TB, TA], [A1, B0, A2], id="already arranged is unchanged"),
    pytest.param([A1, AP], [TAP, TA], [AP, A1], id="a subclass is its own type"),
    pytest.param([G0, B0, A0], [TA, TB, TG], [A0, B0, G0], id="reversed arrival"),
]


@pytest.mark.parametrize(("taken", "expected", "answer"), ARRANGE_TABLE)
def test_arrange(taken: list[Event], expected: list[str], answer: list[Event]) -> None:
    got = arrange(list(taken), expected)
    assert len(got) == len(answer)
    assert all(g is a for g, a in zip(got, answer, strict=True)), (got, answer)


def test_arrange_reads_the_same_whether_taken_in_arrival_or_expected_order() -> None:
    """The Lua script returns the taken events in arrival order, collect_match in expected
    order: after ``arrange`` a decided answer and a replayed one are the same list."""
    kinds: dict[str, type[Event]] = {"A": CTAlpha, "B": CTBeta, "G": CTGamma}
    rng = random.Random(7)
    checked = 0
    for _ in range(300):
        letters = rng.choices("ABG", k=rng.randint(0, 8))
        events = [kinds[t](n=i) for i, t in enumerate(letters)]
        expected = [kinds[t].type_tag for t in rng.choices("ABG", k=rng.randint(1, 4))]
        chosen = collect_match([type(e).type_tag for e in events], expected)
        if chosen is None:
            continue
        in_expected_order = [events[i] for i in chosen]
        in_arrival_order = [events[i] for i in sorted(chosen)]
        assert arrange(in_arrival_order, expected) == in_expected_order
        assert arrange(in_expected_order, expected) == in_expected_order
        checked += 1
    assert checked > 50  # the generator does produce complete sets

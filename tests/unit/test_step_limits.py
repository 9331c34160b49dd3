"""Rate and concurrency limits of steps: validated at decoration (as ``@tool``'s), keyed by the
step's input event, kept apart from tools' keys in Redis, and applied per process in-process."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from typing import Any

import pytest

from tasks.keys import Keys
from tests.unit.helpers import scratch_registry
from workflows import StartEvent, StepFailedError, StopEvent, Workflow, step


class UserStart(StartEvent):
    user: str = ""


def _define(**options: Any) -> type[Workflow]:
    """A one-step workflow whose step has ``options``."""

    class UnitLimitedStep(Workflow):
        @step(**options)
        async def go(self, ev: UserStart) -> StopEvent:
            return StopEvent(result=ev.user)

    return UnitLimitedStep


@pytest.mark.parametrize("text", ["", "5", "0/s", "5/d", "1.5/s"])
def test_a_bad_step_rate_limit_is_a_one_line_value_error_at_decoration(text: str) -> None:
    with scratch_registry(), pytest.raises(ValueError, match="bad rate limit") as info:
        _define(rate_limit=text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True])
def test_a_bad_step_concurrency_is_a_one_line_value_error_at_decoration(bad: Any) -> None:
    with scratch_registry(), pytest.raises(ValueError, match="bad concurrency") as info:
        _define(concurrency=bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"rate_key": lambda ev: ev.user}, "rate_key needs a rate_limit"),
        ({"rate_limit": "1/s", "rate_key": "user"}, "rate_key needs a rate_limit"),
        ({"concurrency_key": lambda ev: ev.user}, "concurrency_key needs a concurrency"),
        ({"concurrency": 2, "concurrency_key": 3}, "concurrency_key needs a concurrency"),
    ],
)
def test_a_step_limit_key_needs_its_limit_and_must_be_a_function(
    options: dict[str, Any], words: str
) -> None:
    with scratch_registry(), pytest.raises(ValueError, match=words) as info:
        _define(**options)
    assert "\n" not in str(info.value) and "function of the event" in str(info.value)


def test_a_limited_step_keys_its_limits_by_its_event() -> None:
    with scratch_registry():
        flow = _define(
            rate_limit="3/m",
            rate_key=lambda ev: ev.user,
            concurrency=2,
            concurrency_key=lambda ev: ev.user.upper(),
        )
        spec = flow.spec.steps["go"]
        assert spec.options.rate is not None and spec.options.rate.interval == 20.0
        assert spec.rate_key_of(UserStart(user="ann")) == "ann"
        assert spec.concurrency_key_of(UserStart(user="ann")) == "ANN"
        assert _define().spec.steps["go"].rate_key_of(UserStart(user="ann")) == ""


def test_step_limit_keys_never_collide_with_tool_limit_keys() -> None:
    keys = Keys("b")
    assert keys.rate("Flow.go", "ann", "step") == "b:limit:step:rate:Flow.go:ann"
    assert keys.concurrency("Flow.go", "", "step") == "b:limit:step:conc:Flow.go:"
    assert keys.reservation("r", "i", 1, "step") == "b:limit:step:res:r:i:1"
    # a tool named "step" keyed "rate:Flow.go": still under limit:rate:, never limit:step:
    assert keys.rate("step", "rate:Flow.go:ann") == "b:limit:rate:step:rate:Flow.go:ann"


class Hold(StartEvent):
    user: str = ""
    hold: float = 0.05


def _gather(flow: type[Workflow], starts: Sequence[StartEvent]) -> list[Any]:
    """Every run at once, in one process (one event loop)."""

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(flow().run(s) for s in starts)))

    return asyncio.run(main())


def test_in_process_a_step_rate_limit_spaces_its_starts_across_runs() -> None:
    starts: list[float] = []

    with scratch_registry():

        class UnitRatedStep(Workflow):
            @step(rate_limit="20/s")
            async def go(self, ev: Hold) -> StopEvent:
                starts.append(time.monotonic())
                return StopEvent(result=ev.user)

        assert _gather(UnitRatedStep, [Hold(user=str(i)) for i in range(5)]) == list("01234")
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 5 and min(gaps) >= 0.045  # 20/s: 50 ms apart, across runs
    assert starts[-1] - starts[0] >= 0.19


def _peak(spans: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an exit sorts before an enter at one time)."""
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    level = peak = 0
    for _, step_ in events:
        level += step_
        peak = max(peak, level)
    return peak


def test_in_process_a_step_concurrency_limit_holds_per_key_across_runs() -> None:
    held: dict[str, list[tuple[float, float]]] = {"ann": [], "bob": []}

    with scratch_registry():

        class UnitBoundedStep(Workflow):
            @step(num_workers=10, concurrency=2, concurrency_key=lambda ev: ev.user)
            async def go(self, ev: Hold) -> StopEvent:
                entered = time.monotonic()
                await asyncio.sleep(ev.hold)
                held[ev.user].append((entered, time.monotonic()))
                return StopEvent(result=ev.user)

        runs = [Hold(user=u) for u in ["ann", "bob"] * 4]
        assert _gather(UnitBoundedStep, runs) == ["ann", "bob"] * 4
    assert [_peak(held[u]) for u in ("ann", "bob")] == [2, 2]  # 2 per key, never 3
    assert _peak(held["ann"] + held["bob"]) == 4  # the keys ran side by side


def test_in_process_a_key_function_that_raises_fails_the_step() -> None:
    with scratch_registry():
        flow = _define(concurrency=1, concurrency_key=lambda ev: {"ann": 1}[ev.user])
        with pytest.raises(StepFailedError, match="KeyError"):
            _gather(flow, [UserStart(user="bob")])

"""An error in Baton's own in-process runtime code ends the run with that error as data: the
handler raises it at once, the run never hangs, and no task exception goes unretrieved."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any, NoReturn

import pytest

from workflows import Event, RunError, StartEvent, StepFailedError, StopEvent, Workflow, step
from workflows._engine import core

PROMPT = 5.0  # a run that ends "promptly" ends well within this; one that hangs never does


class Hop(Event):
    n: int = 0


class TwoSteps(Workflow):
    @step
    async def first(self, ev: StartEvent) -> Hop:
        return Hop(n=1)

    @step
    async def second(self, ev: Hop) -> StopEvent:
        return StopEvent(result=ev.n)


class Failing(Workflow):
    @step
    async def explode(self, ev: StartEvent) -> StopEvent:
        raise ValueError("step broke")


def engine_bug(*args: Any, **kwargs: Any) -> NoReturn:
    raise ZeroDivisionError("engine bug")


def outcome_within(workflow: Workflow, seconds: float = PROMPT) -> BaseException | None:
    """The error the run ended with (None if it completed); a hang fails the test."""

    async def go() -> BaseException | None:
        try:
            await asyncio.wait_for(workflow.run(), seconds)
        except TimeoutError:
            raise AssertionError(f"the run did not end within {seconds}s") from None
        except Exception as exc:
            return exc
        return None

    try:
        return asyncio.run(go())
    finally:
        gc.collect()  # an unretrieved task exception is logged when its task is collected


@pytest.mark.parametrize(
    ("workflow", "where"),
    [
        (TwoSteps, "react_to_output"),  # handling a step's output
        (Failing, "react_to_failure"),  # the retry decision
        (TwoSteps, "route"),  # routing the next events
    ],
)
def test_an_error_in_the_runtimes_own_code_fails_the_run_at_once(
    workflow: type[Workflow],
    where: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    original = getattr(core, where)
    calls: list[int] = []

    def broken(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if where == "route" and len(calls) == 1:
            return original(*args, **kwargs)  # the start event routes; the step's output not
        engine_bug()

    monkeypatch.setattr(core, where, broken)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        error = outcome_within(workflow())
    assert isinstance(error, RunError) and not isinstance(error, StepFailedError)
    assert "ZeroDivisionError: engine bug" in str(error)
    assert f"{workflow.name}." in str(error)  # names the step it was handling
    assert isinstance(error.__cause__, ZeroDivisionError)
    assert "never retrieved" not in caplog.text


def test_an_error_routing_the_start_event_fails_the_run_instead_of_raising_from_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(core, "route", engine_bug)
    error = outcome_within(TwoSteps())
    assert isinstance(error, RunError) and "ZeroDivisionError: engine bug" in str(error)

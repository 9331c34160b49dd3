"""A step's own exception reaches the distributed client as itself and as a StepFailedError
(issue #9, gap 2), rebuilt from the error as data in the run hash: no pickle crosses."""

from __future__ import annotations

from typing import Any

import pytest

from app.client import Client
from tests.harness import Worker
from tests.integration.error_flows import QuotaExceeded
from workflows import BatonError, InvalidInputError, StepFailedError


def failure(client: Client, workflow: str, **kwargs: Any) -> BatonError:
    handle = client.submit(workflow, **kwargs)
    with pytest.raises(BatonError) as info:
        handle.result(timeout=60)
    assert handle.status() == "failed"
    return info.value


def test_except_key_error_catches_a_steps_key_error_on_the_client(
    client: Client, workers: Worker
) -> None:
    handle = client.submit("ErrRaiser", case="key")
    try:
        handle.result(timeout=60)
    except KeyError as exc:
        assert exc.args == ("k",) and str(exc) == "'k'"
        assert isinstance(exc, StepFailedError)
        assert (exc.step, exc.attempts, exc.cause_type) == ("ErrRaiser.explode", 1, "KeyError")
        assert exc.message == "step ErrRaiser.explode failed after 1 attempt(s): KeyError: 'k'"
    else:
        raise AssertionError("no KeyError")


def test_an_os_error_comes_back_with_its_errno_and_filename(
    client: Client, workers: Worker
) -> None:
    err = failure(client, "ErrRaiser", case="oserror")
    assert isinstance(err, FileNotFoundError) and isinstance(err, StepFailedError)
    assert (err.errno, err.filename) == (2, "data.csv")
    assert str(err) == "[Errno 2] No such file or directory: 'data.csv'"


def test_a_user_exception_comes_back_with_its_args_and_json_attributes(
    client: Client, workers: Worker
) -> None:
    err = failure(client, "ErrRaiser", case="quota")
    assert isinstance(err, QuotaExceeded) and isinstance(err, StepFailedError)
    assert err.args == ("acme is over its quota of 3",)
    assert (err.tenant, err.limit) == ("acme", 3)
    assert err.detail == {"plan": "free", "resets": ["daily"]}


@pytest.mark.parametrize(
    ("case", "cause_type"),
    [
        pytest.param("local", "LocalError", id="a class the client cannot name"),
        pytest.param("baton", "InvalidInputError", id="a Baton error raised by the step"),
    ],
)
def test_a_plain_step_failed_error_when_the_class_cannot_or_should_not_be_rebuilt(
    client: Client, workers: Worker, case: str, cause_type: str
) -> None:
    err = failure(client, "ErrRaiser", case=case)
    assert type(err) is StepFailedError and err.cause_type == cause_type
    assert not isinstance(err, InvalidInputError)


@pytest.mark.parametrize("mode", ["distributed", "inprocess"])
def test_a_step_catches_its_childs_value_error_from_run_workflow(
    client: Client, workers: Worker, mode: str
) -> None:
    result = client.submit("ErrCatchesChild", case="value", mode=mode).result(timeout=60)
    assert result == {
        "args": ["child broke", 7],
        "class": "ValueError",
        "child_workflow_error": True,
        "step_failed_error": False,
    }


def test_a_step_catches_the_value_error_of_a_run_it_awaits_itself(
    client: Client, workers: Worker
) -> None:
    result = client.submit("ErrAwaitsChild").result(timeout=60)
    assert result == {
        "args": ["child broke", 7],
        "class": "ValueError",
        "child_workflow_error": False,
        "step_failed_error": True,
    }


def test_an_uncaught_child_failure_reaches_the_client_as_the_childs_exception(
    client: Client, workers: Worker
) -> None:
    err = failure(client, "ErrLetsChildFail")
    assert isinstance(err, ValueError) and err.args == ("child broke", 7)
    assert isinstance(err, StepFailedError) and err.cause_type == "ChildWorkflowError"

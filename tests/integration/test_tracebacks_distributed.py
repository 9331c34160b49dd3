"""On workers, a failed step's or tool's error carries its traceback (issue #10, point 2): the
client reads it from the run's error, ``baton status`` prints it, and the worker logs each
failed attempt once with the run id, the step (or tool) and the attempt."""

from __future__ import annotations

import uuid

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.client import Client
from tests.harness import RedisServer, Worker, eventually
from tests.integration.tool_error_flows import LetsToolFail, TriesTool
from workflows import StepFailedError

pytestmark = pytest.mark.integration
IMPORTS = '["examples", "tests.integration.flows"]'


def failed_boom(client: Client) -> tuple[str, StepFailedError]:
    """A run of ``Boom`` (its step ``explode`` raises ValueError, two attempts) and its error."""
    handle = client.submit("Boom", label=f"tb-{uuid.uuid4().hex[:8]}")
    with pytest.raises(StepFailedError) as info:
        handle.result(timeout=30)
    return handle.run_id, info.value


def logged(worker: Worker, text: str) -> str:
    """The worker's log once it holds ``text``."""

    def check() -> str | None:
        log = worker.log.read_text(errors="replace")
        return log if text in log else None

    return eventually(check, what=f"log line {text!r}")


def test_a_failed_steps_error_carries_the_traceback_naming_the_step_function(
    client: Client, workers: Worker
) -> None:
    _, err = failed_boom(client)
    text = err.details["traceback"]
    assert text.startswith("Traceback (most recent call last):")
    assert "in explode" in text and 'raise ValueError(f"boom {ev.label}")' in text
    assert text.rstrip().endswith(f"ValueError: {err.args[0]}")
    assert isinstance(err, ValueError)  # the combined original class is untouched


def test_baton_status_prints_the_error_then_its_traceback(
    client: Client, workers: Worker, redis_server: RedisServer
) -> None:
    run_id, err = failed_boom(client)
    env = {"BATON_REDIS_URL": redis_server.url, "BATON_IMPORTS": IMPORTS, "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["status", run_id], env=env)
    assert result.exit_code == 0, result.output
    output = result.output
    assert "failed" in output and "StepFailedError: step Boom.explode failed" in output
    shown = output.index("Traceback (most recent call last):")
    assert output.index("StepFailedError") < shown
    assert "in explode" in output[shown:] and f"ValueError: {err.args[0]}" in output[shown:]


def test_the_worker_logs_each_failed_step_attempt_once_with_run_step_and_attempt(
    client: Client, workers: Worker
) -> None:
    run_id, _ = failed_boom(client)
    for attempt in (1, 2):
        header = f"step Boom.explode failed in run {run_id} (attempt {attempt}): ValueError"
        log = logged(workers, header)
        assert log.count(header) == 1
        assert "in explode" in log[log.index(header) :]


def test_a_failed_tools_error_carries_its_traceback_and_is_logged_once(
    client: Client, workers: Worker
) -> None:
    handle = client.submit(TriesTool, tool="tef_find", params={"order_id": "TB1"})
    result = handle.result(timeout=30)
    text = result["error"]["details"]["traceback"]
    assert "in tef_find" in text and "OrderNotFound: no order TB1" in text
    header = f"tool tef_find failed in run {handle.run_id} (attempt 1): OrderNotFound"
    log = logged(workers, header)
    assert log.count(header) == 1
    assert "in tef_find" in log[log.index(header) :]


def test_a_tool_error_the_step_lets_through_keeps_the_tools_traceback_as_the_cause(
    client: Client, workers: Worker
) -> None:
    handle = client.submit(LetsToolFail, tool="tef_find", params={"order_id": "TB2"})
    with pytest.raises(StepFailedError) as info:
        handle.result(timeout=30)
    details = info.value.to_info().details
    assert "in answer" in details["traceback"]  # the step's frame, where call_tool raised
    assert "in tef_find" in details["cause"]["details"]["traceback"]

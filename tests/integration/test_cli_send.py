"""``baton send`` answers runs waiting for input, run as a shell command against real workers."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.client import Client, RunHandle, Waiting
from tests.harness import ROOT, RedisServer, Worker, eventually, worker_env
from tests.integration.flows import Answer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shell_env(redis_server: RedisServer, testdir: Path) -> dict[str, str]:
    return {**worker_env(redis_server.url, testdir), "COLUMNS": "200"}


def baton(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def waiting_for_input(handle: RunHandle) -> list[Waiting]:
    return eventually(handle.waiting, what=f"run {handle.run_id} waiting for input")


@pytest.fixture
def waiting_run(client: Client, workers: Worker) -> Iterator[RunHandle]:
    handle = client.submit("Approve", label=uuid.uuid4().hex)
    waiting_for_input(handle)
    yield handle
    handle.cancel()


def test_send_answers_a_waiting_run_and_the_run_completes_with_the_answer(
    shell_env: dict[str, str], client: Client, workers: Worker
) -> None:
    label = uuid.uuid4().hex
    handle = client.submit("Approve", label=label)
    [waiting] = waiting_for_input(handle)
    assert waiting == Waiting(handle.run_id, Answer.type_tag, {})
    listed = baton(shell_env, "send", handle.run_id)
    assert listed.returncode == 0, listed.stderr
    assert "waits for Answer" in listed.stdout and "approved: bool" in listed.stdout
    sent = baton(shell_env, "send", handle.run_id, "Answer", "-i", '{"approved": true}')
    assert sent.returncode == 0, sent.stderr
    assert handle.result(timeout=30) == {"label": label, "approved": True}
    assert handle.waiting() == []


def test_send_to_the_root_run_answers_a_child_waiting_for_input(
    shell_env: dict[str, str], client: Client, workers: Worker
) -> None:
    handle = client.submit("ApproveParent", label="child")
    [waiting] = waiting_for_input(handle)
    assert waiting.run_id != handle.run_id and waiting.event_type == Answer.type_tag
    assert client.get(waiting.run_id).waiting() == [waiting]
    listed = baton(shell_env, "send", handle.run_id)
    assert f"(child run {waiting.run_id})" in listed.stdout
    sent = baton(shell_env, "send", handle.run_id, Answer.type_tag, "-i", '{"approved": false}')
    assert sent.returncode == 0, sent.stderr
    assert handle.result(timeout=30) == {"child": {"label": "child", "approved": False}}


def test_send_lists_nothing_for_a_run_that_waits_for_no_input(
    shell_env: dict[str, str], client: Client, workers: Worker
) -> None:
    handle = client.submit("AddTwice", a=1, b=1)
    handle.result(timeout=30)
    listed = baton(shell_env, "send", handle.run_id)
    assert listed.returncode == 0
    assert f"run {handle.run_id} waits for no input (it is completed)" in listed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["NoSuchEvent"], "unknown event type 'NoSuchEvent'; candidates: " + Answer.type_tag),
        (["Answer", "-i", "{not json"], "--input is not valid JSON"),
        (["Answer", "-i", "[true]"], "must be a JSON object"),
        (["Answer", "-i", '{"approved": "maybe"}'], "invalid input for Answer: approved: "),
        (["Answer"], "invalid input for Answer: approved: Field required"),
    ],
)
def test_bad_event_type_or_input_is_one_error_line_and_the_run_keeps_waiting(
    shell_env: dict[str, str], waiting_run: RunHandle, args: list[str], message: str
) -> None:
    proc = baton(shell_env, "send", waiting_run.run_id, *args)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert [w.event_type for w in waiting_run.waiting()] == [Answer.type_tag]


def test_send_to_an_unknown_run_is_one_error_line(shell_env: dict[str, str]) -> None:
    proc = baton(shell_env, "send", "no-such-run", "Answer", "-i", json.dumps({"approved": True}))
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: no run 'no-such-run'")


def test_status_and_runs_say_a_run_waits_for_input_and_how_to_answer(
    shell_env: dict[str, str], waiting_run: RunHandle
) -> None:
    shown = baton(shell_env, "status", waiting_run.run_id)
    assert shown.returncode == 0, shown.stderr
    assert "waiting for input (Answer)" in shown.stdout
    assert f"baton send {waiting_run.run_id} Answer -i JSON" in shown.stdout
    listed = baton(shell_env, "runs", "-n", "50")
    row = next(line for line in listed.stdout.splitlines() if waiting_run.run_id in line)
    assert "waiting for input (Answer)" in row

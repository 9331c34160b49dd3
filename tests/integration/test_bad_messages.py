"""Bad input never runs: poison messages are rejected, kept as dead letters, runs fail clearly."""

from __future__ import annotations

import base64
import json
import pickle
import uuid

import pytest

from app.client import Client
from tasks.protocol import Message, StepArgs, ToolArgs
from tests.harness import Worker, eventually
from workflows import UnknownEventTypeError


def dead_letters(client: Client) -> list[dict[str, str]]:
    rt = client.runtime
    return [json.loads(x) for x in rt.redis.lrange(rt.keys.dead_letters(), 0, -1)]


def test_a_message_naming_an_unknown_event_type_fails_its_run_and_is_kept(
    client: Client, workers: Worker
) -> None:
    rt = client.runtime
    handle = client.submit("SlowStep", seconds=0.0)
    handle.result(timeout=30)
    poison = {"type": "os.system", "data": {"cmd": "rm -rf /"}}
    run = client.submit("AddTwice", a=1, b=1)
    rt.send(
        [rt.placement.step_message("AddTwice", "second", StepArgs(run.run_id, "forged", poison))]
    )
    with pytest.raises(UnknownEventTypeError, match=r"os\.system"):
        _first_error(client, run.run_id)
    assert any("os.system" in d["body"] for d in eventually(lambda: dead_letters(client)))


def _first_error(client: Client, run_id: str) -> None:
    handle = client.get(run_id)
    eventually(lambda: handle.status() != "running", what="run ended")
    handle.result(timeout=5)


def test_a_pickled_message_is_refused_and_kept_as_a_dead_letter(
    client: Client, workers: Worker
) -> None:
    rt = client.runtime
    key, payload = rt.publisher.frame(
        Message("tool.it_add", ToolArgs("no-run", "inv", "call", {}), "itest")
    )
    envelope = json.loads(payload)
    marker = uuid.uuid4().hex
    envelope["content-type"] = "application/x-python-serialize"
    envelope["content-encoding"] = "binary"
    envelope["body"] = base64.b64encode(pickle.dumps({"marker": marker})).decode()
    rt.redis.lpush(key, json.dumps(envelope))
    entries = eventually(lambda: [d for d in dead_letters(client) if "pickle" in d["reason"]])
    assert "untrusted" in entries[0]["reason"]
    assert rt.redis.llen(key) == 0  # consumed, not redelivered in a loop


def test_a_message_for_an_unknown_task_is_kept_as_a_dead_letter(
    client: Client, workers: Worker
) -> None:
    rt = client.runtime
    rt.send([Message("NoSuchWorkflow.step", StepArgs("no-run", "inv", {}), "itest")])
    assert eventually(
        lambda: [d for d in dead_letters(client) if "NoSuchWorkflow.step" in d["reason"]]
    )

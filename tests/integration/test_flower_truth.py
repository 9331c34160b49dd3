"""What Celery (and so Flower, which is built from these events) is told about each attempt
(issue #10, point 1), and the spans a run records (point 5), from real worker processes.

An attempt that raised is a ``task-failed`` event with its exception and traceback; one that
Baton retries is ``task-retried``; the next attempt's ``task-received`` counts its retries.
Baton's semantics stay: the run fails as data, and every message is acknowledged once.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from app.client import Client
from tasks.protocol import SpanKind, SpanOutcome
from tests.harness import StartWorker, Worker, eventually
from tests.integration.tool_error_flows import TriesTool
from workflows import StepFailedError

pytestmark = pytest.mark.integration


class Events:
    """Celery task events as Flower receives them, captured on a thread of their own."""

    def __init__(self, client: Client) -> None:
        self.app = client.runtime.app
        self.seen: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._capture, daemon=True)

    def _capture(self) -> None:
        with self.app.connection_for_read() as conn:
            self.receiver = self.app.events.Receiver(conn, handlers={"*": self._on_event})
            self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def close(self) -> None:
        self.receiver.should_stop = True
        self.thread.join(timeout=5)

    def _on_event(self, event: dict[str, Any]) -> None:
        with self.lock:
            self.seen.append(event)
        self.ready.set()  # a first event (a worker's heartbeat): the subscription is live

    def of(self, task_ids: set[str], kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.seen if e.get("uuid") in task_ids and e["type"] == kind]

    def by_args(self, text: str) -> set[str]:
        """Task ids whose ``task-received`` argsrepr mentions ``text`` (a run id)."""
        with self.lock:
            return {
                e["uuid"]
                for e in self.seen
                if e["type"] == "task-received" and text in str(e.get("args", ""))
            }


@pytest.fixture
def events(client: Client, workers: Worker) -> Iterator[Events]:
    captured = Events(client)
    captured.thread.start()
    assert captured.ready.wait(30), "no worker event reached the receiver"
    yield captured
    captured.close()


def received(events: Events, run_id: str, count: int) -> dict[str, dict[str, Any]]:
    """The ``task-received`` events of a run's tasks, once ``count`` of them came."""

    def check() -> dict[str, dict[str, Any]] | None:
        ids = events.by_args(run_id)
        got = {e["uuid"]: e for e in events.of(ids, "task-received")}
        return got if len(got) >= count else None

    return eventually(check, timeout=30, what=f"{count} tasks of run {run_id} received")


def test_a_step_attempt_retried_by_baton_is_retry_and_the_last_failed_one_is_failure(
    client: Client, events: Events
) -> None:
    handle = client.submit("Boom", label=f"ft-{uuid.uuid4().hex[:8]}")
    with pytest.raises(StepFailedError):
        handle.result(timeout=30)
    tasks = received(events, handle.run_id, 2)
    by_retries = {e["retries"]: uuid_ for uuid_, e in tasks.items()}
    assert sorted(by_retries) == [0, 1]  # Flower's "retries" column: attempt 2 is retry 1
    first, last = by_retries[0], by_retries[1]
    retried = eventually(lambda: events.of({first}, "task-retried"), what="task-retried")
    assert (
        "ValueError: boom" in retried[0]["exception"] and handle.run_id in retried[0]["exception"]
    )
    assert "in explode" in retried[0]["traceback"]
    failed = eventually(lambda: events.of({last}, "task-failed"), what="task-failed")
    exception, traceback = failed[0]["exception"], failed[0]["traceback"]
    assert "AttemptFailed" in exception and "step Boom.explode, attempt 2" in exception
    assert "in explode" in traceback and 'raise ValueError(f"boom {ev.label}")' in traceback
    assert not events.of({first, last}, "task-succeeded")
    assert not events.of({first}, "task-failed") and not events.of({last}, "task-retried")
    assert_acknowledged_once(client, handle.run_id)


def test_a_tool_attempt_that_raised_is_retry_then_failure_while_its_step_gets_the_error(
    client: Client, events: Events
) -> None:
    handle = client.submit(TriesTool, tool="tef_lookup_retried", params={"order_id": "FT1"})
    result = handle.result(timeout=30)
    assert result["ok"] is False and result["error"]["attempts"] == 2  # data for the step
    tasks = received(events, handle.run_id, 4)  # step, tool x2, step resumed
    tools = {e["retries"]: u for u, e in tasks.items() if e["name"] == "tool.tef_lookup_retried"}
    assert sorted(tools) == [0, 1]
    retried = eventually(lambda: events.of({tools[0]}, "task-retried"), what="task-retried")
    assert "tool tef_lookup_retried, attempt 1" in retried[0]["exception"]
    failed = eventually(lambda: events.of({tools[1]}, "task-failed"), what="task-failed")
    assert "in tef_lookup_retried" in failed[0]["traceback"]
    steps = {u for u, e in tasks.items() if e["name"] == "TriesTool.answer"}
    succeeded = eventually(
        lambda: (
            events.of(steps, "task-succeeded")
            if len(events.of(steps, "task-succeeded")) == 2
            else None
        ),
        what="both step deliveries succeeded",
    )
    assert len(succeeded) == 2
    assert_acknowledged_once(client, handle.run_id)


def assert_acknowledged_once(client: Client, run_id: str) -> None:
    """Every message of the run was delivered once and is no longer in flight or unacked."""
    rt = client.runtime

    def settled() -> bool:
        return not rt.redis.hlen(rt.keys.inflight(run_id))

    eventually(settled, what="nothing in flight")
    counts = rt.redis.hvals(rt.keys.deliveries(run_id))
    assert counts and set(counts) == {"1"}, counts
    unacked = rt.redis.hvals(rt.keys.unacked())
    assert not [u for u in unacked if run_id in u]


def test_spans_record_each_delivery_and_tool_attempt_with_queue_worker_and_outcome(
    client: Client, workers: Worker
) -> None:
    handle = client.submit(TriesTool, tool="tef_add", params={"a": 2, "b": 3})
    assert handle.result(timeout=30)["value"] == 5
    spans = eventually(lambda: s if len(s := handle.spans()) >= 3 else None, what="3 spans")
    assert [(s.kind, s.outcome) for s in spans] == [
        (SpanKind.STEP, SpanOutcome.SUSPENDED),
        (SpanKind.TOOL, SpanOutcome.COMPLETED),
        (SpanKind.STEP, SpanOutcome.COMPLETED),
    ]
    step1, tool, step2 = spans
    assert step1.inv == step2.inv == tool.inv and tool.call and not step1.call
    assert step1.name == "TriesTool.answer" and tool.name == "tef_add"
    for span in spans:
        assert span.queue == "itest" and span.worker == workers.name
        assert span.run == handle.run_id and span.attempt == 1
        assert span.start <= span.end
    assert step1.end <= tool.end <= step2.end


def test_spans_of_a_failing_step_name_each_attempt_and_its_error(
    client: Client, workers: Worker
) -> None:
    handle = client.submit("Boom", label="spans")
    with pytest.raises(StepFailedError):
        handle.result(timeout=30)
    spans = eventually(lambda: s if len(s := handle.spans()) >= 2 else None, what="2 spans")
    assert [(s.attempt, s.outcome) for s in spans] == [
        (1, SpanOutcome.RETRY),
        (2, SpanOutcome.FAILED),
    ]
    assert all(s.error == "ValueError: boom spans" for s in spans)


def test_task_events_reach_flower_batched_fewer_messages_than_tasks(
    client: Client, workers: Worker, events: Events
) -> None:
    """Every task's received, started and succeeded events arrive, in ``task.multi`` messages
    that each carry several (``guards.batched_task_events``): not three messages per task."""
    rt = client.runtime
    pubsub = rt.redis.pubsub()
    pubsub.psubscribe("*celeryev*")
    try:
        handle = client.submit("FanIn", n=20)
        assert handle.result(timeout=30) == [i * 2 for i in range(20)]
        tasks = received(events, handle.run_id, 41)  # fan, 20 work, 20 collect
        eventually(
            lambda: len(events.of(set(tasks), "task-succeeded")) == 41 or None,
            what="every task's task-succeeded",
        )
        carrying = 0  # the broker messages that carried this run's task events
        # all were published before the receiver saw them: they wait on the socket
        while (message := pubsub.get_message(timeout=0.5)) is not None:
            if message["type"] != "pmessage":
                continue
            envelope = json.loads(message["data"])
            body = json.loads(base64.b64decode(envelope["body"]))
            batch = body if isinstance(body, list) else [body]
            carrying += any(e.get("uuid") in tasks for e in batch)
    finally:
        pubsub.close()
    assert 0 < carrying < len(tasks), f"{carrying} event messages for {len(tasks)} tasks"


def test_a_worker_stopped_right_after_its_tasks_still_publishes_their_events(
    isolated_client: Client, isolated_workers: StartWorker
) -> None:
    """Batched events wait up to 50 ms for their flush: a warm shutdown flushes them as the
    consumer closes, so Flower never shows a finished task as still running."""
    worker = isolated_workers("itest", "evstop")
    captured = Events(isolated_client)
    captured.thread.start()
    try:
        assert captured.ready.wait(30), "no worker event reached the receiver"
        handle = isolated_client.submit("FanIn", n=3)
        assert handle.result(timeout=30) == [0, 2, 4]
        rt = isolated_client.runtime
        # every task returned and was acked (its task-succeeded sent to the buffer)
        eventually(lambda: rt.redis.hlen(rt.keys.unacked()) == 0, what="every task acked")
        worker.stop()  # SIGTERM at once: the last events may still wait for their flush
        tasks = received(captured, handle.run_id, 7)  # fan, 3 work, 3 collect
        eventually(
            lambda: len(captured.of(set(tasks), "task-succeeded")) == 7 or None,
            what="every task's task-succeeded after the worker stopped",
        )
    finally:
        captured.close()

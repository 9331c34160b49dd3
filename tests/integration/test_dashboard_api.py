"""The dashboard's JSON API (``/baton/api``) against a real uvicorn process, real workers and a
real redis: runs, spans, the live event stream, cancel, retry, answers, workflows' graphs,
queues and dead letters; bad input is a 4xx ``{"detail": ...}`` and writes nothing."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.client import Client
from tests.api_server import Dashboard
from tests.harness import RedisServer, Worker, eventually, worker_env
from workflows import StepFailedError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dashboard(redis_server: RedisServer, testdir: Path, workers: Worker) -> Iterator[Dashboard]:
    server = Dashboard(worker_env(redis_server.url, testdir), testdir / "dashboard.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(dashboard: Dashboard) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{dashboard.url}/baton/api", headers=dashboard.headers, timeout=10
    ) as session:
        yield session


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def refused(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    return detail


def sse(http: httpx.Client, run_id: str, **params: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The ``(event, data)`` pairs of a run's event stream, until the server ends it."""
    with http.stream("GET", f"/runs/{run_id}/events", params=params, timeout=30) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        kind, data = "message", ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
            elif line == "" and data:
                yield kind, json.loads(data)
                kind, data = "message", ""


def waiting_for_input(http: httpx.Client, run_id: str) -> dict[str, Any]:
    return eventually(
        lambda: (
            (d := ok(http.get(f"/runs/{run_id}")))["state"]["state"] == "waiting for input"
            and d["waiting"]
            and d
        ),
        what=f"run {run_id} waits for input",
    )


def test_a_completed_run_its_list_detail_spans_and_log(client: Client, http: httpx.Client) -> None:
    handle = client.submit("AddTwice", a=2, b=3)
    assert handle.result(timeout=30) == 10

    listed = ok(http.get("/runs", params={"limit": "500"}))["runs"]
    row = next(r for r in listed if r["run_id"] == handle.run_id)
    assert row["workflow"] == "AddTwice" and row["status"] == "completed"
    assert row["state"] is None and row["error"] is None
    assert [r["created"] for r in listed] == sorted((r["created"] for r in listed), reverse=True)
    completed = ok(http.get("/runs", params={"status": "completed", "limit": "500"}))["runs"]
    assert handle.run_id in {r["run_id"] for r in completed}
    assert {r["status"] for r in completed} == {"completed"}
    failed = ok(http.get("/runs", params={"status": "failed", "limit": "500"}))["runs"]
    assert handle.run_id not in {r["run_id"] for r in failed}
    assert len(ok(http.get("/runs", params={"limit": "1"}))["runs"]) == 1

    detail = ok(http.get(f"/runs/{handle.run_id}"))
    assert detail["workflow"] == "AddTwice" and detail["status"] == "completed"
    assert detail["result"] == 10 and detail["error"] is None and detail["waiting"] == []
    assert detail["state"]["state"] == "completed" and detail["retryable"] is False
    assert detail["info"]["run_id"] == handle.run_id
    assert detail["input"]["data"] == {"a": 2, "b": 3}

    spans = ok(http.get(f"/runs/{handle.run_id}/spans"))
    kinds = {(s["kind"], s["name"]) for s in spans["spans"]}
    assert {("step", "AddTwice.first"), ("step", "AddTwice.second"), ("tool", "it_add")} <= kinds
    assert all(s["duration"] >= 0 and s["queue"] == "itest" for s in spans["spans"])
    assert all(s["worker"] for s in spans["spans"])
    assert spans["total"] > 0
    rows = spans["rows"]
    # each step waited on a tool call: a group row, then its run, the call, its resume
    groups = [r for r in rows if not r["member"]]
    assert [g["label"] for g in groups] == ["AddTwice.first", "AddTwice.second"]
    assert [r["label"].split(" ", 1)[1] for r in rows[1:4]] == ["run", "tool it_add", "resume"]
    assert {r["style"] for r in rows} <= {"completed", "suspended"}
    assert all(0 <= r["offset"] <= spans["total"] + 1e-6 for r in rows)

    events = list(sse(http, handle.run_id))
    assert events[-1] == ("end", {})
    kinds_seen = [kind for kind, _ in events[:-1]]
    assert kinds_seen[0] == "event" and kinds_seen[-1] == "stop"
    assert events[-2][1]["data"]["data"]["result"] == 10
    # from an id on (what EventSource sends again as Last-Event-ID): only what came after
    middle = events[1][1]["id"]
    again = list(sse(http, handle.run_id, after=middle))
    assert [d for _, d in again] == [d for _, d in events[2:]]


def test_the_event_stream_is_live_until_the_run_ends(client: Client, http: httpx.Client) -> None:
    label = f"live-{uuid.uuid4().hex[:6]}"
    handle = client.submit("Approve", label=label)
    seen: list[tuple[str, dict[str, Any]]] = []
    done = threading.Event()

    def read() -> None:
        seen.extend(sse(http, handle.run_id))
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    eventually(lambda: any(kind == "input" for kind, _ in seen), what="the input request")
    assert not done.is_set()  # the run waits: the stream stays open
    answer = {"type": "Answer", "data": {"approved": True}}
    ok(http.post(f"/runs/{handle.run_id}/send", json=answer), 202)
    reader.join(timeout=30)
    assert done.is_set()
    assert [k for k, _ in seen][-2:] == ["stop", "end"]
    assert handle.result(timeout=30) == {"label": label, "approved": True}


def test_answering_a_waiting_run_refuses_bad_input_then_completes_it(
    client: Client, http: httpx.Client
) -> None:
    label = f"hitl-{uuid.uuid4().hex[:6]}"
    handle = client.submit("Approve", label=label)
    detail = waiting_for_input(http, handle.run_id)
    (waiting,) = detail["waiting"]
    assert waiting["name"] == "Answer" and waiting["run_id"] == handle.run_id
    assert waiting["event_type"].endswith(".Answer") and waiting["fields"] == {"approved": "bool"}
    assert detail["state"]["state"] == "waiting for input"
    assert detail["state"]["describe"] == "waiting for input (Answer)"
    row = next(r for r in ok(http.get("/runs"))["runs"] if r["run_id"] == handle.run_id)
    assert row["state"]["state"] == "waiting for input"

    send = f"/runs/{handle.run_id}/send"
    assert "JSON object" in refused(http.post(send, content=b"not json"), 400)
    assert "JSON object" in refused(http.post(send, json=["Answer"]), 400)
    assert "type" in refused(http.post(send, json={"data": {"approved": True}}), 400)
    assert "data" in refused(http.post(send, json={"type": "Answer", "data": [1]}), 400)
    assert "unknown event type" in refused(http.post(send, json={"type": "Nope", "data": {}}), 400)
    bad = refused(http.post(send, json={"type": "Answer", "data": {"approved": "maybe"}}), 400)
    assert "approved" in bad
    missing = refused(http.post(send, json={"type": "Answer", "data": {}}), 400)
    assert "approved" in missing
    assert ok(http.get(f"/runs/{handle.run_id}"))["waiting"] == detail["waiting"]  # untouched

    sent = ok(http.post(send, json={"type": "Answer", "data": {"approved": False}}), 202)
    assert sent["sent"] == "Answer"
    assert handle.result(timeout=30) == {"label": label, "approved": False}
    done = ok(http.get(f"/runs/{handle.run_id}"))
    assert done["waiting"] == [] and done["result"] == {"label": label, "approved": False}
    assert "takes no events" in refused(
        http.post(send, json={"type": "Answer", "data": {"approved": True}}), 409
    )


def test_a_failed_run_shows_its_error_and_traceback_and_is_retried(
    client: Client, http: httpx.Client
) -> None:
    label = f"boom-{uuid.uuid4().hex[:6]}"
    handle = client.submit("Boom", label=label)
    with pytest.raises(StepFailedError):
        handle.result(timeout=30)
    detail = ok(http.get(f"/runs/{handle.run_id}"))
    assert detail["status"] == "failed" and detail["retryable"] is True
    error = detail["error"]
    assert error["type"] == "StepFailedError" and label in error["message"]
    tracebacks = json.dumps(error["details"])
    assert "Traceback" in tracebacks and f"boom {label}" in tracebacks
    failed = ok(http.get("/runs", params={"status": "failed", "limit": "500"}))["runs"]
    assert next(r for r in failed if r["run_id"] == handle.run_id)["error"]["type"] == error["type"]

    spans = ok(http.get(f"/runs/{handle.run_id}/spans"))
    assert [(s["attempt"], s["outcome"]) for s in spans["spans"]] == [(1, "retry"), (2, "failed")]
    # one invocation, two attempts: its group row (how it ended), then each attempt
    rows = spans["rows"]
    assert [(r["member"], r["attempt"], r["style"]) for r in rows] == [
        (False, "", "failed"),
        (True, "1", "retry"),
        (True, "2", "failed"),
    ]
    assert f"boom {label}" in rows[2]["outcome"]
    events = list(sse(http, handle.run_id))
    assert [k for k, _ in events][-2:] == ["failed", "end"] and "retry" in dict(events)

    again = ok(http.post(f"/runs/{handle.run_id}/retry"), 201)
    assert again["retry_of"] == handle.run_id and again["run_id"] != handle.run_id
    retried = client.get(again["run_id"])
    with pytest.raises(StepFailedError):
        retried.result(timeout=30)
    assert ok(http.get(f"/runs/{again['run_id']}"))["input"] == detail["input"]
    cancelled = ok(http.post(f"/runs/{handle.run_id}/cancel"))
    assert cancelled == {"run_id": handle.run_id, "cancelled": False, "status": "failed"}


def test_cancel_a_running_run_then_retry_it(client: Client, http: httpx.Client) -> None:
    handle = client.submit("Approve", label=f"cancel-{uuid.uuid4().hex[:6]}")
    waiting_for_input(http, handle.run_id)
    before = {r["run_id"] for r in ok(http.get("/runs", params={"limit": "500"}))["runs"]}
    assert "only failed or cancelled" in refused(http.post(f"/runs/{handle.run_id}/retry"), 409)
    assert {r["run_id"] for r in ok(http.get("/runs", params={"limit": "500"}))["runs"]} == before
    got = ok(http.post(f"/runs/{handle.run_id}/cancel"))
    assert got == {"run_id": handle.run_id, "cancelled": True, "status": "cancelled"}
    detail = ok(http.get(f"/runs/{handle.run_id}"))
    assert detail["status"] == "cancelled" and detail["retryable"] and detail["waiting"] == []
    assert [k for k, _ in sse(http, handle.run_id)][-2:] == ["cancelled", "end"]
    again = ok(http.post(f"/runs/{handle.run_id}/retry"), 201)
    waiting_for_input(http, again["run_id"])
    assert ok(http.post(f"/runs/{again['run_id']}/cancel"))["cancelled"] is True


def test_unknown_runs_and_bad_parameters_are_refused(http: httpx.Client) -> None:
    run = uuid.uuid4().hex
    for method, path in [
        ("GET", f"/runs/{run}"),
        ("GET", f"/runs/{run}/spans"),
        ("GET", f"/runs/{run}/events"),
        ("POST", f"/runs/{run}/cancel"),
        ("POST", f"/runs/{run}/retry"),
    ]:
        assert run in refused(http.request(method, path), 404), path
    answer = {"type": "Answer", "data": {"approved": True}}
    assert run in refused(http.post(f"/runs/{run}/send", json=answer), 404)
    assert "unknown status" in refused(http.get("/runs", params={"status": "bogus"}), 400)
    assert "between" in refused(http.get("/runs", params={"limit": "0"}), 400)
    assert "integer" in refused(http.get("/runs", params={"limit": "many"}), 400)
    assert "between" in refused(http.get("/dead-letters", params={"limit": "100000"}), 400)
    assert refused(http.get("/workflows/NoSuchFlow/graph"), 404).startswith("no workflow")
    assert http.get(f"/runs/{run}/cancel").status_code == 405


def test_workflows_and_their_graphs(http: httpx.Client) -> None:
    listed = {w["name"]: w for w in ok(http.get("/workflows"))["workflows"]}
    assert {"AddTwice", "Approve", "Boom"} <= set(listed)
    assert listed["AddTwice"]["start"]["name"] == "Numbers"
    assert listed["AddTwice"]["start"]["fields"] == {"a": "int", "b": "int"}
    assert listed["AddTwice"]["steps"] == ["first", "second"]

    graph = ok(http.get("/workflows/AddTwice/graph"))
    assert [n["id"] for n in graph["nodes"]] == ["start", "step:first", "step:second", "stop"]
    edges = {(e["from"], e["to"], e["event"]) for e in graph["edges"]}
    assert edges == {
        ("start", "step:first", "Numbers"),
        ("step:first", "step:second", "Summed"),
        ("step:second", "stop", "StopEvent"),
    }
    first = next(n for n in graph["nodes"] if n["id"] == "step:first")
    assert [e["name"] for e in first["accepts"]] == ["Numbers"]
    assert [e["name"] for e in first["emits"]] == ["Summed"]

    fan = ok(http.get("/workflows/FanIn/graph"))
    fan_edges = {(e["from"], e["to"], e["event"]) for e in fan["edges"]}
    assert ("step:fan", "step:work", "Item") in fan_edges
    assert ("step:work", "step:collect", "Doubled") in fan_edges


def test_queues_and_dead_letters(client: Client, http: httpx.Client, workers: Worker) -> None:
    queues = ok(http.get("/queues"))
    rows = {q["queue"]: q for q in queues["queues"]}
    assert {"baton", "itest", "tools"} <= set(rows)
    itest = rows["itest"]
    assert isinstance(itest["depth"], int) and itest["depth"] >= 0
    assert [w["name"] for w in itest["workers"]] == [workers.name]
    assert itest["concurrency"] == 4 and itest["workers"][0]["pool"] == "prefork"
    assert workers.name in {w["name"] for w in queues["workers"]}
    assert isinstance(queues["unacked"], int) and isinstance(queues["dead_letters"], int)

    letters = ok(http.get("/dead-letters", params={"limit": "5"}))
    assert letters["total"] == queues["dead_letters"] or letters["total"] >= 0
    assert len(letters["dead_letters"]) <= 5
    for letter in letters["dead_letters"]:
        assert set(letter) == {"reason", "headers", "body"}


def test_the_pages_are_served_and_the_api_needs_the_token(dashboard: Dashboard) -> None:
    with httpx.Client(base_url=dashboard.url, headers=dashboard.headers, timeout=10) as web:
        home = web.get("/baton/", follow_redirects=False)
        assert home.status_code == 307 and home.headers["location"] == "ui/"
        page = web.get("/baton/ui/")
        assert page.status_code == 200 and "app.js" in page.text
        for name, kind in [("app.js", "javascript"), ("app.css", "text/css")]:
            got = web.get(f"/baton/ui/{name}")
            assert got.status_code == 200 and kind in got.headers["content-type"]
            text = got.text.replace('"http://www.w3.org/2000/svg"', "")  # a name, not a fetch
            assert "http://" not in text and "https://" not in text and "//cdn" not in text
    with httpx.Client(base_url=dashboard.url, timeout=10) as anonymous:
        assert anonymous.get("/baton/ui/app.js").status_code == 200  # files: no data in them
        assert anonymous.get("/baton/api/runs").status_code == 401
        assert anonymous.get("/handlers").status_code == 401
        login = anonymous.post("/baton/login", json={"token": dashboard.token})
        assert login.status_code == 200
        assert anonymous.get("/baton/api/runs").status_code == 200  # the cookie

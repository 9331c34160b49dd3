"""``baton serve`` as a subprocess on the session's redis and workers, driven over HTTP with
httpx: every route, bad input, auth, limits, NDJSON and SSE streams, HITL and cancel."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.client import Client
from tests.harness import ROOT, RedisServer, eventually, free_port, stop_group, worker_env

TOKEN = "test-token-" + "x" * 20
pytestmark = pytest.mark.usefixtures("workers")


@dataclass
class Served:
    """A running ``baton serve`` and a client for it."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    http: httpx.Client


def start_server(
    redis_url: str, testdir: Path, port: int, log_name: str, **env: Any
) -> subprocess.Popen[bytes]:
    """``baton serve`` on ``port``; returns once ``/health`` answers (or its log says why not)."""
    log = testdir / log_name
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=worker_env(redis_url, testdir, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"baton serve exited: {log.read_text()[-3000:]}")
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200

    try:
        eventually(up, timeout=30, interval=0.1, what="baton serve up")
    except BaseException:
        stop_group(proc)
        raise
    return proc


@pytest.fixture(scope="module")
def served(redis_server: RedisServer, testdir: Path) -> Iterator[Served]:
    port = free_port()
    proc = start_server(
        redis_server.url, testdir, port, "serve.log", BATON_API_TOKEN=TOKEN,
        BATON_API_MAX_BODY_BYTES=64 * 1024,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        yield Served(url, proc, testdir / "serve.log", http)
    stop_group(proc)


def nowait(served: Served, workflow: str, body: dict[str, Any]) -> dict[str, Any]:
    response = served.http.post(f"/workflows/{workflow}/run-nowait", json=body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def waiting_for_input(client: Client, run_id: str) -> bool:
    return bool(client.get(run_id).waiting())


# --- auth and limits ------------------------------------------------------------------------


def test_health_is_open_and_everything_else_needs_the_token(served: Served) -> None:
    assert httpx.get(f"{served.url}/health").json() == {"status": "healthy"}
    guarded = [
        ("GET", "/workflows"),
        ("GET", "/handlers"),
        ("GET", "/openapi.json"),
        ("POST", "/workflows/AddTwice/run-nowait"),
        ("GET", "/handlers/x"),
    ]
    for method, path in guarded:
        bare = httpx.request(method, served.url + path)
        assert bare.status_code == 401, path
        assert "detail" in bare.json()
        assert bare.headers["www-authenticate"] == "Bearer"
        wrong = httpx.request(method, served.url + path, headers={"Authorization": "Bearer no"})
        assert wrong.status_code == 401, path
    assert (
        "access-control-allow-origin"
        not in httpx.get(f"{served.url}/health", headers={"Origin": "https://evil.example"}).headers
    )


def test_login_sets_an_httponly_strict_cookie_that_authenticates(served: Served) -> None:
    refused = httpx.post(f"{served.url}/baton/login", json={"token": "wrong"})
    assert refused.status_code == 401
    assert "set-cookie" not in refused.headers
    for kwargs in ({"json": {"token": TOKEN}}, {"data": {"token": TOKEN}}):
        with httpx.Client(base_url=served.url) as browser:
            login = browser.post("/baton/login", **kwargs)  # type: ignore[arg-type]
            assert login.status_code == 200, login.text
            cookie = login.headers["set-cookie"].lower()
            assert "baton_token=" in cookie and "httponly" in cookie
            assert "samesite=strict" in cookie
            assert browser.get("/workflows").status_code == 200
            assert browser.post("/baton/logout").status_code == 200
            assert browser.get("/workflows").status_code == 401


def test_a_body_over_the_limit_is_413_and_writes_nothing(served: Served, client: Client) -> None:
    before = len(client.runs(limit=1000))
    big = {"start_event": {"label": "x" * (70 * 1024)}}
    response = served.http.post("/workflows/Approve/run-nowait", json=big)
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    chunked = served.http.post(
        "/workflows/Approve/run-nowait",
        content=iter([b'{"start_event": {"label": "', b"y" * (70 * 1024), b'"}}']),
        headers={"Content-Type": "application/json"},
    )
    assert chunked.status_code == 413
    assert len(client.runs(limit=1000)) == before


def test_refuses_to_start_without_a_token_unless_auth_is_off(
    redis_server: RedisServer, testdir: Path
) -> None:
    env = worker_env(redis_server.url, testdir)
    cmd = [sys.executable, "-m", "app.cli", "serve", "--port", str(free_port())]
    refused = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "BATON_API_TOKEN" in refused.stderr and "Traceback" not in refused.stderr
    port = free_port()
    proc = start_server(redis_server.url, testdir, port, "serve-noauth.log", BATON_API_AUTH="off")
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/workflows").status_code == 200
        assert "WARNING: authentication is OFF" in (testdir / "serve-noauth.log").read_text()
    finally:
        stop_group(proc)


def test_cors_only_for_configured_origins(redis_server: RedisServer, testdir: Path) -> None:
    port = free_port()
    proc = start_server(
        redis_server.url, testdir, port, "serve-cors.log", BATON_API_TOKEN=TOKEN,
        BATON_API_CORS_ORIGINS="https://ui.example",
    )  # fmt: skip
    try:
        preflight = {"Origin": "https://ui.example", "Access-Control-Request-Method": "POST"}
        ok = httpx.options(f"http://127.0.0.1:{port}/workflows", headers=preflight)
        assert ok.headers["access-control-allow-origin"] == "https://ui.example"
        other = httpx.options(
            f"http://127.0.0.1:{port}/workflows", headers={**preflight, "Origin": "https://x.y"}
        )
        assert "access-control-allow-origin" not in other.headers
    finally:
        stop_group(proc)


# --- workflows ---------------------------------------------------------------------------------


def test_workflow_routes(served: Served) -> None:
    names = served.http.get("/workflows").json()["workflows"]
    assert {"Approve", "AddTwice", "Research"} <= set(names)
    schema = served.http.get("/workflows/AddTwice/schema").json()
    assert set(schema["start"]["properties"]) == {"a", "b"}
    assert "result" in schema["stop"]["properties"]
    events = served.http.get("/workflows/AddTwice/events").json()["events"]
    assert [e["title"] for e in events] == ["Numbers", "Summed", "StopEvent"]
    graph = served.http.get("/workflows/AddTwice/representation").json()["graph"]
    assert graph["name"] == "AddTwice"
    assert {n["id"] for n in graph["nodes"]} >= {"first", "second", "Numbers", "Summed"}
    assert {"source": "Numbers", "target": "first"} in graph["edges"]
    for path in ("schema", "events", "representation"):
        missing = served.http.get(f"/workflows/Nope/{path}")
        assert missing.status_code == 404 and missing.json() == {"detail": "Workflow not found"}


def test_run_waits_and_returns_the_handler_with_its_result(served: Served) -> None:
    body = {"start_event": {"a": 2, "b": 3}, "context": {}}
    response = served.http.post("/workflows/AddTwice/run", json=body)
    assert response.status_code == 200, response.text
    handler = response.json()
    assert handler["status"] == "completed" and handler["workflow_name"] == "AddTwice"
    assert handler["run_id"] == handler["handler_id"]
    assert handler["result"]["type"] == "StopEvent"
    assert handler["result"]["value"] == {"result": 10}
    assert handler["completed_at"] and handler["started_at"] and handler["error"] is None
    result = served.http.get(f"/results/{handler['handler_id']}")
    assert result.status_code == 200 and result.json()["result"] == 10


def test_start_event_envelope_kwargs_and_failure(served: Served) -> None:
    envelope = {"start_event": {"type": "Numbers", "value": {"a": 1, "b": 1}}}
    assert served.http.post("/workflows/AddTwice/run", json=envelope).json()["result"]["value"] == {
        "result": 4
    }
    kwargs = served.http.post("/workflows/AddTwice/run", json={"kwargs": {"a": 0, "b": 1}})
    assert kwargs.json()["result"]["value"] == {"result": 2}
    failed = served.http.post("/workflows/Boom/run", json={"start_event": {"label": "z"}})
    assert failed.status_code == 500
    assert failed.json()["status"] == "failed" and "boom z" in failed.json()["error"]


def test_bad_run_input_is_4xx_and_writes_nothing(served: Served, client: Client) -> None:
    before = len(client.runs(limit=1000))
    cases = [
        ("/workflows/Nope/run-nowait", b"{}", 404),
        ("/workflows/AddTwice/run-nowait", b"{not json", 400),
        ("/workflows/AddTwice/run-nowait", b"[1, 2]", 400),
        ("/workflows/AddTwice/run-nowait", json.dumps({"start_event": {"a": "x"}}).encode(), 400),
        ("/workflows/AddTwice/run", json.dumps({"start_event": {"a": 1}}).encode(), 400),
        ("/workflows/AddTwice/run-nowait",
         json.dumps({"start_event": {"type": "Label", "value": {}}}).encode(), 400),
        ("/workflows/AddTwice/run-nowait", json.dumps({"kwargs": [1]}).encode(), 400),
        ("/workflows/AddTwice/run-nowait",
         json.dumps({"handler_id": "nope", "kwargs": {"a": 1, "b": 1}}).encode(), 404),
    ]  # fmt: skip
    for path, body, status in cases:
        response = served.http.post(path, content=body)
        assert response.status_code == status, (path, body, response.text)
        assert isinstance(response.json()["detail"], str)
        assert "\n" not in response.json()["detail"]
    assert len(client.runs(limit=1000)) == before


def test_handler_id_continues_an_ended_run_and_refuses_a_running_one(
    served: Served, client: Client
) -> None:
    running = nowait(served, "Approve", {"start_event": {"label": "c"}})
    conflict = served.http.post(
        "/workflows/Approve/run-nowait", json={"handler_id": running["handler_id"]}
    )
    assert conflict.status_code == 409
    served.http.post(f"/handlers/{running['handler_id']}/cancel")
    ended = served.http.post("/workflows/AddTwice/run", json={"start_event": {"a": 1, "b": 2}})
    again = served.http.post(
        "/workflows/AddTwice/run",
        json={"handler_id": ended.json()["handler_id"], "start_event": {"a": 1, "b": 1}},
    )
    assert again.status_code == 200 and again.json()["handler_id"] != ended.json()["handler_id"]


# --- handlers -------------------------------------------------------------------------------


def test_handlers_filters_and_statuses(served: Served, client: Client) -> None:
    done = served.http.post("/workflows/AddTwice/run", json={"start_event": {"a": 5, "b": 5}})
    live = nowait(served, "Approve", {"start_event": {"label": "h"}})
    assert live["status"] == "running" and live["completed_at"] is None
    got = served.http.get(f"/handlers/{live['handler_id']}")
    assert got.status_code == 202 and got.json()["status"] == "running"
    assert served.http.get(f"/results/{live['handler_id']}").status_code == 202
    assert served.http.get(f"/handlers/{done.json()['handler_id']}").status_code == 200
    for path in ("/handlers/nope", "/results/nope"):
        assert served.http.get(path).status_code == 404
        assert served.http.get(path).json() == {"detail": "Handler not found"}

    def ids(**params: Any) -> set[str]:
        response = served.http.get("/handlers", params=params)
        assert response.status_code == 200, response.text
        return {h["handler_id"] for h in response.json()["handlers"]}

    assert live["handler_id"] in ids(status="running")
    assert live["handler_id"] not in ids(status="completed")
    assert done.json()["handler_id"] in ids(status=["completed", "failed"])
    assert live["handler_id"] in ids(status="running", workflow_name="Approve")
    assert not ids(workflow_name="NoSuchWorkflow")
    assert not ids(status="bogus")
    assert len(ids(limit=1)) == 1
    assert served.http.get("/handlers", params={"limit": "0"}).status_code == 400
    served.http.post(f"/handlers/{live['handler_id']}/cancel")


def test_cancel(served: Served, client: Client) -> None:
    live = nowait(served, "Approve", {"start_event": {"label": "k"}})
    hid = live["handler_id"]
    purge = served.http.post(f"/handlers/{hid}/cancel", params={"purge": "true"})
    assert purge.status_code == 400
    assert client.get(hid).status() == "running"
    cancelled = served.http.post(f"/handlers/{hid}/cancel")
    assert cancelled.status_code == 200 and cancelled.json() == {"status": "cancelled"}
    assert client.get(hid).status() == "cancelled"
    got = served.http.get(f"/handlers/{hid}")
    assert got.status_code == 500 and got.json()["status"] == "cancelled"
    assert served.http.post(f"/handlers/{hid}/cancel").status_code == 409
    assert served.http.post("/handlers/nope/cancel").status_code == 404


# --- events ---------------------------------------------------------------------------------


def test_hitl_through_post_events(served: Served, client: Client) -> None:
    live = nowait(served, "Approve", {"start_event": {"type": "Label", "value": {"label": "q"}}})
    hid = live["handler_id"]
    eventually(lambda: waiting_for_input(client, hid), what="the run waits for Answer")
    bad = [
        ({}, 400),
        ({"event": {"type": "NoSuchEvent", "value": {}}}, 400),
        ({"event": {"type": "Answer", "value": {"approved": "maybe"}}}, 400),
        ({"event": {"type": "StopEvent", "value": {}}}, 400),
        ({"event": 5}, 400),
    ]
    for body, status in bad:
        response = served.http.post(f"/events/{hid}", json=body)
        assert response.status_code == status, (body, response.text)
        assert isinstance(response.json()["detail"], str)
    assert served.http.post(f"/events/{hid}", content=b"{oops").status_code == 400
    assert served.http.post("/events/nope", json={"event": {"type": "Answer"}}).status_code == 404
    sent = served.http.post(
        f"/events/{hid}",
        json={"event": json.dumps({"type": "Answer", "value": {"approved": True}})},
    )
    assert sent.status_code == 200 and sent.json() == {"status": "sent"}
    assert client.get(hid).result(timeout=30) == {"label": "q", "approved": True}
    late = served.http.post(f"/events/{hid}", json={"event": {"type": "Answer", "value": {}}})
    assert late.status_code == 409


def test_an_event_for_a_run_that_waits_for_nothing_is_400(served: Served) -> None:
    live = nowait(served, "SlowStep", {"start_event": {"seconds": 3}})
    response = served.http.post(
        f"/events/{live['handler_id']}",
        json={"event": {"type": "Answer", "value": {"approved": 1}}},
    )
    assert response.status_code == 400
    assert "Answer" in response.json()["detail"]


def test_answer_for_a_child_run_goes_through_the_root(served: Served, client: Client) -> None:
    live = nowait(served, "ApproveParent", {"start_event": {"label": "p"}})
    hid = live["handler_id"]
    eventually(lambda: waiting_for_input(client, hid), what="the child waits for Answer")
    body = {"event": {"type": "Answer", "value": {"approved": False}}}
    assert served.http.post(f"/events/{hid}", json=body).status_code == 200
    assert client.get(hid).result(timeout=30) == {"child": {"label": "p", "approved": False}}


def read_sse(response: httpx.Response) -> list[tuple[int, dict[str, Any]]]:
    events, current = [], None
    for line in response.iter_lines():
        if line.startswith("id:"):
            current = int(line[3:].strip())
        elif line.startswith("data:"):
            assert current is not None
            events.append((current, json.loads(line[5:].strip())))
    return events


def test_sse_and_ndjson_streams(served: Served) -> None:
    handler = served.http.post(
        "/workflows/Research/run", json={"start_event": {"topic": "ai", "n_docs": 2}}
    ).json()
    hid = handler["handler_id"]
    with served.http.stream("GET", f"/events/{hid}", params={"after_sequence": "-1"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        sse = read_sse(r)
    types = [e["type"] for _, e in sse]
    assert types[-1] == "StopEvent" and "ResearchProgress" in types
    assert sse[-1][1]["qualified_name"] == "workflows.events.StopEvent"
    progress = next(e for _, e in sse if e["type"] == "ResearchProgress")
    assert progress["qualified_name"] == "examples.research.ResearchProgress"
    assert set(progress["value"]) >= {"stage", "detail"}
    seqs = [s for s, _ in sse]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    ndjson = served.http.get(
        f"/events/{hid}",
        params={"sse": "false", "after_sequence": "-1", "include_qualified_name": "false"},
    )
    assert ndjson.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in ndjson.text.splitlines()]
    assert [e["type"] for e in lines] == types
    assert all(e["qualified_name"] is None for e in lines)
    resumed = served.http.get(
        f"/events/{hid}", params={"sse": "false", "after_sequence": str(seqs[0])}
    )
    assert [json.loads(line)["type"] for line in resumed.text.splitlines()] == types[1:]
    last_id = served.http.get(
        f"/events/{hid}", params={"after_sequence": "-1"}, headers={"Last-Event-ID": str(seqs[-2])}
    )
    assert [e["type"] for _, e in read_sse(last_id)] == ["StopEvent"]
    assert served.http.get(f"/events/{hid}").status_code == 204  # "now": nothing left
    assert served.http.get(f"/events/{hid}", params={"after_sequence": "x"}).status_code == 400
    assert served.http.get("/events/nope").status_code == 404


def test_live_stream_sees_the_input_request_and_the_end(served: Served, client: Client) -> None:
    live = nowait(served, "Approve", {"start_event": {"label": "s"}})
    hid = live["handler_id"]
    with served.http.stream(
        "GET", f"/events/{hid}", params={"sse": "false", "after_sequence": "-1"}
    ) as r:
        lines = r.iter_lines()
        first = json.loads(next(lines))
        assert first["type"] == "Ask" and first["types"] == ["InputRequiredEvent"]
        assert first["value"]["question"] == "ok s?"
        body = {"event": {"type": "Answer", "value": {"approved": True}}}
        assert served.http.post(f"/events/{hid}", json=body).status_code == 200
        rest = [json.loads(line) for line in lines]
    assert rest[-1]["type"] == "StopEvent"
    assert rest[-1]["value"]["result"] == {"label": "s", "approved": True}


def test_a_cancelled_run_ends_its_stream(served: Served) -> None:
    live = nowait(served, "Approve", {"start_event": {"label": "e"}})
    hid = live["handler_id"]
    with served.http.stream("GET", f"/events/{hid}", params={"sse": "false"}) as r:
        assert served.http.post(f"/handlers/{hid}/cancel").status_code == 200
        got = [json.loads(line) for line in r.iter_lines()]
    assert got[-1]["type"] == "WorkflowCancelledEvent" and got[-1]["types"] == ["StopEvent"]


def test_openapi_lists_every_route(served: Served) -> None:
    schema = served.http.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    served_routes = {
        ("get", "/health"), ("get", "/workflows"), ("post", "/workflows/{name}/run"),
        ("post", "/workflows/{name}/run-nowait"), ("get", "/workflows/{name}/schema"),
        ("get", "/workflows/{name}/events"), ("get", "/workflows/{name}/representation"),
        ("get", "/results/{handler_id}"), ("get", "/events/{handler_id}"),
        ("post", "/events/{handler_id}"), ("get", "/handlers"), ("get", "/handlers/{handler_id}"),
        ("post", "/handlers/{handler_id}/cancel"), ("post", "/baton/login"),
        ("post", "/baton/logout"),
    }  # fmt: skip
    documented = {(m, p) for p, ops in schema["paths"].items() for m in ops}
    assert documented == served_routes
    assert schema["paths"]["/health"]["get"]["security"] == []


def test_many_concurrent_streams_hold_no_thread_each(served: Served) -> None:
    """200 open streams on a waiting run: the server stays responsive (no thread per reader)."""
    live = nowait(served, "Approve", {"start_event": {"label": "m"}})
    hid = live["handler_id"]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=250)
    with httpx.Client(base_url=served.url, headers=headers, limits=limits, timeout=30) as many:
        streams = [
            many.stream("GET", f"/events/{hid}", params={"sse": "false", "after_sequence": "-1"})
            for _ in range(200)
        ]
        opened = [s.__enter__() for s in streams]
        try:
            assert all(r.status_code == 200 for r in opened)
            assert server_threads(served) < 60  # no thread per open stream
            assert served.http.get("/handlers", params={"limit": 5}).status_code == 200
            body = {"event": {"type": "Answer", "value": {"approved": True}}}
            assert served.http.post(f"/events/{hid}", json=body).status_code == 200
            for r in opened:
                types = [json.loads(line)["type"] for line in r.iter_lines()]
                assert types == ["Ask", "StopEvent"]
        finally:
            for s in streams:
                s.__exit__(None, None, None)


def server_threads(served: Served) -> int:
    status = Path(f"/proc/{served.proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def test_server_log_has_no_tracebacks(served: Served) -> None:
    assert "Traceback" not in served.log.read_text(), served.log.read_text()[-3000:]

"""The ``baton`` CLI against the session's redis and workers, and ``LocalStack`` on its own."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from app.cli import app
from app.client import Client
from app.metrics import MetricsServer
from app.stack import LocalStack
from config import Settings
from tests.harness import ROOT, RedisServer, Worker, eventually, free_port, spawn, worker_env

pytestmark = pytest.mark.integration
IMPORTS = '["examples", "tests.integration.flows"]'


@pytest.fixture(scope="module")
def cli_env(redis_server: RedisServer) -> dict[str, str]:
    return {"BATON_REDIS_URL": redis_server.url, "BATON_IMPORTS": IMPORTS, "COLUMNS": "200"}


def baton(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def test_submit_wait_prints_the_run_id_and_its_result(
    cli_env: dict[str, str], workers: Worker
) -> None:
    args = ["submit", "AddTwice", "--input", '{"a": 2, "b": 3}', "--wait"]
    result = CliRunner().invoke(app, args, env=cli_env)
    assert result.exit_code == 0, result.output
    run_id, value = result.stdout.split()  # stdout: what scripts read
    assert len(run_id) == 32
    assert json.loads(value) == 10
    assert '→ Summed {"total":5}' in result.stderr  # progress, live, on stderr
    assert "warning" not in result.stderr


def test_submit_wait_streams_the_runs_stream_events_as_they_come(
    cli_env: dict[str, str], workers: Worker
) -> None:
    args = ["submit", "Research", "-i", '{"topic": "cats", "n": 2}', "--wait"]
    result = CliRunner().invoke(app, args, env=cli_env)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    streamed = [line for line in lines if "stream ResearchProgress" in line]
    assert len(streamed) == 2 and '"stage":"plan"' in streamed[0]
    assert '"stage":"combine"' in streamed[1]
    assert json.loads(result.stdout.splitlines()[1])["topic"] == "cats"


def test_submit_warns_when_no_worker_consumes_the_first_steps_queue(
    cli_env: dict[str, str],
) -> None:
    env = {**cli_env, "BATON_KEY_PREFIX": f"nw{uuid.uuid4().hex[:6]}"}  # no worker serves it
    result = CliRunner().invoke(app, ["submit", "AddTwice", "-i", '{"a": 1, "b": 1}'], env=env)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.split()) == 1
    assert "warning: no worker consumes queue 'itest'" in result.stderr
    assert "baton worker -Q itest" in result.stderr


def test_status_events_timeline_and_runs_show_a_completed_run(
    cli_env: dict[str, str], client: Client, workers: Worker
) -> None:
    handle = client.submit("AddTwice", a=1, b=1)
    assert handle.result(timeout=30) == 4
    code, status = baton(cli_env, "status", handle.run_id)
    assert code == 0 and "AddTwice" in status and "completed" in status and "4" in status
    code, events = baton(cli_env, "events", handle.run_id)
    assert code == 0
    kinds_and_tags = [line.split()[1:3] for line in events.splitlines()]
    flows = "tests.integration.flows"
    assert kinds_and_tags[0] == ["event", f"{flows}.Numbers"]
    assert ["event", f"{flows}.Summed"] in kinds_and_tags
    assert kinds_and_tags[-1] == ["stop", "baton.StopEvent"]
    code, timeline = baton(cli_env, "timeline", handle.run_id)
    assert code == 0 and "Numbers" in timeline and "Summed" in timeline and "stop" in timeline
    chart = timeline[: timeline.index("events")]  # the Gantt chart comes first
    for shown in ("AddTwice.first", "AddTwice.second", "├─ run", "tool it_add", "└─ resume"):
        assert shown in chart, chart
    assert "suspended" in chart and "completed" in chart and "█" in chart
    code, runs = baton(cli_env, "runs", "--status", "completed", "--limit", "50")
    assert code == 0 and handle.run_id in runs


def test_events_follow_tails_a_running_run_until_it_ends(
    cli_env: dict[str, str], client: Client, workers: Worker
) -> None:
    handle = client.submit("SlowStep", seconds=0.5)
    code, output = baton(cli_env, "events", "--follow", handle.run_id)
    assert code == 0
    assert output.splitlines()[-1].split()[1:3] == ["stop", "baton.StopEvent"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "NoSuchFlow"], "no workflow named 'NoSuchFlow'"),
        (["submit", "AddTwice", "--input", "{not json"], "not valid JSON"),
        (["submit", "AddTwice", "--input", "[1, 2]"], "must be a JSON object"),
        (["submit", "AddTwice", "--input", '{"a": 1}'], "invalid input for AddTwice"),
        (["status", "no-such-run"], "no run 'no-such-run'"),
        (["timeline", "no-such-run"], "no run 'no-such-run'"),
        (["events", "no-such-run"], "no run 'no-such-run'"),
        (["cancel", "no-such-run"], "no run 'no-such-run'"),
        (["retry", "no-such-run"], "no run 'no-such-run'"),
        (["runs", "--status", "done"], "unknown status 'done'"),
    ],
)
def test_bad_input_is_one_error_line_and_a_nonzero_exit(
    cli_env: dict[str, str], args: list[str], message: str
) -> None:
    code, output = baton(cli_env, *args)
    assert code == 1
    assert output.startswith("error: ") and message in output
    assert len(output.strip().splitlines()) == 1, output


def test_unknown_workflow_from_the_shell_prints_no_traceback(
    redis_server: RedisServer, testdir: Path
) -> None:
    env = worker_env(redis_server.url, testdir)
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "submit", "NoSuchFlow", "--input", "{}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: no workflow named 'NoSuchFlow'")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_cancel_stops_a_running_run(
    cli_env: dict[str, str], client: Client, workers: Worker
) -> None:
    code, output = baton(cli_env, "submit", "SlowStep", "--input", '{"seconds": 30}')
    run_id = output.strip()
    handle = client.get(run_id)
    eventually(lambda: len(handle.timeline()) >= 1, what="run started")
    code, output = baton(cli_env, "cancel", run_id)
    assert code == 0 and f"cancelled run {run_id}" in output
    assert handle.status() == "cancelled"
    code, output = baton(cli_env, "cancel", run_id)
    assert code == 0 and "already ended" in output


def test_retry_submits_a_failed_runs_input_as_a_new_run(
    cli_env: dict[str, str], client: Client, workers: Worker
) -> None:
    failed = client.submit("Boom", label="again")
    eventually(lambda: failed.status() == "failed", what="run failed")
    code, output = baton(cli_env, "retry", failed.run_id, "--wait")
    assert code == 1 and "StepFailedError" in output and "boom again" in output
    new_id = output.split()[0]
    assert new_id != failed.run_id
    assert client.get(new_id).info().workflow == "Boom"
    done = client.submit("AddTwice", a=0, b=0)
    done.result(timeout=30)
    code, output = baton(cli_env, "retry", done.run_id)
    assert code == 1 and "only failed or cancelled runs" in output


def test_tools_lists_each_registered_tool_with_its_json_schema(cli_env: dict[str, str]) -> None:
    code, output = baton(cli_env, "tools", "--json")
    assert code == 0
    schemas = {s["name"]: s for s in json.loads(output)}
    assert set(schemas["it_add"]["parameters"]["properties"]) == {"a", "b"}
    code, output = baton(cli_env, "tools")
    assert code == 0 and "it_add" in output and "queue itest" in output


def test_dead_letters_lists_rejected_messages(redis_server: RedisServer) -> None:
    prefix = f"dl{uuid.uuid4().hex[:8]}"
    entry = {
        "reason": "unknown task 'Nope.step'",
        "headers": {"task": "Nope.step", "id": "t1"},
        "body": "[]",
    }
    with redis.Redis.from_url(redis_server.url) as r:
        r.lpush(f"{prefix}:dead", json.dumps(entry))
    env = {"BATON_REDIS_URL": redis_server.url, "BATON_KEY_PREFIX": prefix, "COLUMNS": "200"}
    code, output = baton(env, "dead-letters")
    assert code == 0 and "dead letters: 1" in output and "Nope.step" in output


def test_metrics_report_queue_depth_runs_by_status_and_dead_letters(
    cli_env: dict[str, str], client: Client, workers: Worker
) -> None:
    client.submit("AddTwice", a=5, b=5).result(timeout=30)
    code, output = baton(cli_env, "metrics")
    assert code == 0
    lines = output.splitlines()
    assert "baton_store_up 1" in lines
    assert any(line.startswith('baton_queue_depth{queue="itest"} ') for line in lines)
    completed = next(x for x in lines if x.startswith('baton_runs{status="completed"}'))
    assert float(completed.split()[-1]) >= 1
    assert any(line.startswith("baton_dead_letters ") for line in lines)
    server = MetricsServer(client.runtime, free_port()).start()
    try:
        with urllib.request.urlopen(server.url, timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert "# TYPE baton_queue_depth gauge" in resp.read().decode()
    finally:
        server.stop()


def test_worker_command_serves_its_queue_with_the_topologys_pool(
    redis_server: RedisServer, testdir: Path
) -> None:
    env = worker_env(redis_server.url, testdir)
    log = testdir / "cli-worker.log"
    proc = spawn(["app.cli", "worker", "-Q", "itest", "-c", "1", "-P", "threads"], env, log)
    try:
        eventually(lambda: "ready." in log.read_text(), timeout=40, what="worker ready")
        banner = log.read_text()
        assert "itest-" in banner and "concurrency: 1 (thread)" in banner  # itest-<pid>@host
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_local_stack_runs_redis_a_worker_per_queue_and_flower_then_stops_them_all(
    tmp_path: Path,
) -> None:
    topology = tmp_path / "topology.yaml"
    topology.write_text(
        "default_queue: itest\n"
        "queues:\n"
        "  itest: {pool: prefork, concurrency: 2}\n"
        "  side: {pool: threads, concurrency: 2}\n"
        "routes: {tool.it_add: side}\n"
    )
    settings = Settings(
        redis_url=None,
        imports=["tests.integration.flows"],
        topology_file=topology,
        flower_port=free_port(),
        api_port=free_port(),
    )
    with LocalStack(settings, cwd=ROOT) as stack:
        assert set(stack.procs) == {"redis", "itest", "side", "flower", "api", "scheduler"}
        assert stack.redis_url is not None and stack.redis_url.startswith("redis://:")
        assert stack.flower_password != "change-me"
        client = Client(stack.settings)
        assert client.submit("AddTwice", a=2, b=3).result(timeout=30) == 10
        assert "Task tool.it_add[" in stack.procs["side"].tail(100_000)
        pids = [p.pid for p in stack.procs.values()]
        workdir = stack.workdir
        url = f"{stack.flower_url}/api/workers"
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(url, timeout=5)
        assert denied.value.code == 401
        denied.value.close()
        token = base64.b64encode(f"baton:{stack.flower_password}".encode()).decode()
        request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200
        handlers = f"{stack.api_url}/handlers"  # the API wants the stack's token
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(handlers, timeout=5)
        assert refused.value.code == 401
        refused.value.close()
        bearer = {"Authorization": f"Bearer {stack.api_token}"}
        with urllib.request.urlopen(urllib.request.Request(handlers, headers=bearer)) as resp:
            assert resp.status == 200
    assert stack.procs == {}
    eventually(lambda: all(_group_gone(pid) for pid in pids), timeout=10, what="stack gone")
    assert not workdir.exists()


ORPHAN_SCRIPT = """
import json, sys, threading
from pathlib import Path
from app.stack import LocalStack
from config import Settings

settings = Settings(redis_url=None, imports=["tests.integration.flows"], topology_file=sys.argv[1])
stack = LocalStack(settings, flower=False, api=False).start()
pids = {name: p.pid for name, p in stack.procs.items()}
Path(sys.argv[2]).write_text(json.dumps({"pids": pids, "dir": str(stack.workdir)}))
threading.Event().wait()
"""


def test_a_stack_whose_owner_is_killed_leaves_no_processes_behind(tmp_path: Path) -> None:
    topology = tmp_path / "topology.yaml"
    topology.write_text("default_queue: itest\nqueues:\n  itest: {pool: solo, concurrency: 1}\n")
    report = tmp_path / "pids.json"
    owner = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_SCRIPT, str(topology), str(report)],
        cwd=ROOT,
        env=worker_env("redis://unused:1/0", tmp_path),
    )
    try:
        eventually(report.exists, timeout=60, what="stack started")
        pids = json.loads(report.read_text())["pids"]
        assert set(pids) == {"redis", "itest", "scheduler"}
    finally:
        owner.kill()
        owner.wait()
    eventually(lambda: all(_group_gone(p) for p in pids.values()), timeout=30, what="no orphans")
    shutil.rmtree(json.loads(report.read_text())["dir"], ignore_errors=True)

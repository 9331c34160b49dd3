"""Schedules against a real redis-server and real ``baton scheduler`` processes.

Each test has a key prefix of its own, so the runs it counts are only its schedules'. No worker
serves that prefix: a started run is a run written (its first step queued), which is what
"exactly one run per tick" is about.
"""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from app.cli import app
from app.client import Client
from app.schedules import idempotency_key
from tests.harness import (
    RedisServer,
    eventually,
    private_client,
    spawn,
    stop_group,
    worker_env,
)

pytestmark = pytest.mark.integration
IMPORTS = '["examples", "tests.integration.flows"]'


@pytest.fixture
def prefix() -> str:
    return f"sch{uuid.uuid4().hex[:8]}"


@pytest.fixture
def env(redis_server: RedisServer, prefix: str) -> dict[str, str]:
    return {
        "BATON_REDIS_URL": redis_server.url,
        "BATON_IMPORTS": IMPORTS,
        "BATON_KEY_PREFIX": prefix,
        "COLUMNS": "200",
    }


@pytest.fixture
def api(redis_server: RedisServer, prefix: str) -> Client:
    return private_client(redis_server.url, prefix)


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield r
    r.close()


def baton(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stdout, result.stderr


def test_cli_adds_lists_shows_runs_and_removes(env: dict[str, str], api: Client) -> None:
    code, stdout, stderr = baton(
        env, "schedule", "add", "AddTwice", "--cron", "*/5 * * * *", "-i", '{"a": 1, "b": 2}'
    )
    assert code == 0, stderr
    assert stdout.strip() == "AddTwice"  # named after the workflow by default
    assert "cron */5 * * * *; next fire" in stderr
    code, stdout, stderr = baton(
        env,
        "schedule",
        "add",
        "AddTwice",
        "--every",
        "30s",
        "-i",
        '{"a": 3, "b": 4}',
        "--name",
        "often",
    )
    assert code == 0, stderr
    code, listing, _ = baton(env, "schedule", "list")
    assert code == 0
    lines = [line for line in listing.splitlines() if "AddTwice" in line]
    assert len(lines) == 2
    assert "every 30s" in lines[1] and '{"a":3,"b":4}' in lines[1] and "often" in lines[1]
    assert [s.name for s in api.schedules.list()] == ["AddTwice", "often"]
    assert baton(env, "schedule", "runs", "often")[0] == 0
    code, _, stderr = baton(env, "schedule", "remove", "often")
    assert code == 0 and "removed schedule often" in stderr
    assert [s.name for s in api.schedules.list()] == ["AddTwice"]
    code, _, stderr = baton(env, "schedule", "remove", "often")
    assert code == 1 and stderr.strip() == "error: no schedule named 'often'"


def test_python_api_adds_lists_and_removes(api: Client) -> None:
    added = api.schedules.add("nightly", "AddTwice", {"a": 1, "b": 1}, cron="0 3 * * *")
    assert added.when == "cron 0 3 * * *" and added.next_fire is not None
    assert added.next_fire % 86400 == 3 * 3600  # 03:00 UTC
    assert added.last_run is None
    quick = api.schedules.add("quick", "AddTwice", {"a": 2, "b": 2}, every="5m", grace=10)
    assert quick.every == 300 and quick.grace == 10.0
    assert [(s.name, s.input) for s in api.schedules.list()] == [
        ("nightly", {"a": 1, "b": 1}),
        ("quick", {"a": 2, "b": 2}),
    ]
    api.schedules.remove("nightly")
    assert [s.name for s in api.schedules.list()] == ["quick"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["NoSuchFlow", "--every", "1s"], "error: no workflow named 'NoSuchFlow'"),
        (["AddTwice", "--cron", "61 * * * *", "-i", '{"a": 1, "b": 2}'], "bad cron expression"),
        (["AddTwice", "--every", "soon", "-i", '{"a": 1, "b": 2}'], "bad interval 'soon'"),
        (["AddTwice", "--every", "1s", "-i", '{"a": "x", "b": 2}'], "invalid input for AddTwice"),
        (["AddTwice", "-i", '{"a": 1, "b": 2}'], "exactly one of cron and every"),
        (["AddTwice", "--every", "1s", "--cron", "* * * * *"], "exactly one of cron and every"),
        (["AddTwice", "--every", "1s", "--name", "a b", "-i", "{}"], "bad schedule name"),
        (["AddTwice", "--every", "1s", "-i", "[1]"], "must be a JSON object"),
        (["AddTwice", "--every", "1s", "--name", "taken", "-i", '{"a": 1, "b": 2}'], "exists"),
    ],
)
def test_bad_schedules_are_one_line_errors_and_write_nothing(
    env: dict[str, str],
    api: Client,
    store: redis.Redis,
    prefix: str,
    args: list[str],
    message: str,
) -> None:
    api.schedules.add("taken", "AddTwice", {"a": 0, "b": 0}, every="1h")
    before = store.hgetall(f"{prefix}:schedules")
    code, stdout, stderr = baton(env, "schedule", "add", *args)
    assert code == 1
    assert stdout == ""
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("error:"), stderr
    assert message in stderr
    assert store.hgetall(f"{prefix}:schedules") == before


def start_scheduler(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return spawn(["app.cli", "scheduler"], env, log)


def ready(log: Path) -> bool:
    return "baton scheduler ready" in log.read_text()


def test_three_schedulers_start_exactly_one_run_per_tick_and_survive_a_kill(
    redis_server: RedisServer,
    testdir: Path,
    api: Client,
    store: redis.Redis,
    prefix: str,
) -> None:
    env = worker_env(redis_server.url, testdir, BATON_KEY_PREFIX=prefix)
    logs = [testdir / f"{prefix}-scheduler{i}.log" for i in range(3)]
    procs = [start_scheduler(env, log) for log in logs]
    try:
        for proc, log in zip(procs, logs, strict=True):
            eventually(partial(ready, log), timeout=20, interval=0.1, what=f"{log.name} ready")
            assert proc.poll() is None
        api.schedules.add("tick", "AddTwice", {"a": 1, "b": 2}, every="1s")

        def started(at_least: int) -> list[tuple[float, str]] | None:
            got = api.schedules.runs("tick", limit=100)
            return got if len(got) >= at_least else None

        eventually(lambda: started(3), timeout=10, what="3 ticks")
        procs[0].send_signal(signal.SIGKILL)  # mid-way: the others go on as if nothing happened
        procs[0].wait()
        eventually(lambda: started(7), timeout=10, what="7 ticks")
    finally:
        for proc in procs:
            stop_group(proc)
    fired = sorted(api.schedules.runs("tick", limit=100))
    ticks = [tick for tick, _ in fired]
    # no tick skipped while the schedulers ran, none twice
    assert ticks == [ticks[0] + i for i in range(len(ticks))], ticks
    assert len({run_id for _, run_id in fired}) == len(fired)
    # exactly one run per tick: the runs index holds those runs and no other
    runs = api.runs(limit=1000)
    assert sorted(r.run_id for r in runs) == sorted(run_id for _, run_id in fired)
    # each found by its idempotency key, created within a second of its tick
    for tick, run_id in fired:
        assert store.get(f"{prefix}:idem:{idempotency_key('tick', tick)}") == run_id
        created = api.get(run_id).info().created
        # ticks come due on Redis's clock (estimated), runs are stamped with the local one
        assert -0.1 <= created - tick < 1.0
    # the schedule shows its last run
    last = api.schedules.get("tick")
    assert (last.last_tick, last.last_run) == fired[-1]
    first = api.get(fired[0][1]).events()[0]  # the start event, with the schedule's input
    assert first.model_dump() == {"a": 1, "b": 2}
    kills = [log.read_text() for log in logs]
    assert all("Traceback" not in text for text in kills), kills
    # each started run logged once over the three schedulers
    lines = [line for text in kills for line in text.splitlines() if "started run" in line]
    assert len(lines) <= len(fired) + 1  # the killed one may have logged a run it did not note

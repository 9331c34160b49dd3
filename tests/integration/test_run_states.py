"""Run states a user can act on (issue #10, point 3), from real workers and their registry.

A run whose messages wait on a queue no worker consumes says so; one waiting for a human says
for what; a live worker is in the registry with its queues and tasks, and leaves it when it
stops or dies; a message for a task no worker has fails its run, naming the module to import.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.client import Client, RunState
from tasks import queries
from tests.harness import RedisServer, Worker, eventually, private_client, worker_env
from workflows.errors import ConfigurationError

pytestmark = pytest.mark.integration


@pytest.fixture
def lonely(redis_server: RedisServer) -> Client:
    """A client under a prefix of its own: no worker serves it until a test starts one."""
    return private_client(redis_server.url, f"st{uuid.uuid4().hex[:6]}")


def env_for(
    client: Client, redis_server: RedisServer, testdir: Path, **extra: str
) -> dict[str, str]:
    prefix = client.runtime.settings.key_prefix
    return worker_env(redis_server.url, testdir, BATON_KEY_PREFIX=prefix, **extra)


@pytest.fixture
def started() -> Iterator[list[Worker]]:
    workers: list[Worker] = []
    yield workers
    for worker in workers:
        worker.stop()


def test_a_live_worker_is_registered_with_its_queues_pool_and_tasks(
    client: Client, workers: Worker
) -> None:
    found = eventually(
        lambda: [w for w in queries.live_workers(client.runtime) if w.name == workers.name],
        what="the session worker in the registry",
    )
    record = found[0]
    assert "itest" in record.queues and "baton" in record.queues
    assert record.pool == "prefork" and record.concurrency == 4
    assert "Boom.explode" in record.tasks and "tool.tef_add" in record.tasks
    assert "tests.integration.flows" in record.imports


def test_a_run_on_a_queue_no_worker_consumes_is_queued_and_says_so_until_one_starts(
    lonely: Client, redis_server: RedisServer, testdir: Path, started: list[Worker]
) -> None:
    handle = lonely.submit("AddTwice", a=1, b=2)
    state = handle.state()
    assert state == RunState("queued", ("itest",), ("itest",))
    assert state.describe() == "queued on itest (no worker consumes itest)"
    env = env_for(lonely, redis_server, testdir)
    started.append(
        Worker(env, ["itest"], concurrency=1, name=f"lonely{uuid.uuid4().hex[:6]}@t").start()
    )
    assert handle.result(timeout=30) == 6
    assert handle.state() == RunState("completed")


@pytest.mark.long  # slow (a TTL, a backlog, a whole stack): bash scripts/long.sh
def test_a_worker_leaves_the_registry_on_stop_and_expires_from_it_when_killed(
    lonely: Client, redis_server: RedisServer, testdir: Path, started: list[Worker]
) -> None:
    env = env_for(lonely, redis_server, testdir)
    rt = lonely.runtime
    names = [f"reg{i}{uuid.uuid4().hex[:6]}@t" for i in range(2)]
    calm = Worker(env, ["itest"], concurrency=1, name=names[0]).start()
    killed = Worker(env, ["itest"], concurrency=1, name=names[1]).start()
    started += [calm, killed]

    def registered() -> set[str]:
        return {w.name for w in queries.live_workers(rt)}

    eventually(lambda: set(names) <= registered(), what="both workers registered")
    calm.stop()
    eventually(lambda: names[0] not in registered(), timeout=10, what="a stopped worker gone")
    assert killed.proc is not None
    os.killpg(killed.proc.pid, signal.SIGKILL)
    killed.proc.wait()
    eventually(lambda: not registered(), timeout=25, what="a killed worker expired")
    handle = lonely.submit("AddTwice", a=1, b=1)
    assert "no worker consumes itest" in handle.state().describe()
    handle.cancel()


def test_a_run_waiting_for_a_human_says_for_which_event(client: Client, workers: Worker) -> None:
    handle = client.submit("Approve", label=uuid.uuid4().hex)
    try:
        state = eventually(
            lambda: s if (s := handle.state()).state == "waiting for input" else None,
            what="waiting for input",
        )
        assert state.awaiting == ("tests.integration.flows.Answer",)
        assert state.describe() == "waiting for input (Answer)"
    finally:
        handle.cancel()


def test_a_task_no_worker_knows_fails_its_run_naming_the_module_and_baton_imports(
    lonely: Client, redis_server: RedisServer, testdir: Path, started: list[Worker]
) -> None:
    env = env_for(lonely, redis_server, testdir, BATON_IMPORTS=json.dumps(["examples"]))
    started.append(
        Worker(env, ["itest"], concurrency=1, name=f"noimp{uuid.uuid4().hex[:6]}@t").start()
    )
    handle = lonely.submit("AddTwice", a=1, b=2)
    with pytest.raises(ConfigurationError) as info:
        handle.result(timeout=30)
    message = str(info.value)
    assert "has no task 'AddTwice.first'" in message
    assert "tests.integration.flows" in message and "BATON_IMPORTS" in message
    assert "queue itest" in message and "(it imports: examples)" in message
    rt = lonely.runtime
    inflight = rt.keys.inflight(handle.run_id)
    eventually(lambda: not rt.redis.hlen(inflight), what="nothing left to resend")


def test_baton_workers_workflows_and_tools_show_what_live_workers_can_run(
    lonely: Client, redis_server: RedisServer, testdir: Path, started: list[Worker]
) -> None:
    """A worker on ``itest`` that imports only ``examples``: the CLI (which imports the test
    flows too) says which steps and tools no live worker has, and which queues nobody serves."""
    env = env_for(lonely, redis_server, testdir, BATON_IMPORTS=json.dumps(["examples"]))
    name = f"view{uuid.uuid4().hex[:6]}@t"
    started.append(Worker(env, ["itest", "baton"], concurrency=1, name=name).start())
    eventually(lambda: queries.live_workers(lonely.runtime), what="the worker registered")
    cli_env = {
        "BATON_REDIS_URL": redis_server.url,
        "BATON_KEY_PREFIX": lonely.runtime.settings.key_prefix,
        "BATON_IMPORTS": json.dumps(["examples", "tests.integration.flows"]),
        "COLUMNS": "250",
    }
    listed = CliRunner().invoke(app, ["workers"], env=cli_env)
    assert listed.exit_code == 0, listed.output
    assert name in listed.stdout and "itest, baton" in listed.stdout.replace(
        "baton, itest", "itest, baton"
    )
    shown = CliRunner().invoke(app, ["workflows"], env=cli_env)
    assert shown.exit_code == 0, shown.output
    rows = {tuple(line.split("│")[1:3]): line for line in shown.stdout.splitlines() if "│" in line}
    boom = next(line for key, line in rows.items() if "Boom" in key[0] and "explode" in key[1])
    assert "not registered by the 1 worker(s) on itest" in boom and "BATON_IMPORTS" in boom
    plan = next(line for key, line in rows.items() if "Research" in key[0] and "plan" in key[1])
    assert "1 worker(s)" in plan
    score = next(line for key, line in rows.items() if "Research" in key[0] and "score" in key[1])
    assert "no worker consumes analysis" in score
    tools = CliRunner().invoke(app, ["tools"], env=cli_env)
    assert tools.exit_code == 0, tools.output
    section = tools.stdout[tools.stdout.index("tef_add") :]
    assert "live workers: not registered by the 1 worker(s) on itest" in section

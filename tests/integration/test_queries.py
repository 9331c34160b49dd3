"""The store's read side (``tasks.queries``) and the inbox (``tasks.inbox``), seen by app/.

With Redis gone, every client call, the CLI and metrics meet one Baton error
(``StoreUnavailableError``), never a redis-py exception.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from typer.testing import CliRunner

from app import metrics
from app.celery_app import create_app
from app.cli import app as cli
from app.client import Client
from config import Settings
from tasks import queries
from tasks.protocol import DeadLetter, LogKind, RunStatus
from tasks.runtime import Runtime
from tests.harness import Worker, free_port
from tests.integration.flows import Answer, Item
from workflows.errors import InvalidInputError, StepFailedError, StoreUnavailableError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def nowhere_url() -> str:
    """A Redis URL with nothing listening (and a password that must not leak)."""
    return f"redis://:hush-{uuid.uuid4().hex[:6]}@127.0.0.1:{free_port()}/0"


@pytest.fixture(scope="module")
def nowhere(settings: Settings, nowhere_url: str) -> Client:
    return Client(settings.model_copy(update={"redis_url": nowhere_url}))


@pytest.fixture
def fresh(settings: Settings) -> Runtime:
    """A runtime under a key prefix of its own: every count starts at zero."""
    prefix = f"q{uuid.uuid4().hex[:8]}"
    return create_app(settings.model_copy(update={"key_prefix": prefix}))[1]


# --- no Redis ------------------------------------------------------------------------------


def test_every_client_call_on_an_unreachable_redis_is_store_unavailable(
    nowhere: Client, nowhere_url: str
) -> None:
    handle = nowhere.get("some-run")
    calls = [
        handle.info,
        lambda: nowhere.submit("AddTwice", a=1, b=1),
        nowhere.runs,
        lambda: handle.result(timeout=5),
        handle.events,
        handle.timeline,
        lambda: list(handle.stream_events(timeout=5)),
        lambda: handle.send_event(Answer(approved=True)),
        handle.cancel,
    ]
    for call in calls:
        with pytest.raises(StoreUnavailableError) as caught:
            call()
        message = caught.value.message
        assert message.startswith("Redis is unreachable: ") and "\n" not in message
        assert nowhere_url.split("@")[0].split(":")[-1] not in message  # no password


def test_ping_names_no_url_and_metrics_report_the_store_down(
    nowhere: Client, nowhere_url: str, settings: Settings
) -> None:
    queries.ping(settings.store_url)
    with pytest.raises(StoreUnavailableError) as caught:
        queries.ping(nowhere_url)
    assert caught.value.message.startswith("Redis does not answer: ")
    assert "hush-" not in caught.value.message
    assert metrics.exposition(nowhere.runtime).splitlines()[-1] == "baton_store_up 0"


def test_the_cli_on_an_unreachable_redis_prints_one_error_line(nowhere_url: str) -> None:
    env = {"BATON_REDIS_URL": nowhere_url, "COLUMNS": "200"}
    for args in (["status", "x"], ["runs"], ["dead-letters"], ["events", "x"], ["retry", "x"]):
        result = CliRunner().invoke(cli, args, env=env)
        assert result.exit_code == 1, result.output
        assert result.output.startswith("error: Redis is unreachable: "), result.output
        assert len(result.output.strip().splitlines()) == 1, result.output


# --- runs and their logs -------------------------------------------------------------------


def test_run_record_and_log_of_a_completed_run(client: Client, workers: Worker) -> None:
    rt = client.runtime
    handle = client.submit("AddTwice", a=1, b=2)
    assert handle.result(timeout=30) == 6
    record = queries.require_run(rt, handle.run_id)
    assert (record.workflow, record.status, record.result) == ("AddTwice", RunStatus.COMPLETED, "6")
    assert record.input is not None and record.error is None and record.parent is None
    assert queries.run_record(rt, "no-such-run") is None
    with pytest.raises(InvalidInputError, match="no run 'no-such-run'"):
        queries.require_run(rt, "no-such-run")
    entries = queries.log_entries(rt, handle.run_id)
    assert entries[0].kind is LogKind.EVENT and entries[-1].kind is LogKind.STOP
    assert [e.ms for e in entries] == sorted(e.ms for e in entries)
    assert queries.follow_log(rt, handle.run_id, entries[0].id) == entries[1:]
    assert queries.follow_log(rt, handle.run_id, entries[0].id, count=1) == entries[1:2]
    assert queries.follow_log(rt, handle.run_id, entries[-1].id, block_ms=50) == []


def test_recent_runs_are_newest_first_and_filtered_by_status(
    client: Client, workers: Worker
) -> None:
    done = client.submit("AddTwice", a=0, b=1)
    done.result(timeout=30)
    failed = client.submit("Boom", label="q")
    with pytest.raises(StepFailedError, match="boom q"):
        failed.result(timeout=30)
    ids = [r.run_id for r in queries.recent_runs(client.runtime, limit=100)]
    assert ids.index(failed.run_id) < ids.index(done.run_id)
    only_failed = queries.recent_runs(client.runtime, "failed", 100)
    assert {r.status for r in only_failed} == {RunStatus.FAILED}
    assert failed.run_id in {r.run_id for r in only_failed}
    assert len(queries.recent_runs(client.runtime, limit=1)) == 1


# --- dead letters and counts ---------------------------------------------------------------


def test_dead_letters_newest_first_and_an_unreadable_one_shown_as_such(fresh: Runtime) -> None:
    key = fresh.keys.dead_letters()
    fresh.redis.lpush(key, DeadLetter("unknown task", {"task": "Nope.step"}, "[]").to_json())
    fresh.redis.lpush(key, "{not json")
    total, letters = queries.dead_letters(fresh, limit=5)
    assert total == 2
    assert letters[0].reason.startswith("unreadable dead letter") and letters[0].body == "{not json"
    assert letters[1] == DeadLetter("unknown task", {"task": "Nope.step"}, "[]")
    assert queries.dead_letters(fresh, limit=1)[0] == 2
    assert len(queries.dead_letters(fresh, limit=1)[1]) == 1


def test_store_counts_and_status_counts(fresh: Runtime) -> None:
    k, r = fresh.keys, fresh.redis
    r.rpush(k.queue("a"), "m1", "m2", "m3")
    r.hset(k.unacked(), "tag", "m")
    r.lpush(k.dead_letters(), "x")
    for n, status in enumerate(["failed", "failed", "running"]):
        r.hset(k.run(f"r{n}"), "status", status)
        r.zadd(k.runs(), {f"r{n}": n})
    r.zadd(k.runs(), {"expired": 9})
    counts = queries.store_counts(fresh, ["a", "b"])
    assert counts == queries.StoreCounts({"a": 3, "b": 0}, 1, 1, 4)
    assert queries.status_counts(fresh, 10) == Counter(failed=2, running=1)
    assert queries.status_counts(fresh, 2) == Counter(running=1)  # the newest: expired, r2


# --- the inbox -----------------------------------------------------------------------------


def test_an_event_nobody_waits_for_is_routed_to_the_steps_that_accept_it(
    client: Client, workers: Worker
) -> None:
    handle = client.submit("SlowStep", seconds=2)
    handle.send_event(Item(i=7))
    assert handle.result(timeout=30) == 7
    assert Item(i=7) in handle.events()


def test_events_a_run_cannot_take_are_rejected(client: Client, workers: Worker) -> None:
    running = client.submit("SlowStep", seconds=1)
    with pytest.raises(InvalidInputError, match="no step of SlowStep accepts Answer"):
        running.send_event(Answer(approved=True))
    running.result(timeout=30)
    with pytest.raises(InvalidInputError, match=f"run {running.run_id} is completed; it takes"):
        running.send_event(Item(i=1))
    with pytest.raises(InvalidInputError, match="no run 'no-such-run'"):
        client.get("no-such-run").send_event(Item(i=1))

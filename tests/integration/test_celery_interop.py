"""Celery interop against a real redis-server, a Baton worker and the shop's own worker (a plain
Celery app, ``examples.celery_shop``, in a process of its own): plain tasks as Baton tools, and
Baton runs as steps of Celery chains and chords."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import chain, chord, group
from celery.result import AsyncResult

from app.celery_app import create_app
from app.client import Client, RunHandle
from app.interop import baton_run
from config import Settings
from examples.celery_shop.app import configure
from examples.celery_shop.checkout import Checkout
from examples.celery_shop.tasks import ATTEMPTS, LEDGER, fetch_order, receipt, summarize
from tests.harness import RedisServer, Worker, eventually, worker_env
from tests.integration import interop_flows

assert (
    interop_flows.CallProbe.name == "CallProbe"
)  # its tools and workflow, registered here as on the workers

IMPORTS = ["examples.celery_shop.checkout", "tests.integration.interop_flows"]
VISIBILITY = 8  # seconds: how soon a killed worker's unacked message comes back


@dataclass
class Shop:
    """One Baton worker, one shop worker, a client and the ledger, under a prefix of their own."""

    client: Client
    env: dict[str, str]
    prefix: str
    worker: Worker
    ledger: Any

    def start_shop_worker(self) -> Worker:
        worker = Worker(
            self.env, ["shop"], 2, name=f"shop{uuid.uuid4().hex[:6]}-{self.prefix}@test"
        )
        worker.start_app = "examples.celery_shop.app:shop"
        self.worker = worker.start()
        return worker

    def probe(self, tool: str, **args: Any) -> RunHandle:
        return self.client.submit("CallProbe", tool=tool, args=args)


@pytest.fixture(scope="module")
def shop(redis_server: RedisServer, testdir: Path) -> Iterator[Shop]:
    prefix = f"ci{uuid.uuid4().hex[:8]}"
    # this process's shop app (a canvas's sender and result reader) shares the test's broker
    configure(redis_server.url, f"{prefix}:q:", visibility=VISIBILITY)
    settings = Settings(
        redis_url=redis_server.url,
        key_prefix=prefix,
        imports=IMPORTS,
        max_time_limit=5,
        visibility_timeout_override=VISIBILITY,
    )
    client = Client(runtime=create_app(settings)[1])
    env = worker_env(
        redis_server.url,
        testdir,
        BATON_KEY_PREFIX=prefix,
        BATON_IMPORTS=json.dumps(IMPORTS),
        BATON_MAX_TIME_LIMIT=5,
        BATON_VISIBILITY_TIMEOUT=VISIBILITY,
        SHOP_BROKER_URL=redis_server.url,
        SHOP_QUEUE_PREFIX=f"{prefix}:q:",
        SHOP_VISIBILITY_TIMEOUT=VISIBILITY,
    )
    baton = Worker(env, ["baton"], 3, name=f"baton-{prefix}@test").start()
    ledger = redis.Redis.from_url(redis_server.url, decode_responses=True)
    stack = Shop(client, env, prefix, baton, ledger)
    stack.start_shop_worker()
    yield stack
    stack.worker.stop()
    baton.stop()


def parent_of(result: AsyncResult[Any]) -> AsyncResult[Any]:
    """The result of the task before ``result``'s in its chain (here: the Baton run's)."""
    parent = result.parent
    assert isinstance(parent, AsyncResult)
    return parent


def tool_spans(handle: RunHandle, tool: str) -> list[Any]:
    return [s for s in handle.spans() if s.name == tool]


# --- plain tasks as Baton tools ---------------------------------------------------------------


def test_checkout_calls_plain_tasks_on_their_worker_and_resumes_with_their_answers(
    shop: Shop,
) -> None:
    handle = shop.client.submit("Checkout", customer="alice", items=["apple", "pear"])
    result = handle.result(timeout=60)
    assert result["customer"] == "alice" and result["total"] == 1.25
    charges = [s for s in tool_spans(handle, "shop_charge")]
    assert [(s.queue, s.outcome.value) for s in charges] == [("shop", "completed")]
    assert len(tool_spans(handle, "shop_price")) == 2
    key = charges[0].call  # the call id is the charge's idempotency key
    assert result["charge"] == f"ch-{key}"
    assert json.loads(shop.ledger.hget(LEDGER, key))["amount"] == 1.25


def test_call_id_reaches_the_task_as_header_and_as_its_idempotency_keyword(shop: Shop) -> None:
    handle = shop.probe("shop_charge_patient", customer="carol", amount=2.0)
    value = handle.result(timeout=60)["ok"]
    (span,) = tool_spans(handle, "shop_charge_patient")
    assert value["key"] == value["call_header"] == span.call


def test_inprocess_placement_runs_the_task_function_in_the_calling_worker(shop: Shop) -> None:
    handle = shop.probe("shop_price_here", item="melon", quantity=2)
    assert handle.result(timeout=60) == {"ok": 4.0}
    assert tool_spans(handle, "shop_price_here") == []  # no message: it ran inside the step


def test_inprocess_runtime_calls_the_task_functions_directly(shop: Shop) -> None:
    async def checkout() -> Any:
        return await Checkout().run(customer="dave", items=["kiwi", "melon"])

    result = asyncio.run(checkout())
    assert result["total"] == 2.25
    key = result["charge"].removeprefix("ch-")
    assert shop.ledger.hget(ATTEMPTS, key) == "1"


def test_plain_task_failure_comes_back_as_tool_error_data(shop: Shop) -> None:
    error = shop.probe("shop_charge", customer="mallory", amount=1.0).result(timeout=60)["error"]
    assert error["type"] == "CardDeclined"
    assert error["message"] == "card of mallory declined"
    assert error["attempts"] == 1 and error["traceback"] and not error["timeout"]


def test_failing_plain_task_is_sent_again_by_the_retry_policy_with_the_same_key(
    shop: Shop,
) -> None:
    handle = shop.probe("shop_charge_twice", customer="mallory", amount=1.0)
    error = handle.result(timeout=60)["error"]
    assert (error["type"], error["attempts"]) == ("CardDeclined", 2)
    spans = tool_spans(handle, "shop_charge_twice")
    assert [s.outcome.value for s in spans] == ["retry", "failed"]
    assert shop.ledger.hget(ATTEMPTS, spans[0].call) == "2"


def test_plain_task_past_its_timeout_is_answered_with_tool_timeout_and_late_answer_ignored(
    shop: Shop,
) -> None:
    started = time.monotonic()
    handle = shop.probe("shop_charge_quick", customer="frank", amount=1.0, hold=4.0)
    error = handle.result(timeout=60)["error"]
    assert error["timeout"] and error["type"] == "ToolTimeout"
    assert time.monotonic() - started < 1.5 + 5  # loose: a shared 2-core machine
    (span,) = tool_spans(handle, "shop_charge_quick")
    answers = _answers_done(shop)
    # the task finishes later and answers: the answer is ignored (no second span, same result)
    eventually(lambda: shop.ledger.hget(LEDGER, span.call), timeout=30, what="late charge")
    eventually(lambda: _answers_done(shop) > answers, timeout=30, what="late answer handled")
    assert [s.outcome.value for s in tool_spans(handle, "shop_charge_quick")] == ["failed"]
    assert handle.result(timeout=5)["error"]["type"] == "ToolTimeout"


def _answers_done(shop: Shop) -> int:
    """How many ``baton.answer`` tasks the Baton worker has finished (from its log)."""
    log = Path(shop.env["BATON_TEST_DIR"]) / f"baton-{shop.prefix}.log"
    lines = log.read_text(errors="replace").splitlines()
    return sum(1 for line in lines if "baton.answer[" in line and "succeeded" in line)


def test_plain_worker_killed_mid_call_redelivers_and_the_call_is_answered_once(
    shop: Shop,
) -> None:
    before = set(shop.ledger.hkeys(ATTEMPTS))
    handle = shop.probe("shop_charge_patient", customer="erin", amount=3.0, hold=3.0)
    key = eventually(
        lambda: next(iter(set(shop.ledger.hkeys(ATTEMPTS)) - before), None),
        timeout=30,
        what="the charge started",
    )
    killed = shop.worker
    assert killed.proc is not None
    os.killpg(killed.proc.pid, signal.SIGKILL)  # the whole worker: nobody reports the loss
    killed.proc.wait()
    shop.start_shop_worker()
    value = handle.result(timeout=60)["ok"]
    assert value["key"] == key
    assert shop.ledger.hget(ATTEMPTS, key) == "2"  # ran twice (acks_late: redelivered) ...
    spans = tool_spans(handle, "shop_charge_patient")
    assert [s.outcome.value for s in spans] == ["completed"]  # ... answered once


# --- Baton runs in Celery canvases ------------------------------------------------------------


def test_chain_plain_then_baton_run_then_plain_gets_the_runs_result(shop: Shop) -> None:
    result = chain(fetch_order.s("o1"), baton_run("Checkout"), receipt.s()).apply_async()
    line = result.get(timeout=90)
    assert line.startswith("alice paid 3.25 (ch-")
    run = shop.client.get(parent_of(result).id)  # the run's id is its canvas task's id
    assert run.result(timeout=5)["total"] == 3.25
    assert parent_of(result).get(timeout=5) == run.result(timeout=5)


def test_group_of_three_baton_runs_feeds_a_chord_callback(shop: Shop) -> None:
    orders = {"gina": ["apple"], "hank": ["pear", "kiwi"], "ivy": ["melon", "melon"]}
    header = [baton_run(Checkout, start={"customer": c, "items": i}) for c, i in orders.items()]
    summary = chord(header, summarize.s()).apply_async().get(timeout=120)
    assert summary == {"orders": 3, "revenue": 5.5, "customers": ["gina", "hank", "ivy"]}


def test_a_group_of_baton_runs_gives_each_runs_result(shop: Shop) -> None:
    starts = [{"customer": "kim", "items": ["kiwi"]}, {"customer": "lee", "items": ["pear"]}]
    results = group(baton_run("Checkout", start=s) for s in starts).apply_async().get(timeout=90)
    assert [(r["customer"], r["total"]) for r in results] == [("kim", 0.25), ("lee", 0.75)]


def test_failed_run_fails_its_chain_with_the_error(shop: Shop) -> None:
    result = chain(fetch_order.s("o-declined"), baton_run("Checkout"), receipt.s()).apply_async()
    with pytest.raises(Exception, match="card of mallory declined") as failure:
        result.get(timeout=90)
    assert type(failure.value).__name__ == "RunFailed"
    assert parent_of(result).state == "FAILURE" and result.state == "FAILURE"


def test_cancelled_run_fails_its_chain(shop: Shop) -> None:
    start = {"customer": "jack", "items": ["kiwi"], "hold": 20.0}
    result = chain(baton_run("Checkout", start=start), receipt.s()).apply_async()
    run = shop.client.get(parent_of(result).id)
    eventually(lambda: run.status() == "running", timeout=30, what="the run started")
    run.cancel()
    with pytest.raises(Exception, match="cancelled"):
        result.get(timeout=60)


def test_unknown_workflow_fails_the_chain_in_one_line(shop: Shop) -> None:
    result = chain(fetch_order.s("o1"), baton_run("NoSuchFlow"), receipt.s()).apply_async()
    with pytest.raises(Exception, match="no workflow named 'NoSuchFlow'"):
        result.get(timeout=60)

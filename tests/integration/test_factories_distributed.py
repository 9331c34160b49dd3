"""A workflow whose ``__init__`` needs arguments runs distributed through the factory registered
next to it: each worker process builds it once and reuses it; a factory that fails on the worker
fails its step, retried under the step's retry policy, and without one fails the run at once
with a ConfigurationError, never a hang nor a retry storm."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.celery_app import create_app
from app.client import Client
from config import Settings
from tests.harness import RedisServer, Worker, worker_env
from tests.integration import factory_flows
from workflows import ConfigurationError

pytestmark = pytest.mark.integration
FLOWS = "tests.integration.factory_flows"


@pytest.fixture(scope="module")
def factory_client(
    redis_server: RedisServer, settings: Settings, testdir: Path
) -> Iterator[Client]:
    """One worker process (concurrency 1: every step runs in the same process) for the factory
    flows' queue, under a key prefix of its own."""
    prefix = f"fac{uuid.uuid4().hex[:8]}"
    imports = [*settings.imports, FLOWS]
    env = worker_env(
        redis_server.url,
        testdir,
        BATON_KEY_PREFIX=prefix,
        BATON_IMPORTS=json.dumps(imports),
        FACTORY_MODEL="worker-llm",
    )
    worker = Worker(env, [factory_flows.QUEUE], concurrency=1, name="factories@test").start()
    _, runtime = create_app(settings.model_copy(update={"key_prefix": prefix, "imports": imports}))
    try:
        yield Client(runtime=runtime)
    finally:
        worker.stop()


def test_a_workflow_whose_init_needs_arguments_runs_distributed_through_its_factory(
    factory_client: Client,
) -> None:
    first = factory_client.submit(factory_flows.FactorySummary, text="hello").result(timeout=60)
    assert first["text"] == "worker-llm: hello"  # built on the worker, by the worker's factory
    assert first["inline"] == "INLINE!" and first["distributed"] == "DISTRIBUTED!"
    assert first["same_instance"] is True
    second = factory_client.submit("FactorySummary", text="again").result(timeout=60)
    assert second["pid"] == first["pid"]
    assert second["builds"] == {"FactorySummary": 1, "FactoryShout": 1}  # built once, reused
    assert factory_flows.BUILDS == {}  # the submitting process never built one


def test_a_factory_that_raises_on_the_worker_fails_the_run_with_a_configuration_error(
    factory_client: Client,
) -> None:
    handle = factory_client.submit("FactoryBroken")
    with pytest.raises(ConfigurationError) as info:
        handle.result(timeout=30)
    assert str(info.value) == (
        "workflow FactoryBroken: its factory build_broken raised RuntimeError: "
        "no credentials for the LLM"
    )
    assert handle.status() == "failed"
    assert [e["kind"] for e in handle.timeline()] == ["event", "failed"]  # no retries


def test_a_factory_failure_is_retried_under_the_steps_retry_policy(
    factory_client: Client,
) -> None:
    handle = factory_client.submit("FactoryFlaky")
    assert handle.result(timeout=60) == {"text": "back: up", "attempt": 3}
    timeline = handle.timeline()
    assert [e["kind"] for e in timeline] == ["event", "retry", "retry", "stop"]
    first_retry = timeline[1]["data"]
    assert first_retry["attempt"] == 2 and first_retry["error"]["message"] == (
        "workflow FactoryFlaky: its factory build_flaky raised ConnectionError: "
        "model server down (call 1)"
    )


def test_a_factory_that_keeps_failing_fails_the_run_once_the_retries_are_spent(
    factory_client: Client,
) -> None:
    handle = factory_client.submit("FactoryDown")
    with pytest.raises(ConfigurationError) as info:
        handle.result(timeout=60)
    assert str(info.value) == (
        "workflow FactoryDown: its factory build_down raised ConnectionError: "
        "model server down (call 2)"
    )
    assert [e["kind"] for e in handle.timeline()] == ["event", "retry", "failed"]

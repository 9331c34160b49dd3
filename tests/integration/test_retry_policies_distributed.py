"""A LlamaIndex-style retry policy works on workers too: it is evaluated there, from the class
definition, and a policy that cannot decide fails the run instead of leaving it running."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.celery_app import create_app
from app.client import Client
from config import Settings
from tests.harness import RedisServer, Worker, worker_env
from tests.integration import policy_flows
from workflows import StepFailedError

pytestmark = pytest.mark.integration
IMPORTS = '["examples", "tests.integration.flows", "tests.integration.policy_flows"]'


@pytest.fixture(scope="module")
def policy_client(redis_server: RedisServer, settings: Settings, testdir: Path) -> Iterator[Client]:
    """A worker for the policy flows' queue, under a key prefix of its own."""
    prefix = f"pol{uuid.uuid4().hex[:8]}"
    env = worker_env(redis_server.url, testdir, BATON_KEY_PREFIX=prefix, BATON_IMPORTS=IMPORTS)
    worker = Worker(env, [policy_flows.QUEUE], concurrency=2, name="policies@test").start()
    update = {
        "key_prefix": prefix,
        "imports": [*settings.imports, "tests.integration.policy_flows"],
    }
    _, runtime = create_app(settings.model_copy(update=update))
    try:
        yield Client(runtime=runtime)
    finally:
        worker.stop()


def test_a_llamaindex_style_policy_retries_a_distributed_step(policy_client: Client) -> None:
    assert policy_client.submit("DistPolicyRetried").result(timeout=30) == 3


def test_a_policy_that_raises_fails_the_distributed_run_saying_why(policy_client: Client) -> None:
    handle = policy_client.submit("DistPolicyBroken")
    with pytest.raises(StepFailedError) as info:
        handle.result(timeout=30)
    message = info.value.message  # str() is the step's own error, as in LlamaIndex
    assert message.startswith("step DistPolicyBroken.explode failed after 1 attempt(s): ")
    assert "not retried: retry policy BrokenPolicy.next raised KeyError" in message


def test_a_distributed_retry_is_told_the_time_since_the_first_attempt_began(
    policy_client: Client,
) -> None:
    # were it told 0.0 (as before), stop_after_delay(1.0) would never stop: a run that hangs
    handle = policy_client.submit("DistPolicyUntilDeadline")
    with pytest.raises(StepFailedError) as info:
        handle.result(timeout=30)
    attempts = info.value.attempts
    found = re.search(r"ConnectionError: retry (\d+) began at ([\d.]+)s", info.value.message)
    assert found is not None, info.value.message
    retry_number, began = int(found[1]), float(found[2])
    assert 2 <= attempts <= 7 and retry_number == attempts - 1  # 0.2 s apart, for ~1 s
    assert 0.8 <= began < 5.0  # ctx.retry_info() agrees: the last attempt began about 1 s in

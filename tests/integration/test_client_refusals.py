"""The client says at once what cannot work, instead of leaving a run to wait forever: a
workflow a worker cannot construct is refused before anything is written, and waiting on a run
that does not exist (or whose keys expired meanwhile) fails with the one "no run" error."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.celery_app import create_app
from app.client import AsyncClient, Client, RunHandle
from config import Settings
from tests.harness import eventually
from workflows import (
    ConfigurationError,
    InvalidInputError,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)

pytestmark = pytest.mark.integration
BOUND = 5.0  # generous: "at once" is well under a second; a wait that hangs never ends


class NeedsAnLlm(Workflow):
    """Can run in-process (the caller passes the llm) but not on a worker, which passes none."""

    def __init__(self, llm: str, *, prompt: str, temperature: float = 0.0) -> None:
        super().__init__()
        self.llm, self.prompt = llm, prompt

    @step
    async def ask(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=self.llm)


def outcome_within(call: Callable[[], Any], seconds: float = BOUND) -> BaseException | None:
    """What ``call`` raised (None if it returned); fails if it is still waiting after
    ``seconds`` (a daemon thread, so a hang cannot keep the test process alive)."""
    box: list[BaseException | None] = []

    def target() -> None:
        try:
            call()
            box.append(None)
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert box, f"still waiting after {seconds}s"
    return box[0]


@pytest.fixture
def unserved(settings: Settings) -> Iterator[Client]:
    """A client under a key prefix of its own: no worker serves its queues, so runs stay."""
    prefix = f"refuse{uuid.uuid4().hex[:8]}"
    _, runtime = create_app(settings.model_copy(update={"key_prefix": prefix}))
    yield Client(runtime=runtime)
    keys = list(runtime.redis.scan_iter(f"{prefix}:*"))
    if keys:
        runtime.redis.delete(*keys)


def test_submitting_a_workflow_whose_init_needs_arguments_is_refused_before_anything_is_written(
    unserved: Client,
) -> None:
    with pytest.raises(ConfigurationError) as info:
        unserved.submit(NeedsAnLlm, idempotency_key="needs-llm")
    message = str(info.value)
    assert message == (
        "workflow NeedsAnLlm cannot run distributed: a worker builds it with no arguments, "
        "but its __init__ requires: llm, prompt"
    )
    assert unserved.runs() == []
    assert not unserved.runtime.redis.exists(unserved.runtime.keys.idempotency("needs-llm"))


def test_waiting_for_the_result_of_an_unknown_run_fails_at_once(client: Client) -> None:
    handle = client.get(f"made-up-{uuid.uuid4().hex}")
    error = outcome_within(lambda: handle.result(timeout=None))
    assert isinstance(error, InvalidInputError)
    assert str(error) == f"no run {handle.run_id!r} (never submitted, or expired)"


def test_streaming_the_events_of_an_unknown_run_fails_at_once(client: Client) -> None:
    handle = client.get(f"made-up-{uuid.uuid4().hex}")
    error = outcome_within(lambda: list(handle.stream_events(timeout=None)))
    assert isinstance(error, InvalidInputError)


def test_the_async_client_fails_at_once_for_an_unknown_run(client: Client) -> None:
    aclient = AsyncClient(runtime=client.runtime)
    handle = client.get(f"made-up-{uuid.uuid4().hex}")

    async def stream() -> list[Any]:
        return [e async for e in aclient.stream_events(handle, timeout=None)]

    for call in (lambda: asyncio.run(aclient.result(handle, None)), lambda: asyncio.run(stream())):
        assert isinstance(outcome_within(call), InvalidInputError)


def _expire(handle: RunHandle) -> None:
    rt = handle.client.runtime
    rt.redis.delete(*rt.keys.run_keys(handle.run_id))


@pytest.mark.parametrize("wait", ["result", "stream_events"])
def test_a_wait_ends_with_no_such_run_when_the_runs_keys_expire_meanwhile(
    unserved: Client, wait: str
) -> None:
    handle = unserved.submit("AddTwice", a=1, b=2)
    waiting = threading.Event()
    box: list[BaseException | None] = []

    def target() -> None:
        waiting.set()
        try:
            if wait == "result":
                handle.result(timeout=None)
            else:
                list(handle.stream_events(timeout=None))
            box.append(None)
        except BaseException as exc:
            box.append(exc)

    threading.Thread(target=target, daemon=True).start()
    waiting.wait(BOUND)
    assert handle.status() == "running"  # nobody serves this prefix: it cannot end by itself
    _expire(handle)
    eventually(lambda: box, timeout=BOUND, what="the wait to end")
    assert isinstance(box[0], InvalidInputError)
    assert "(never submitted, or expired)" in str(box[0])

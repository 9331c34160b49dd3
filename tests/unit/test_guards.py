"""The kombu guards a worker installs: a settle on a dead channel and a bad queue item are
survived, not fatal (each was seen killing a worker)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from kombu.transport import redis as kombu_redis

from tasks import guards


def _dead_channel_qos() -> Any:
    """A QoS whose channel lost its connection: kombu's own calls raise AttributeError."""
    qos: Any = object.__new__(kombu_redis.QoS)
    qos._delivered = {"tag-1": object()}

    def gone(*_: Any, **__: Any) -> Any:
        raise AttributeError("'NoneType' object has no attribute 'client'")

    qos._remove_from_indices = gone
    qos.restore_by_tag = gone
    return qos


@pytest.mark.parametrize(
    "settle",
    [
        lambda q: q.ack("tag-1"),
        lambda q: q.reject("tag-1"),
        lambda q: q.reject("tag-1", requeue=True),
    ],
    ids=["ack", "reject", "reject-requeue"],
)
def test_settling_a_message_on_a_channel_closed_by_a_lost_connection_is_survived(
    settle: Any,
) -> None:
    guards.guard_closed_channel_acks()
    qos = _dead_channel_qos()
    settle(qos)  # no AttributeError: Celery would call it unrecoverable
    assert "tag-1" not in qos._delivered


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        (guards.Undecodable("hello"), "not JSON"),
        ([1, 2], "a JSON list, not an envelope object"),
        ({"body": "x"}, "no 'properties' object"),
        ({"properties": {"delivery_tag": "t"}}, "no 'properties.delivery_info' object"),
        (
            {
                "body": "%%",
                "properties": {"delivery_tag": "t", "delivery_info": {}, "body_encoding": "base64"},
            },
            "'body' is not base64",
        ),
    ],
)
def test_a_queue_item_that_is_not_an_envelope_is_named_for_what_is_wrong(
    item: Any, problem: str
) -> None:
    assert guards.envelope_problem(item) == problem


def test_a_well_formed_envelope_passes() -> None:
    envelope = {
        "body": "e30=",
        "headers": {"id": "x"},
        "properties": {"delivery_tag": "t", "delivery_info": {}, "body_encoding": "base64"},
    }
    assert guards.envelope_problem(envelope) is None


class _Channel:
    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        yield redis.Redis()  # never connects: a pipeline is built, not sent


def test_unacked_bookkeeping_pipelines_are_not_transactions_and_restores_keep_theirs() -> None:
    guards.lean_unacked_bookkeeping()
    guards.lean_unacked_bookkeeping()  # idempotent
    qos: Any = object.__new__(kombu_redis.QoS)
    qos.channel = _Channel()
    with qos.pipe_or_acquire() as pipe:
        assert pipe.transaction is False
    given = object()  # a restore passes its own (transactional) pipeline: used as it is
    with qos.pipe_or_acquire(given) as pipe:
        assert pipe is given

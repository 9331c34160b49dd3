"""Batched acks (``tasks.acks``) against a real redis-server and kombu's Redis transport: the
acks of a batch are forgotten with one ``ZREM`` and one ``HDEL``, a tag stays restorable
until its flush, and acks that could not be flushed (Redis away) are kept and sent later."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection
from kombu.transport import virtual

from tasks.acks import AckBatcher
from tests.harness import RedisServer, running_redis

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path / "redis") as server:
        yield server


def take(conn: Connection, n: int) -> tuple[Any, list[str]]:
    """``n`` messages published and taken (not acked): the channel's QoS holds their tags."""
    channel: Any = conn.default_channel
    queue = conn.SimpleQueue("acks-q")
    for i in range(n):
        queue.put({"i": i})
    tags = [str(queue.get(timeout=5).delivery_tag) for _ in range(n)]
    return channel.qos, tags


def client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


def calls(server: RedisServer, command: str) -> int:
    stats = client(server).info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_batch_of_acks_is_forgotten_with_one_zrem_and_one_hdel(server: RedisServer) -> None:
    with Connection(server.url) as conn:
        qos, tags = take(conn, 20)
        r = client(server)
        assert r.hlen(qos.unacked_key) == 20
        batcher = AckBatcher()
        zrem, hdel = calls(server, "zrem"), calls(server, "hdel")
        for tag in tags:  # what the patched ``QoS.ack`` does
            batcher.add(qos, tag)
            virtual.QoS.ack(qos, tag)
        assert r.hlen(qos.unacked_key) == 20  # restorable until the flush
        assert set(tags) <= qos._dirty  # acked in the QoS at once (never restored at shutdown)
        assert batcher.flush()
        assert r.hlen(qos.unacked_key) == 0 and r.zcard(qos.unacked_index_key) == 0
        assert (calls(server, "zrem") - zrem, calls(server, "hdel") - hdel) == (1, 1)


def test_acks_that_find_redis_away_are_kept_and_sent_once_it_is_back(
    server: RedisServer,
) -> None:
    with Connection(server.url) as conn:
        qos, tags = take(conn, 5)
        batcher = AckBatcher()
        for tag in tags:
            batcher.add(qos, tag)
        server.stop()
        try:
            assert not batcher.flush()
        finally:
            server.start()
        assert batcher.flush()
        r = client(server)
        assert r.hlen(qos.unacked_key) == 0 and r.zcard(qos.unacked_index_key) == 0


def test_acks_of_a_closed_channel_are_left_to_a_sweep_not_retried_forever(
    server: RedisServer,
) -> None:
    conn = Connection(server.url)
    qos, tags = take(conn, 3)
    batcher = AckBatcher()
    for tag in tags:  # what the patched ``QoS.ack`` does
        batcher.add(qos, tag)
        virtual.QoS.ack(qos, tag)
    conn.close()  # a reconnect closed the channel before the flush
    assert batcher.flush()
    assert not batcher.pending
    # their payloads stay restorable: a visibility sweep brings them back
    assert client(server).hlen(qos.unacked_key) == 3

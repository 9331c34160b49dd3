"""The cluster harness against real servers: keys spread over the masters, one-slot scripts,
cross-slot refusals, and a key that survives its master's SIGKILL through failover."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ClusterCrossSlotError, RedisClusterException, ResponseError

from tests.harness import eventually
from tests.redis_cluster import LocalRedisCluster, parse_nodes

pytestmark = [pytest.mark.integration, pytest.mark.long]

TWO_KEYS = """
redis.call('SET', KEYS[1], ARGV[1])
return {redis.call('INCR', KEYS[2]), redis.call('GET', KEYS[1])}
"""


@pytest.fixture
def client(redis_cluster: LocalRedisCluster) -> Iterator[RedisCluster]:
    rc = redis_cluster.client()
    yield rc
    rc.close()


def unique() -> str:
    return uuid.uuid4().hex[:8]


def masters(cluster: LocalRedisCluster) -> set[int]:
    return {v.port for v in cluster.views(cluster.nodes[0]) if v.is_master and v.slots}


def test_cluster_builds_with_three_masters_each_with_a_replica(
    redis_cluster: LocalRedisCluster,
) -> None:
    views = redis_cluster.views(redis_cluster.nodes[0])
    heads = [v for v in views if v.is_master]
    assert len(heads) == 3
    assert sum(hi - lo + 1 for v in heads for lo, hi in v.slots) == 16384
    assert sorted(str(v.master_id) for v in views if not v.is_master) == sorted(
        h.node_id for h in heads
    )
    assert redis_cluster.build_seconds < 30


def test_cluster_client_writes_and_reads_keys_spread_over_every_master(
    redis_cluster: LocalRedisCluster, client: RedisCluster
) -> None:
    keys = {f"spread:{unique()}:{i}": str(i) for i in range(64)}
    for key, value in keys.items():
        client.set(key, value)
    owners = {key: redis_cluster.master_of(key) for key in keys}
    assert {node.port for node in owners.values()} == masters(redis_cluster)
    for key, value in keys.items():
        assert client.get(key) == value
        with owners[key].client() as node:  # stored on the slot's master itself
            assert node.get(key) == value


def test_script_on_two_keys_with_one_hash_tag_runs_by_evalsha(
    redis_cluster: LocalRedisCluster, client: RedisCluster
) -> None:
    a, b = f"{{r1}}:{unique()}:a", f"{{r1}}:{unique()}:b"
    assert key_slot(a.encode()) == key_slot(b.encode())
    script = client.register_script(TWO_KEYS)
    assert script(keys=[a, b], args=["x"]) == [1, "x"]
    assert script(keys=[a, b], args=["y"]) == [2, "y"]
    with redis_cluster.master_of(a).client() as node:
        assert node.script_exists(script.sha) == [True]


def test_script_on_keys_in_two_slots_is_refused_crossslot(
    redis_cluster: LocalRedisCluster, client: RedisCluster
) -> None:
    a, b = f"{{r1}}:{unique()}", f"{{r2}}:{unique()}"
    assert key_slot(a.encode()) != key_slot(b.encode())
    script = client.register_script(TWO_KEYS)
    with pytest.raises(RedisClusterException, match="same key slot"):  # refused by redis-py
        script(keys=[a, b], args=["x"])
    with redis_cluster.master_of(a).client() as node:  # and by the server itself
        sha = node.script_load(TWO_KEYS)
        with pytest.raises(ClusterCrossSlotError, match="same slot"):
            node.evalsha(sha, 2, a, b, "x")
        assert node.exists(a) == 0


def test_script_touching_an_undeclared_key_of_another_master_fails(
    redis_cluster: LocalRedisCluster,
) -> None:
    a = f"{{r1}}:{unique()}"
    master = redis_cluster.master_of(a)
    other = next(
        k for k in (f"{{t{i}}}:x" for i in range(999)) if redis_cluster.master_of(k) != master
    )
    with master.client() as node, pytest.raises(ResponseError, match="non local key"):
        node.eval("return redis.call('GET', ARGV[1])", 1, a, other)


def test_key_written_with_wait_is_readable_after_its_master_is_killed(
    disposable_cluster: LocalRedisCluster,
) -> None:
    cluster, key = disposable_cluster, f"{{r1}}:{unique()}"
    client = cluster.client()
    try:
        with cluster.master_of(key).client() as node, node.pipeline(transaction=False) as pipe:
            pipe.set(key, "kept").wait(1, 0)  # WAIT on the write's own connection
            assert pipe.execute() == [True, 1]
        assert client.get(key) == "kept"
        kill = cluster.kill_master_of(key)
        assert kill.master.proc is not None and kill.master.proc.poll() == -9
        assert cluster.wait_promoted(kill) is kill.replica
        assert client.get(key) == "kept"  # the same client finds the new master
        client.set(key + ":after", "written")  # and the slot takes writes again
        with kill.replica.client() as node:
            assert node.get(key) == "kept"
            assert node.info("replication")["role"] == "master"
    finally:
        client.close()


def test_stopped_cluster_leaves_no_process_behind(disposable_cluster: LocalRedisCluster) -> None:
    sessions = [n.proc.pid for n in disposable_cluster.nodes if n.proc is not None]
    assert len(sessions) == 6
    disposable_cluster.stop()

    def gone() -> bool:
        found = subprocess.run(["pgrep", "-s", ",".join(map(str, sessions))], capture_output=True)
        return found.returncode == 1  # no process in any node's session

    eventually(gone, timeout=10, what="every node's session empty")


def test_parse_nodes_reads_ranges_single_slots_and_skips_migrations() -> None:
    line = "abc 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5 7 [8->-def] 9-10"
    (view,) = parse_nodes(line)
    assert (view.port, view.is_master, view.slots) == (7000, True, ((0, 5), (7, 7), (9, 10)))
    assert view.owns(7) and not view.owns(8)

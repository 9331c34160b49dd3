"""The key layout for a Redis Cluster state store: what one write or script touches shares a
slot, and on one Redis every key is named as before (no hash tag)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from config import Settings
from tasks.keys import TAG_CHARS, Keys, child_run_id, root_run_id
from tasks.queries import _limit_name
from workflows.errors import ConfigurationError


def slot(key: str) -> int:
    return key_slot(key.encode())


def run_tree_keys(k: Keys, run_id: str) -> list[str]:
    b = k.bucket_of(run_id)
    return [
        *k.run_keys(run_id),
        k.journal(run_id, "inv"),
        k.wait(run_id, "inv"),
        k.buffer(run_id, "buf"),
        k.counts(run_id, "buf"),
        k.canvas_claim(run_id),
        k.live(b),
        k.runs(b),
        k.timers(b),
        k.outbox(b),
        k.relaying("relay-1", b),
    ]


def test_one_redis_keeps_the_untagged_layout() -> None:
    k = Keys("baton")
    assert k.run("r1") == "baton:run:r1"
    assert k.live() == "baton:live" and k.runs() == "baton:runs"
    assert k.timers() == "baton:timers" and k.outbox() == "baton:outbox"
    assert k.relaying("x") == "baton:outbox:relaying:x"
    assert k.idempotency("key") == "baton:idem:key"
    assert k.concurrency_index() == "baton:limit:conc:index"
    assert k.rate("t", "a") == "baton:limit:rate:t:a"
    assert k.reservation("r", "c", 1) == "baton:limit:res:r:c:1"
    assert k.schedules() == "baton:schedules"
    assert list(k.all_buckets()) == [0]


def test_a_run_tree_and_its_bucket_indexes_share_one_slot() -> None:
    k = Keys("baton", 16)
    root = root_run_id()
    child = child_run_id(root, "c1")
    grandchild = child_run_id(child, "c2")
    assert child[:TAG_CHARS] == grandchild[:TAG_CHARS] == root[:TAG_CHARS]
    keys = run_tree_keys(k, root) + run_tree_keys(k, child) + run_tree_keys(k, grandchild)
    assert {slot(key) for key in keys} == {slot(k.run(root))}
    assert all(key.startswith(f"baton:{{{k.bucket_of(root)}}}:") for key in keys)


def test_child_run_ids_are_deterministic_and_distinct() -> None:
    assert child_run_id("abcd1234", "c1") == child_run_id("abcd1234", "c1")
    assert child_run_id("abcd1234", "c1") != child_run_id("abcd1234", "c2")


def test_an_idempotent_submit_claims_in_its_runs_slot() -> None:
    k = Keys("baton", 16)
    for key in ("order-1", "order-2", "x" * 300):
        run_id = root_run_id(key)
        assert slot(k.idempotency(key)) == slot(k.run(run_id))
        assert root_run_id(key)[:TAG_CHARS] == run_id[:TAG_CHARS]  # a retry: the same bucket


def test_runs_spread_over_every_bucket() -> None:
    k = Keys("baton", 16)
    seen = {k.bucket_of(root_run_id()) for _ in range(2000)}
    assert seen == set(range(16))


def test_a_limits_keys_share_a_slot_with_its_index_and_outbox() -> None:
    k = Keys("baton", 16)
    for kind in ("tool", "step"):
        rate_at = k.rate_bucket("search", "ann", kind)
        rate_keys = [k.rate("search", "ann", kind), k.reservation("r", "c", 1, kind, rate_at)]
        assert len({slot(key) for key in rate_keys}) == 1
        at = k.concurrency_bucket("search", "ann", kind)
        base = k.concurrency("search", "ann", kind)
        conc = [f"{base}:holders", f"{base}:waiting", k.concurrency_index(at), k.outbox(at)]
        assert len({slot(key) for key in conc}) == 1


@pytest.mark.parametrize("buckets", [0, 16])
def test_metrics_name_a_limit_whatever_its_bucket(buckets: int) -> None:
    k = Keys("baton", buckets)
    assert _limit_name(k, k.concurrency("search", "ann")) == "tool:search:ann"
    assert _limit_name(k, k.concurrency("Flow.go", "", "step")) == "step:Flow.go:"
    assert _limit_name(k, k.concurrency("step", "x")) == "tool:step:x"


def test_a_cluster_state_store_needs_a_separate_broker() -> None:
    with pytest.raises(ConfigurationError, match="set BATON_BROKER_URL"):
        Settings(redis_url="redis+cluster://127.0.0.1:7000")
    both = Settings(redis_url="redis+cluster://127.0.0.1:7000", broker_url="amqp://h//")
    assert both.cluster and both.separate_broker and both.buckets == 16
    assert Settings(redis_url="redis://127.0.0.1:7000").buckets == 0

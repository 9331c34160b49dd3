"""Baton with a Redis Cluster as its state store and RabbitMQ as its broker.

``BATON_REDIS_URL=redis+cluster://...`` spreads the run trees over hash-tag buckets, so over
every master: the shipped examples give the same results and events as in-process, the runs'
keys land on more than one master and every bucket's outbox drains; and a master killed with
-9 mid-run, its replica promoted, loses no run and completes no step invocation twice."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from app.client import Client, RunHandle
from tasks import reaper
from tasks.keys import root_run_id
from tasks.protocol import InflightRecord
from tests.cluster.conftest import (
    QUEUES,
    cluster_client,
    cluster_env,
    cluster_url,
    log_tail,
    masters,
    outbox_entries,
    own_vhost,
    run_keys_by_master,
    unique_prefix,
)
from tests.harness import ProcessDied, Worker, eventually
from tests.integration.test_examples_both_runtimes import (
    CASES,
    _plain,
    assert_same_as_in_process,
    run_inprocess,
)
from tests.rabbit import RabbitServer
from tests.redis_cluster import LocalRedisCluster, Node

pytestmark = pytest.mark.integration
CRASH_SUM = sum(i * 10 + k for i in range(4) for k in range(3))  # CrashChain's default answer
ENDED = ("completed", "failed", "cancelled")


@pytest.fixture(scope="module")
def prefix() -> str:
    return unique_prefix("cl")


@pytest.fixture(scope="module")
def testdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("baton-cluster")


@pytest.fixture(scope="module")
def broker(cluster_rabbit: RabbitServer) -> str:
    return own_vhost(cluster_rabbit)


@pytest.fixture(scope="module")
def on_cluster(redis_cluster: LocalRedisCluster, broker: str, prefix: str) -> Client:
    return cluster_client(cluster_url(redis_cluster.nodes[0]), broker, prefix)


@pytest.fixture(scope="module")
def cluster_workers(
    redis_cluster: LocalRedisCluster, broker: str, testdir: Path, prefix: str
) -> Iterator[Worker]:
    env = cluster_env(cluster_url(redis_cluster.nodes[0]), broker, testdir, prefix)
    worker = Worker(env, QUEUES, concurrency=4).start()
    yield worker
    worker.stop()


@pytest.mark.parametrize(("name", "kwargs", "answer"), CASES, ids=[c[0] for c in CASES])
def test_examples_give_the_in_process_results_and_events_on_a_redis_cluster(
    redis_cluster: LocalRedisCluster,
    on_cluster: Client,
    cluster_workers: Worker,
    prefix: str,
    name: str,
    kwargs: dict[str, Any],
    answer: bool,
) -> None:
    assert_same_as_in_process(on_cluster, name, kwargs, answer)
    eventually(  # every message went through a relay, from every bucket's outbox
        lambda: not outbox_entries(redis_cluster, prefix),
        timeout=10,
        what=f"every outbox empty (left: {outbox_entries(redis_cluster, prefix)})",
    )


def test_runs_spread_their_keys_over_more_than_one_master(
    redis_cluster: LocalRedisCluster, on_cluster: Client, cluster_workers: Worker, prefix: str
) -> None:
    handles = [on_cluster.submit("Outer", x=i) for i in range(12)]
    for i, handle in enumerate(handles):
        expected = run_inprocess("Outer", {"x": i}, False)[0]
        assert _plain(handle.result(timeout=60)) == _plain(expected)
    rt = on_cluster.runtime
    homes = Counter(redis_cluster.master_of(rt.keys.run(h.run_id)).port for h in handles)
    assert len(homes) > 1, homes  # the run hashes of 12 runs live on more than one master
    held = run_keys_by_master(redis_cluster, prefix)
    assert sum(n > 0 for n in held.values()) > 1, held  # read on the masters themselves
    for handle in handles:  # and each run's keys are all on its run hash's master
        home = redis_cluster.master_of(rt.keys.run(handle.run_id))
        mine = [k for k in rt.keys.run_keys(handle.run_id) if rt.redis.exists(k)]
        assert mine and {redis_cluster.master_of(k).port for k in mine} == {home.port}
    assert not outbox_entries(redis_cluster, prefix)


# ---- a master killed with -9 mid-run


def _ended(handle: RunHandle) -> str | None:
    status = handle.status()
    return status if status in ENDED else None


def _wait_ended(handles: dict[str, RunHandle], worker: Worker, timeout: float) -> dict[str, str]:
    """Each run's final status; on a timeout, every run's status and the worker's log tail."""
    deadline = time.monotonic() + timeout
    try:
        return {
            label: eventually(
                partial(_ended, h), timeout=max(deadline - time.monotonic(), 0.1), what=label
            )
            for label, h in handles.items()
        }
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_report(handles, worker)}") from None


def _running(handles: dict[str, RunHandle]) -> list[str]:
    return [label for label, h in handles.items() if h.status() == "running"]


def _busiest(
    cluster: LocalRedisCluster, client: Client, running: list[RunHandle], spare: Node
) -> str:
    """The run hash of a running run on the master (not ``spare``, the node the URL names)
    whose slots hold the most running runs: the key whose master to kill."""
    keys = [client.runtime.keys.run(h.run_id) for h in running]
    homes = {key: cluster.master_of(key).port for key in keys}
    counts = Counter(port for port in homes.values() if port != spare.port)
    assert counts, f"no running run outside :{spare.port}'s slots"
    port = counts.most_common(1)[0][0]
    return next(key for key, home in homes.items() if home == port)


def _report(handles: dict[str, RunHandle], worker: Worker) -> str:
    """What each run's status is, for a failure message: the evidence, not a guess."""
    lines = []
    for label, handle in handles.items():
        try:
            lines.append(f"{label} {handle.run_id}: {handle.status()}")
        except Exception as exc:  # the state store itself in trouble: say so
            lines.append(f"{label} {handle.run_id}: {exc!r}")
    return "\n".join(lines) + f"\n--- worker log tail:\n{log_tail(worker)}"


def _steps_completed_twice(handle: RunHandle) -> Counter[str]:
    """The run's step invocations with more than one completed span (the tally in Redis)."""
    completed = Counter(
        s.inv for s in handle.spans() if s.kind.value == "step" and s.outcome.value == "completed"
    )
    assert completed, f"{handle.run_id}: no completed step span"
    return Counter({inv: n for inv, n in completed.items() if n != 1})


def _effects(testdir: Path, label: str) -> tuple[list[str], Counter[str]]:
    """The crash tool's tally outside Redis: the call ids applied, and executions per call."""
    base = testdir / "effects"
    applied = (base / f"{label}.effects").read_text().split()
    runs = Counter(
        line.split()[1]
        for line in (base / f"{label}.exec").read_text().splitlines()
        if line.startswith("start ")
    )
    return applied, runs


@pytest.mark.timeout(300)
def test_a_master_killed_mid_run_loses_no_run_and_completes_no_step_twice(
    disposable_cluster: LocalRedisCluster, cluster_rabbit: RabbitServer, tmp_path: Path
) -> None:
    cluster, prefix = disposable_cluster, unique_prefix("fo")
    spare = cluster.nodes[0]  # the URL's node: never the one killed
    url = cluster_url(spare)
    broker = own_vhost(cluster_rabbit)
    worker = Worker(cluster_env(url, broker, tmp_path, prefix), QUEUES, concurrency=4).start()
    try:
        client = cluster_client(url, broker, prefix)
        handles = {f"c{i}": client.submit("CrashChain", label=f"c{i}") for i in range(8)}
        handles |= {f"r{i}": client.submit("Research", topic=f"r{i}", n_docs=5) for i in range(6)}
        eventually(  # the first tool calls ran: the runs are under way
            lambda: (tmp_path / "effects" / "c0.exec").exists(), timeout=30, what="c0 under way"
        )
        running = _running(handles)
        key = _busiest(cluster, client, [handles[label] for label in running], spare)
        home = cluster.master_of(key)
        doomed = [
            label
            for label in running
            if cluster.master_of(client.runtime.keys.run(handles[label].run_id)) is home
        ]
        began = time.monotonic()
        kill = cluster.kill_master_of(key)
        promoted = cluster.wait_promoted(kill)
        failover = time.monotonic() - began
        statuses = _wait_ended(handles, worker, timeout=120)
        assert set(statuses.values()) == {"completed"}, f"{statuses}\n{_report(handles, worker)}"
        for label, handle in handles.items():
            if label.startswith("c"):
                assert handle.result(timeout=5) == CRASH_SUM
            else:
                expected = run_inprocess("Research", {"topic": label, "n_docs": 5}, False)[0]
                assert _plain(handle.result(timeout=5)) == _plain(expected)
        twice = {label: _steps_completed_twice(h) for label, h in handles.items()}
        assert not any(twice.values()), f"steps completed more than once: {twice}"
        for i in range(8):
            applied, executions = _effects(tmp_path, f"c{i}")
            assert len(applied) == len(set(applied)) == 12, applied  # each call's effect once
            assert len(executions) == 12, executions
        eventually(lambda: not outbox_entries(cluster, prefix), timeout=20, what="outboxes empty")
    finally:
        worker.stop()
    print(
        f"killed :{kill.master.port} with {len(running)} runs running, {len(doomed)} of them "
        f"in its slots; :{promoted.port} "
        f"promoted after {failover:.1f}s; masters now {[m.port for m in masters(cluster)]}"
    )


def _key_on(cluster: LocalRedisCluster, client: Client, master: Node, tag: str) -> str:
    """An idempotency key (named by ``tag``) whose run and claim land in a bucket ``master``
    serves."""
    keys = client.runtime.keys
    return next(
        f"{tag}{i}"
        for i in range(10_000)
        if cluster.master_of(keys.idempotency(f"{tag}{i}")) is master
        and cluster.master_of(keys.run(root_run_id(f"{tag}{i}"))) is master
    )


@pytest.mark.long  # by `bash scripts/long.sh`: the default suite's time
@pytest.mark.timeout(120)
def test_a_client_submits_into_a_promoted_replicas_slots_at_the_first_try(
    disposable_cluster: LocalRedisCluster, cluster_rabbit: RabbitServer, tmp_path: Path
) -> None:
    """A client that knew the cluster before a failover (its slot map names the dead master)
    submits, after the failover, a run whose bucket the promoted replica now serves: the
    submit succeeds and the run completes (a user sees no error once the cluster is whole)."""
    cluster, prefix = disposable_cluster, unique_prefix("sb")
    url = cluster_url(cluster.nodes[0])
    broker = own_vhost(cluster_rabbit)
    worker = Worker(cluster_env(url, broker, tmp_path, prefix), QUEUES, concurrency=2).start()
    try:
        client = cluster_client(url, broker, prefix)
        victim = next(m for m in masters(cluster) if m is not cluster.nodes[0])
        before = client.submit(
            "Outer", x=1, idempotency_key=_key_on(cluster, client, victim, "before")
        )
        assert before.result(timeout=30) is not None  # the client has used the victim
        kill = cluster.kill_master_of(client.runtime.keys.run(before.run_id))
        assert kill.master is victim
        cluster.wait_promoted(kill)
        after = client.submit(
            "Outer", x=2, idempotency_key=_key_on(cluster, client, kill.replica, "after")
        )
        expected = run_inprocess("Outer", {"x": 2}, False)[0]
        assert _plain(after.result(timeout=60)) == _plain(expected)
    finally:
        worker.stop()


def test_the_reaper_restamps_waiting_messages_of_runs_in_many_buckets_in_one_sweep(
    redis_cluster: LocalRedisCluster, cluster_rabbit: RabbitServer
) -> None:
    """Messages still in the outboxes (no worker relays them) are overdue and found waiting:
    one sweep restamps them all, though their runs sit in different buckets, hence slots (one
    script over all of them would be refused: CROSSSLOT)."""
    client = cluster_client(
        cluster_url(redis_cluster.nodes[0]), own_vhost(cluster_rabbit), unique_prefix("rp")
    )
    rt = client.runtime
    handles = [client.submit("Outer", x=i) for i in range(8)]
    assert len({rt.keys.bucket_of(h.run_id) for h in handles}) > 1

    def dues() -> dict[str, float]:
        records = [
            InflightRecord.from_json(raw)
            for h in handles
            for raw in rt.redis.hvals(rt.keys.inflight(h.run_id))
        ]
        return {r.message.task_id: r.due for r in records}

    before = dues()
    assert len(before) == len(handles)
    lost_after = 0.01  # RabbitMQ is trusted for 10 of these past due: then each is a suspect
    eventually(lambda: time.time() > max(before.values()) + 20 * lost_after, what="overdue")
    assert reaper.sweep(rt, lost_after, reaper.Suspects(gap=60.0)) == 0  # all found waiting
    after = dues()
    assert after.keys() == before.keys()
    assert all(after[t] > before[t] for t in before)  # every one restamped


@pytest.mark.long  # by `bash scripts/long.sh`: the default suite's time
def test_a_worker_with_another_bucket_count_than_the_clusters_runs_refuses_to_start(
    redis_cluster: LocalRedisCluster, cluster_rabbit: RabbitServer, tmp_path: Path
) -> None:
    """Runs are found by their bucket: a worker counting buckets otherwise would look for every
    run in the wrong place, so it stops at start with the count to set."""
    url, prefix = cluster_url(redis_cluster.nodes[0]), unique_prefix("bk")
    broker = own_vhost(cluster_rabbit)
    first = Worker(cluster_env(url, broker, tmp_path, prefix), QUEUES, concurrency=1).start()
    first.stop()  # it recorded the default count, 16
    env = {**cluster_env(url, broker, tmp_path, prefix), "BATON_STATE_BUCKETS": "8"}
    with pytest.raises(ProcessDied, match="BATON_STATE_BUCKETS is 8, but this cluster's runs"):
        Worker(env, QUEUES, concurrency=1, name="buckets8@test").start()

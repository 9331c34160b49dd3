"""Fixtures: a Redis Cluster of six real nodes, shared by the session or built for one test,
a private RabbitMQ node (the broker a cluster state store needs), and helpers that look at
every master of a cluster directly (which keys each one holds, what waits in any outbox)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.celery_app import create_app
from app.client import Client
from config import Settings
from tests.harness import TEST_IMPORTS, Worker, worker_env
from tests.rabbit import RabbitServer, running_rabbit
from tests.redis_cluster import LocalRedisCluster, Node

# every queue of the topology the examples use, and the crash-test flows' own
QUEUES = ["baton", "tools", "analysis", "itest", "llm", "crash"]
# short limits, so a message stranded by a fault comes back within seconds
LIMITS = {"BATON_MAX_TIME_LIMIT": 5, "BATON_VISIBILITY_TIMEOUT": 8}


def _built(workdir: Path) -> Iterator[LocalRedisCluster]:
    cluster = LocalRedisCluster(workdir)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    """The session's cluster: tests may write keys under a unique name, never kill nodes."""
    yield from _built(tmp_path_factory.mktemp("cluster"))


@pytest.fixture
def disposable_cluster(tmp_path: Path) -> Iterator[LocalRedisCluster]:
    """A cluster of the test's own, for tests that kill or stop nodes."""
    yield from _built(tmp_path / "cluster")


@pytest.fixture(scope="session")
def cluster_rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitServer]:
    """The broker beside the cluster: a RabbitMQ node of our own; nothing survives it."""
    with running_rabbit(tmp_path_factory.mktemp("cluster-rabbit") / "node") as server:
        yield server


def cluster_url(node: Node) -> str:
    """``BATON_REDIS_URL`` of a cluster state store, naming one of its nodes."""
    return f"redis+cluster://127.0.0.1:{node.port}"


def own_vhost(rabbit: RabbitServer) -> str:
    """The broker URL of a new vhost of ``rabbit``: Baton's queue names carry no key prefix,
    so workers of another test (another cluster, another prefix) must not share them."""
    vhost = f"cl{uuid.uuid4().hex[:8]}"
    rabbit.ctl("add_vhost", vhost)
    rabbit.ctl("set_permissions", "-p", vhost, rabbit.user, ".*", ".*", ".*")
    return rabbit.url.removesuffix("//") + f"/{vhost}"


def cluster_env(url: str, broker: str, testdir: Path, prefix: str) -> dict[str, str]:
    """A worker's environment: the cluster as the state store, ``broker`` (amqp://) as the
    broker."""
    return worker_env(url, testdir, BATON_BROKER_URL=broker, BATON_KEY_PREFIX=prefix, **LIMITS)


def cluster_client(url: str, broker: str, prefix: str, **settings: Any) -> Client:
    """A client of the same configuration (and limits) as ``cluster_env``'s workers."""
    config = Settings(
        redis_url=url,
        broker_url=broker,
        key_prefix=prefix,
        imports=TEST_IMPORTS,
        max_time_limit=5,
        visibility_timeout_override=8,
        **settings,
    )
    return Client(runtime=create_app(config)[1])


def unique_prefix(stem: str) -> str:
    return f"{stem}{uuid.uuid4().hex[:6]}"


def masters(cluster: LocalRedisCluster) -> list[Node]:
    """The live masters that serve slots, as the first live node sees them."""
    views = cluster.views(cluster.live_nodes[0])
    ports = [v.port for v in views if v.is_master and v.slots and not v.is_failed]
    return [cluster.node(port) for port in sorted(ports)]


def keys_on(node: Node, pattern: str) -> list[str]:
    """The keys ``node`` itself holds that match ``pattern`` (a plain client: no redirects)."""
    with node.client() as c:
        return sorted(str(k) for k in c.scan_iter(match=pattern, count=1000))


def run_keys_by_master(cluster: LocalRedisCluster, prefix: str) -> dict[int, int]:
    """Master port -> how many keys of runs (``<prefix>:...run:...``) it holds."""
    return {m.port: sum(":run:" in k for k in keys_on(m, f"{prefix}:*")) for m in masters(cluster)}


def outbox_entries(cluster: LocalRedisCluster, prefix: str) -> dict[str, int]:
    """Every outbox list (one per bucket) still holding entries -> how many, on any master."""
    out: dict[str, int] = {}
    for master in masters(cluster):
        with master.client() as c:
            for key in c.scan_iter(match=f"{prefix}:*outbox", count=1000):
                out[str(key)] = int(c.llen(key))
    return {k: n for k, n in out.items() if n}


def log_tail(worker: Worker, chars: int = 3000) -> str:
    return worker.log.read_text(errors="replace")[-chars:] if worker.log.exists() else ""

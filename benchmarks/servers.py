"""The private servers of one benchmark configuration, started and stopped together.

Configurations, by broker and state store:

- ``redis`` + ``redis``: one redis-server is broker and state (Baton's default);
- ``rabbitmq`` + ``redis``: a RabbitMQ node is the broker, one redis-server the state;
- ``rabbitmq`` + ``cluster``: a RabbitMQ node is the broker, a Redis Cluster (three masters, a
  replica each, ``tests.redis_cluster``) the state (``BATON_REDIS_URL=redis+cluster://...``).

Every Redis runs AOF with ``appendfsync everysec`` (Redis's default durability, what a deployment
runs): the cluster's nodes start with ``always`` and are switched once they are up.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.harness import RedisServer
from tests.rabbit import RabbitServer
from tests.redis_cluster import LocalRedisCluster, Node

CONFIGS = {  # a configuration's name -> (broker, state)
    "redis": ("redis", "redis"),
    "rabbitmq": ("rabbitmq", "redis"),
    "cluster": ("rabbitmq", "cluster"),
}


@dataclass
class Servers:
    """What one configuration runs: ``redis`` is the single redis-server (the state, or with a
    cluster state only started on request, e.g. as raw Celery's result backend)."""

    redis: RedisServer | None
    rabbit: RabbitServer | None
    cluster: LocalRedisCluster | None

    @property
    def state_url(self) -> str:
        """Baton's ``BATON_REDIS_URL``."""
        if self.cluster is not None:
            return "redis+cluster://" + self.cluster.urls[0].removeprefix("redis://")
        assert self.redis is not None
        return self.redis.url

    @property
    def broker_url(self) -> str | None:
        """Baton's ``BATON_BROKER_URL``: None when the state Redis is the broker too."""
        return None if self.rabbit is None else self.rabbit.url

    def masters(self) -> list[Node]:
        """The cluster's master nodes (those that serve the state's commands)."""
        assert self.cluster is not None
        views = self.cluster.views(self.cluster.nodes[0])
        ports = {v.port for v in views if v.is_master and not v.is_failed}
        return [n for n in self.cluster.nodes if n.port in ports]


@contextmanager
def servers(tmp: Path, broker: str, state: str, plain_redis: bool = False) -> Iterator[Servers]:
    """Start ``broker`` and ``state``'s servers under ``tmp``; ``plain_redis`` also starts a
    single redis-server beside a cluster state."""
    with ExitStack() as stack:
        redis = None
        if state == "redis" or plain_redis:
            (tmp / "redis").mkdir()
            redis = RedisServer(tmp / "redis", appendfsync="everysec")
            stack.callback(redis.stop)
            redis.start()
        rabbit = None
        if broker == "rabbitmq":
            (tmp / "rabbit").mkdir()
            rabbit = RabbitServer(tmp / "rabbit")
            stack.callback(rabbit.stop)
            rabbit.start()
        cluster = None
        if state == "cluster":
            cluster = LocalRedisCluster(tmp / "cluster").start()
            stack.callback(cluster.stop)
            for node in cluster.nodes:
                with node.client() as c:
                    c.config_set("appendfsync", "everysec")
        yield Servers(redis, rabbit, cluster)


def check_config(broker: str, state: str) -> str | None:
    """Why ``broker`` + ``state`` cannot run, or None."""
    if state == "cluster" and broker != "rabbitmq":
        return "--state cluster needs --broker rabbitmq (a cluster holds state, not queues)"
    return None

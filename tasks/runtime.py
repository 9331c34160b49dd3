"""The distributed runtime's per-process resources: settings, Redis, event loops, sending.

One ``Runtime`` per process owns them all. The Redis client is rebuilt after a fork (prefork
workers); an event loop is kept per thread (a ``threads`` pool runs several steps at once, and
two of them must never share a loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import redis
from celery import Celery
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from config import Settings, Topology, load_topology
from tasks import scripts
from tasks.cluster import ClusterScript, cluster_client, is_cluster_url, on_node
from tasks.keys import Keys
from tasks.loop import current_limit, current_loop
from tasks.placement import Placement
from tasks.protocol import InflightRecord, Message, TimerEntry
from tasks.publish import Publisher

T = TypeVar("T")
# A message delivered more often than this has killed its worker every time: its run fails
# (or its tool call fails as data) instead of looping forever.
MAX_DELIVERIES = 5
CLOCK_REFRESH = 60.0  # seconds between measurements of Redis's clock offset


class Runtime:
    """Everything a worker or client needs to act on runs."""

    def __init__(self, settings: Settings, app: Celery, topology: Topology | None = None) -> None:
        self.settings = settings
        self.app = app
        self.topology = topology or load_topology(settings.topology_file)
        self.placement = Placement(self.topology, settings.default_mode, settings.max_time_limit)
        self.keys = Keys(settings.key_prefix, settings.buckets)
        outbox = self.keys.outbox if settings.separate_broker else None
        self.publisher = Publisher(app, self.keys.broker_prefix(), outbox, self.keys.bucket_of)
        # a cluster's outboxes are one per bucket: writes ring this list so a relay wakes
        self.bell = self.keys.outbox_bell() if settings.buckets else None
        self._redis: Any = None
        self._submit_redis: Any = None
        self._broker_redis: Any = None
        self._pid = 0
        self._clock: tuple[float, float] = (0.0, -1e9)  # (server minus local seconds, measured at)
        self._scripts: dict[str, Any] = {}
        self._local = threading.local()

    @property
    def redis(self) -> Any:
        """The process's Redis client (``Any``: redis-py's stubs don't model decoded replies)."""
        if self._redis is None or self._pid != os.getpid():
            self._redis = redis_client(self.settings.store_url, self.settings.redis_max_connections)
            self._submit_redis = self._broker_redis = None
            self._pid = os.getpid()
            self._scripts = {}
        return self._redis

    @property
    def broker_redis(self) -> Any:
        """The Redis holding the queue lists (kombu's Redis transport): the state's own, or a
        separate ``redis://`` broker's (the reaper reads its lists). Not for an AMQP broker."""
        if not self.settings.separate_broker or self.settings.broker.startswith("amqp"):
            return self.redis
        if self._broker_redis is None or self._pid != os.getpid():
            _ = self.redis  # resets per-process state after a fork
            self._broker_redis = redis_client(self.settings.broker, 50)
        return self._broker_redis

    @property
    def submit_redis(self) -> Any:
        """A client whose every wait is bounded by the submit timeout and never retried: a
        submit fails in bounded time, and the CREATE script's deadline makes it all or nothing."""
        if self._submit_redis is None or self._pid != os.getpid():
            _ = self.redis  # resets per-process state after a fork
            self._submit_redis = bounded_client(
                self.settings.store_url, self.settings.submit_timeout
            )
        return self._submit_redis

    def server_time(self) -> float:
        """Redis's clock, estimated from this process's (offset measured once a minute).

        Deadlines checked inside Redis (the CREATE script) must not depend on the client's and
        the server's clocks agreeing."""
        offset, measured = self._clock
        local = time.monotonic()
        if local - measured > CLOCK_REFRESH:
            before = time.time()
            seconds, micros = self.on_submit_node(None, lambda node: node.time())
            after = time.time()
            offset = seconds + micros / 1e6 - (before + after) / 2
            self._clock = (offset, local)
        return time.time() + offset

    def on_submit_node(self, key: str | None, call: Callable[[Any], T]) -> T:
        """``call`` with the submit client, or on a cluster with its client of ``key``'s
        master (``tasks.cluster.on_node``); a timeout is not retried (the submit's deadline
        decides it)."""
        return on_node(self.submit_redis, key, call)

    def script(self, name: str, client: Any = None) -> Any:
        """A registered Lua script (EVALSHA with automatic reload), on ``client`` if given."""
        r = self.redis if client is None else client
        key = name if client is None else f"{name}@{id(client)}"
        if key not in self._scripts:
            registered = r.register_script(getattr(scripts, name))
            cluster = isinstance(r, RedisCluster)
            self._scripts[key] = ClusterScript(registered) if cluster else registered
        return self._scripts[key]

    def ring(self, *buckets: int) -> None:
        """On a cluster, tell the relays which buckets' outboxes a write has filled (once that
        write is done); else nothing. Only a hint: a ring that fails (the bell's master away)
        costs a relay sweep, never the write it follows."""
        if self.bell is not None and buckets:
            with contextlib.suppress(redis.RedisError):
                self.redis.lpush(self.bell, *sorted(set(buckets)))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine to completion: on the asyncio pool's shared loop when this task runs
        in one, else on this thread's own event loop (kept across tasks)."""
        shared = current_loop.get()
        if shared is not None:
            return shared.run(coro, current_limit.get())
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None or loop.is_closed() or getattr(self._local, "pid", 0) != os.getpid():
            loop = self._local.loop = asyncio.new_event_loop()
            self._local.pid = os.getpid()
        return loop.run_until_complete(coro)

    # --- sending ------------------------------------------------------------------------

    def send(self, messages: list[Message], pipe: Any = None) -> None:
        """Publish messages: on ``pipe`` (sent with the caller's writes) or in one round trip.

        A message with a countdown goes to the timer set (``tasks.timers``), not its queue,
        in the same round trip; it is never framed with a broker ETA. Each is recorded in its
        run's in-flight hash until its task is done (the reaper resends what a crash lost)."""
        if not messages:
            return
        own = pipe if pipe is not None else self.redis.pipeline(transaction=False)
        ts = now()
        server: float | None = None
        for m in messages:
            delay = max(m.countdown or 0.0, 0.0)
            # due when it may first start: the reaper never takes a delayed message for lost
            record = InflightRecord(ts + delay, m)
            own.hset(self.keys.inflight(m.run_id), m.task_id, record.to_json())
            if delay > 0:
                # held in the timer set, not by the broker: the pump pushes it once due
                if server is None:
                    server = self.server_time()
                key, envelope = self.publisher.frame(m)
                timers = self.keys.timers(self.keys.bucket_of(m.run_id))
                own.zadd(timers, {TimerEntry(key, envelope).dump(): server + delay})
        pushed = [m for m in messages if not (m.countdown or 0.0) > 0]
        self.publisher.push(own, pushed)
        if pipe is None:
            own.execute()
            # after the write, never in it: on a cluster the bell may sit on another node, and
            # a relay it woke before the write landed would find the outbox empty
            self.ring(*(self.keys.bucket_of(m.run_id) for m in pushed))

    def finished(self, pipe: Any, run_id: str, task_id: str | None) -> None:
        """The task ``task_id`` of ``run_id`` is done with its message (on ``pipe``)."""
        if task_id:
            pipe.hdel(self.keys.inflight(run_id), task_id)


def redis_client(url: str, max_connections: int = 1000) -> Any:
    """A Redis client that notices dead connections and reconnects (Redis restarts happen).

    Its pool blocks for a free connection instead of raising: an asyncio or threads worker has
    hundreds of tasks in flight, and redis-py's default pool raises ``MaxConnectionsError``
    past 100 connections, which would lose the answer of the task that hit it."""
    if is_cluster_url(url):
        return cluster_client(
            url,
            max_connections=max_connections,
            socket_timeout=10,
            socket_connect_timeout=5,
            socket_keepalive=True,
            health_check_interval=10,
        )
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        socket_timeout=10,
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=10,
        retry_on_timeout=True,
        decode_responses=True,
    )
    return redis.Redis(connection_pool=pool)


def bounded_client(url: str, timeout: float) -> Any:
    """A Redis client that gives up after ``timeout`` seconds at every step (waiting for a
    connection, connecting, reading a reply) and never retries by itself."""
    if is_cluster_url(url):
        return cluster_client(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=min(timeout, 5.0),
            retry=Retry(NoBackoff(), 0),
        )
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=50,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=min(timeout, 5.0),
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    return redis.Redis(connection_pool=pool)


def now() -> float:
    return time.time()

"""The Redis Cluster client Baton's state store uses (``BATON_REDIS_URL=redis+cluster://``).

redis-py's cluster client, with what Baton needs of it: scripts that ride on a pipeline (its
cluster pipeline refuses ``EVALSHA``), and scripts routed by their keys without first asking
a node which keys they name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis._parsers.commands import CommandPolicies, RequestPolicy, ResponsePolicy
from redis.cluster import ClusterPipeline, RedisCluster
from redis.commands.policies import STATIC_POLICIES, StaticPolicyResolver
from redis.exceptions import ClusterDownError, MovedError, TryAgainError

from config.settings import CLUSTER_SCHEME

T = TypeVar("T")
# what a master that failed over answers (or does not): re-read the slots and try again
MOVED_AWAY = (redis.ConnectionError, MovedError, ClusterDownError, TryAgainError)


class ClusterScript:
    """A Lua script on a Redis Cluster: EVALSHA on the client (redis-py routes it by its keys'
    slot, and reloads the script on NOSCRIPT), EVAL on a pipeline: redis-py's cluster pipeline
    refuses EVALSHA, and EVAL also survives a promoted replica's empty script cache."""

    def __init__(self, script: Any) -> None:
        self.script = script

    def __call__(self, keys: Any = (), args: Any = (), client: Any = None) -> Any:
        keys, args = list(keys or ()), list(args or ())
        if isinstance(client, ClusterPipeline):
            run: Any = client.execute_command  # untyped in redis-py
            return run("EVAL", self.script.script, len(keys), *keys, *args)
        return self.script(keys=keys, args=args, client=client)


KEYED = CommandPolicies(RequestPolicy.DEFAULT_KEYED, ResponsePolicy.DEFAULT_KEYED)


class ScriptsByKey(StaticPolicyResolver):
    """redis-py 8.1 asks a node which keys a script names (``COMMAND GETKEYS``, one round trip
    more per script call) before it routes it, though it reads them from the arguments
    anyway: say that scripts go by their keys, and it routes them at once."""

    def __init__(self) -> None:
        super().__init__()
        core = {**STATIC_POLICIES["core"], "eval": KEYED, "evalsha": KEYED}
        self._policies = {**STATIC_POLICIES, "core": core}


class BatonCluster(RedisCluster):
    """redis-py's cluster client whose pipelines resolve commands as the client does (its
    ``pipeline`` does not hand its policy resolver on)."""

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        base: Any = super()  # redis-py's cluster client is untyped
        pipe = base.pipeline(transaction, shard_hint)
        pipe._policy_resolver = self._policy_resolver
        return pipe


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://host:port``)."""
    return url.startswith(f"{CLUSTER_SCHEME}://")


def node_url(url: str) -> str:
    """A cluster URL as redis-py takes it: the plain ``redis://`` URL of its node."""
    return "redis://" + url.removeprefix(f"{CLUSTER_SCHEME}://")


def cluster_client(url: str, **options: Any) -> Any:
    """A Redis Cluster client from a ``redis+cluster://host:port`` URL (any node's address:
    it discovers the rest, and follows failovers)."""
    plain = node_url(url)
    return BatonCluster.from_url(
        plain, decode_responses=True, policy_resolver=ScriptsByKey(), **options
    )


def on_node(client: Any, key: str | None, call: Callable[[Any], T]) -> T:
    """``call`` with ``client``; on a cluster, with its client of ``key``'s master (a random
    master for None), so one connection carries all ``call`` sends (a ``WAIT`` sees the
    writes before it) and redis-py asks no node which keys a command names. A cluster whose
    slots moved (a failover) is re-read and ``call`` tried once more on the new master."""
    if not isinstance(client, RedisCluster):
        return call(client)
    rc: Any = client  # redis-py's cluster client is partly untyped
    for attempt in (1, 2):
        node = rc.get_node_from_key(key) if key else rc.get_random_primary_node()
        try:
            return call(node.redis_connection)
        except MOVED_AWAY:
            if attempt == 2:
                raise
            rc.nodes_manager.initialize()
    raise AssertionError("unreachable")

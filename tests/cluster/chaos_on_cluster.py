"""The chaos suite with a Redis Cluster as the state store and RabbitMQ as the broker.

The same runs, driver and counts as ``tests.chaos.suite``; only the parts change. The state is
a six-node cluster (``tests.redis_cluster``, AOF ``always``), and the faults that target "the
Redis" target one master of it, chosen by the suite's seed:

- ``redis_restart``: SIGKILL the master, wait for its replica to take its slots over, then
  start the killed node again on its port and data (it rejoins as the new master's replica);
- ``redis_freeze``: SIGSTOP the master for ``freeze_seconds``, longer than the cluster's node
  timeout, so its replica is promoted while it is frozen; SIGCONT, and it rejoins as a replica.

Worker kills, SIGTERMs, poison messages and RabbitMQ's kill -9 and restart are the suite's own.

    python -m tests.cluster.chaos_on_cluster --short
    bash scripts/chaos.sh --short --state cluster        # the same, after the bootstrap
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from redis.crc import key_slot

from tests.chaos import suite
from tests.chaos.cluster import Cluster
from tests.chaos.record import ChaosConfig, ChaosResult
from tests.harness import eventually
from tests.redis_cluster import LocalRedisCluster, Node

HEAL_TIMEOUT = 60.0  # how long the cluster may take to be whole again after a fault


class ChaosOnCluster(Cluster):
    """The suite's parts with a Redis Cluster for the state (RabbitMQ is the broker)."""

    def __init__(self, cfg: ChaosConfig, workdir: Path, prefix: str) -> None:
        super().__init__(replace(cfg, broker="rabbitmq"), workdir, prefix)
        self.state = LocalRedisCluster(workdir / "cluster")
        self.pick = random.Random(cfg.seed + 2)  # which master each fault targets
        # a node dies with the thread that started it (PR_SET_PDEATHSIG follows the parent
        # thread), and the fault thread ends before the suite does: restart nodes from this
        # one, which lives as long as the cluster
        self.spawner = ThreadPoolExecutor(1, thread_name_prefix="chaos-cluster-nodes")

    @property
    def url(self) -> str:
        """``BATON_REDIS_URL``: one node's address (every node is up whenever a worker starts:
        faults, and worker restarts, run under ``lock`` and end with the cluster whole)."""
        return f"redis+cluster://127.0.0.1:{self.state.nodes[0].port}"

    def start_state(self) -> None:
        self.state.start()

    def stop_state(self) -> None:
        for node in self.state.live_nodes:
            assert node.proc is not None
            os.killpg(node.proc.pid, signal.SIGCONT)  # never leave one frozen
        self.state.stop()
        self.spawner.shutdown()

    def _master(self) -> Node:
        views = self.state.views(self.state.live_nodes[0])
        ports = sorted(v.port for v in views if v.is_master and v.slots and not v.is_failed)
        node = self.state.node(self.pick.choice(ports))
        return node

    def _restart_redis(self) -> None:
        master = self._master()
        self.fsync_at_restart.append("always")  # every node's AOF
        kill = self.state.kill_master_of(_key_of(self.state, master))
        self.state.wait_promoted(kill)
        # the same port, data and nodes.conf: it rejoins as the promoted replica's replica
        self.spawner.submit(kill.master.start, self.state.node_timeout_ms).result()
        self._heal()

    def _freeze_redis(self) -> None:
        master = self._master()
        assert master.proc is not None
        os.killpg(master.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(self.cfg.freeze_seconds)  # the fault itself: the master stays stopped
        finally:
            os.killpg(master.proc.pid, signal.SIGCONT)
        self._heal()

    def _heal(self) -> None:
        eventually(self.state.healthy, timeout=HEAL_TIMEOUT, interval=0.1, what="cluster whole")


def _key_of(cluster: LocalRedisCluster, master: Node) -> str:
    """A key whose slot ``master`` serves (what ``kill_master_of`` takes)."""
    view = next(v for v in cluster.views(master) if v.port == master.port)
    return next(k for k in (f"probe{i}" for i in range(100_000)) if view.owns(key_slot(k.encode())))


def run_chaos_on_cluster(cfg: ChaosConfig) -> ChaosResult:
    """``tests.chaos.suite.run_chaos`` with :class:`ChaosOnCluster` as its parts."""
    result = suite.run_chaos(replace(cfg, broker="rabbitmq"), parts=ChaosOnCluster)
    result.settings["state"] = "cluster"
    return result


def main(argv: list[str] | None = None) -> int:
    """The suite's command line, plus ``--state cluster`` (the only state this module runs)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--state", choices=["redis", "cluster"], default="cluster")
    known, rest = p.parse_known_args(argv)
    if known.state != "cluster":
        return suite.main(rest)
    if not any(arg.startswith("--broker") for arg in rest):
        rest = [*rest, "--broker", "rabbitmq"]  # a cluster state store needs a separate broker
    elif "rabbitmq" not in rest:
        print("--state cluster needs --broker rabbitmq (a separate broker)", file=sys.stderr)
        return 2
    return suite.main(rest, run=run_chaos_on_cluster)


if __name__ == "__main__":
    sys.exit(main())

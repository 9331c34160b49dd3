"""A Redis Cluster of our own for tests: six ``redis-server --cluster-enabled yes`` nodes.

Three masters and three replicas on free loopback ports, each node in its own directory under
a temp dir (AOF ``always``, its ``nodes.conf`` there too), joined with ``redis-cli --cluster
create``. A short ``cluster-node-timeout`` makes failover take a few seconds, so a test can
SIGKILL the master owning a key and wait for its replica to take the slot over. Every node runs
in a session of its own: ``stop`` kills its whole process group (AOF rewrite and replication
forks included), and a node also dies with the test process (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from tests.harness import ProcessDied, eventually, stop_group

SLOTS = 16384
PR_SET_PDEATHSIG = 1
_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
EPHEMERAL_LOW = int(_RANGE.read_text().split()[0]) if _RANGE.exists() else 32768


@dataclass(frozen=True)
class NodeView:
    """One line of ``CLUSTER NODES``: a node as some node of the cluster sees it."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def is_failed(self) -> bool:
        return bool({"fail", "fail?", "noaddr"} & self.flags)

    def owns(self, slot: int) -> bool:
        return any(lo <= slot <= hi for lo, hi in self.slots)


def parse_nodes(text: str) -> list[NodeView]:
    """Parse ``CLUSTER NODES`` output (slot migration markers ``[...]`` are skipped)."""
    views = []
    for line in text.strip().splitlines():
        node_id, addr, flags, master = line.split()[:4]
        ranges = []
        for part in line.split()[8:]:
            if part.startswith("["):
                continue
            lo, _, hi = part.partition("-")
            ranges.append((int(lo), int(hi or lo)))
        views.append(
            NodeView(
                node_id=node_id,
                port=int(addr.split("@")[0].rsplit(":", 1)[1]),
                flags=frozenset(flags.split(",")),
                master_id=None if master == "-" else master,
                slots=tuple(ranges),
            )
        )
    return views


def _die_with_parent() -> None:
    """In the child before exec: a session of its own, SIGKILLed if the test process dies."""
    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Node:
    """One redis-server of the cluster: its client port, bus port and data directory."""

    port: int
    bus_port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    node_id: str = ""
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.dir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self) -> redis.Redis:
        """A plain (non-cluster) client of this node; the caller closes it."""
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    def start(self, node_timeout_ms: int) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run bash scripts/bootstrap.sh")
        args = {
            "port": self.port,
            "cluster-port": self.bus_port,
            "bind": "127.0.0.1",
            "dir": self.dir,
            "cluster-enabled": "yes",
            "cluster-config-file": self.dir / "nodes.conf",
            "cluster-node-timeout": node_timeout_ms,
            "appendonly": "yes",
            "appendfsync": "always",
            "save": "",
            "repl-diskless-sync-delay": 0,  # a replica's first sync starts at once, not in 5 s
            "maxmemory-policy": "noeviction",
            "daemonize": "no",
            "loglevel": "notice",
            "logfile": self.log,
        }
        cmd = [binary, *(x for k, v in args.items() for x in (f"--{k}", str(v)))]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )

    def ping(self) -> bool:
        if not self.alive:
            raise ProcessDied(f"redis-server :{self.port} exited: {self.tail()}")
        with self.client() as c:
            return bool(c.ping())

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal the node's process group (SIGKILL after 15 s if SIGTERM did not end it)."""
        if sig == signal.SIGTERM:
            stop_group(self.proc)
        elif self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=10)


class LocalRedisCluster:
    """Six cluster nodes (3 masters with a replica each) built and torn down by a test."""

    def __init__(self, workdir: Path, size: int = 6, node_timeout_ms: int = 1500) -> None:
        self.dir = workdir
        self.node_timeout_ms = node_timeout_ms
        self.taken: set[int] = set()
        self.nodes: list[Node] = []
        for i in range(size):
            (workdir / f"node{i}").mkdir(parents=True)
            self.nodes.append(Node(self._port(), self._port(), workdir / f"node{i}"))
        self.build_seconds = 0.0

    def _port(self) -> int:
        """A free port below the kernel's ephemeral range, not yet handed out: the cluster bus
        opens many outgoing connections, and one could take an ephemeral port between our
        check and redis-server's bind."""
        while True:
            port = random.randrange(10000, max(EPHEMERAL_LOW, 20000))
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            if port not in self.taken:
                self.taken.add(port)
                return port

    # ---- lifecycle

    def start(self) -> LocalRedisCluster:
        """Start the nodes, join them and wait until every slot is served; ``build_seconds``."""
        began = time.monotonic()
        try:
            for node in self.nodes:
                node.start(self.node_timeout_ms)
            for node in self.nodes:
                self._wait_up(node)
            self._create()
            eventually(self.healthy, timeout=60, interval=0.05, what="cluster ready")
        except BaseException:
            self.stop()  # never leave a half-built cluster behind
            raise
        self.build_seconds = time.monotonic() - began
        return self

    def _wait_up(self, node: Node, tries: int = 3) -> None:
        """Wait for ``node``; if another process took its port first, start it on new ones."""
        for attempt in range(tries):
            try:
                eventually(node.ping, timeout=10, what=f"redis-server :{node.port} up")
                return
            except ProcessDied:
                if attempt == tries - 1 or "Address already in use" not in node.tail():
                    raise
                node.port, node.bus_port = self._port(), self._port()
                node.log.unlink()
                node.start(self.node_timeout_ms)

    def _create(self) -> None:
        binary = shutil.which("redis-cli")
        if binary is None:
            raise RuntimeError("redis-cli is not installed: run bash scripts/bootstrap.sh")
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        cmd = [binary, "--cluster", "create", *addrs, "--cluster-replicas", "1", "--cluster-yes"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if out.returncode != 0 or "[OK] All 16384 slots covered" not in out.stdout:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{out.stdout}{out.stderr}")
        for node in self.nodes:
            with node.client() as c:
                node.node_id = str(c.execute_command("CLUSTER", "MYID"))

    def stop(self) -> None:
        """Stop every node still running (each node's whole process group)."""
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> LocalRedisCluster:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- addresses and clients

    @property
    def live_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.alive]

    @property
    def urls(self) -> list[str]:
        """The startup nodes' URLs (all six; a client needs any one that is up)."""
        return [n.url for n in self.nodes]

    def startup_nodes(self) -> list[ClusterNode]:
        return [ClusterNode("127.0.0.1", n.port) for n in self.nodes]  # type: ignore[no-untyped-call]

    def client(self, **kwargs: object) -> RedisCluster:
        """A ``RedisCluster`` client over the startup nodes; the caller closes it."""
        options: dict[str, object] = {"decode_responses": True, "socket_timeout": 5}
        options.update(kwargs)
        return RedisCluster(startup_nodes=self.startup_nodes(), **options)  # type: ignore[arg-type]

    def node(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    # ---- state

    def views(self, node: Node) -> list[NodeView]:
        """The cluster as ``node`` sees it."""
        with node.client() as c:
            # split in two words: redis-py parses "CLUSTER NODES" replies, not "CLUSTER" ones
            return parse_nodes(str(c.execute_command("CLUSTER", "NODES")))

    def info(self, node: Node) -> dict[str, str]:
        with node.client() as c:
            text = str(c.execute_command("CLUSTER", "INFO"))
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def node_ok(self, node: Node) -> bool:
        """``node`` says cluster_state:ok with every slot assigned and served."""
        info = self.info(node)
        return (
            info.get("cluster_state") == "ok"
            and info.get("cluster_slots_assigned") == str(SLOTS)
            and info.get("cluster_slots_ok") == str(SLOTS)
        )

    def healthy(self) -> bool:
        """Every node is ok, all agree on who replicates whom (half the nodes are replicas),
        and every replica has finished its first sync."""
        maps = []
        for node in self.nodes:
            if not self.node_ok(node):
                return False
            maps.append({v.port: v.master_id for v in self.views(node) if not v.is_failed})
        replicas = sum(1 for master_id in maps[0].values() if master_id)
        if any(m != maps[0] for m in maps) or len(maps[0]) != len(self.nodes):
            return False
        return replicas == len(self.nodes) // 2 and all(self._synced(n) for n in self.nodes)

    @staticmethod
    def _synced(node: Node) -> bool:
        with node.client() as c:
            repl = c.info("replication")
        if repl["role"] == "slave":
            return bool(repl["master_link_status"] == "up")
        return int(repl["connected_slaves"]) >= 1

    def master_of(self, key: str) -> Node:
        """The live master that owns ``key``'s slot, as the first live node sees it."""
        return self.owner(key_slot(key.encode()))

    def owner(self, slot: int) -> Node:
        views = self.views(self.live_nodes[0])
        view = next(v for v in views if v.is_master and not v.is_failed and v.owns(slot))
        return self.node(view.port)

    def replica_of(self, master: Node) -> Node:
        views = self.views(next(n for n in self.live_nodes if n is not master))
        view = next(v for v in views if v.master_id == master.node_id)
        return self.node(view.port)

    # ---- faults

    def kill_master_of(self, key: str) -> Kill:
        """SIGKILL the master owning ``key``'s slot (its whole process group)."""
        slot = key_slot(key.encode())
        master = self.owner(slot)
        kill = Kill(slot=slot, master=master, replica=self.replica_of(master))
        master.stop(signal.SIGKILL)
        return kill

    def wait_promoted(self, kill: Kill, timeout: float = 30.0) -> Node:
        """Wait until every live node says cluster_state:ok and that the killed master's
        replica owns the slot now; returns that new master."""

        def promoted() -> Node | None:
            for node in self.live_nodes:
                owners = [v.port for v in self.views(node) if v.owns(kill.slot)]
                if owners != [kill.replica.port] or not self.node_ok(node):
                    return None
            return kill.replica

        return eventually(promoted, timeout=timeout, interval=0.05, what="replica promoted")


@dataclass(frozen=True)
class Kill:
    """A master SIGKILLed by ``kill_master_of``: the slot asked for and who should take it."""

    slot: int
    master: Node
    replica: Node

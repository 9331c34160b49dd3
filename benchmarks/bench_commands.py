"""Redis commands (and broker messages) per step hop and per tool call, by where they come from.

One private Redis, one Baton worker (prefork, concurrency 1) on the bench queue. Each phase
resets ``INFO commandstats`` and records Redis's ``MONITOR`` stream, then runs one workflow:

- per hop: (BenchChain of ``--hops`` hi) - (BenchChain of lo), divided by hi - lo;
- per tool call: (BenchFanOut of ``--width`` hi) - (BenchFanOut of lo), divided likewise;

so run creation and a run's end cancel out. A command is what a client sends: ``EVALSHA``,
``MULTI`` and ``EXEC`` count one each; the commands a script runs inside Redis are reported
apart (``inside_scripts``; ``INFO commandstats`` counts them too). ``MONITOR`` names each
command's connection, mapped to a process with ``ss`` (the bench client, the worker's main
process, its pool child), and its key says which part of Baton, kombu or Celery sent it.
Sources that tick with time, not with messages (heartbeats, reaper, timer pump, kombu's
visibility sweep, metrics flush, idle ``BRPOP`` timeouts) are also measured with the worker
idle and reported per second.

    .venv/bin/python -m benchmarks.bench_commands [--broker redis|rabbitmq] [--hops 20 200]
        [--width 20 200] [--idle 10] [--state redis|cluster]

``--broker rabbitmq`` starts a private RabbitMQ node (``BATON_BROKER_URL`` for worker and
client): Redis then holds state only, and the broker messages are counted from what is sent
(the outbox entries the relay publishes) and from a queue bound to Celery's event exchange.

``--state cluster`` (implies ``--broker rabbitmq``) keeps the state in a private Redis Cluster:
each master's ``MONITOR`` stream and ``INFO commandstats`` are read and summed (the replicas
only replay what their master did). A key's bucket tag (``baton:{7}:...``) is ignored when
judging its source; pipelines send scripts as ``EVAL`` there, named like ``EVALSHA``, and a
``COMMAND GETKEYS`` that redis-py's cluster pipeline sends to learn a command's keys is counted
with that command's source.
"""

from __future__ import annotations

import argparse
import codecs
import hashlib
import json
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import redis
from redis.lock import Lock

from benchmarks.servers import Servers, check_config, servers
from tasks import scripts
from tests.harness import Worker, worker_env

LINE = re.compile(r"^\+?(\S+) \[(\d+) ([^\]]+)\] (.*)$")
ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
BUCKET = re.compile(r"^\{\d+\}:")  # a cluster key's bucket tag, after the prefix
OUTBOX = re.compile(r"^baton:(\{\d+\}:)?outbox$")
EVENTS_QUEUE = "bench.commands.events"
# sources that tick with time, not with messages: excluded from the per-hop fast path
BACKGROUND = {
    "kombu: visibility sweep",
    "celery: worker heartbeat events",
    "baton: worker heartbeat",
    "baton: reaper",
    "baton: timer pump",
    "baton: metrics flush",
    "baton: relay liveness",
    "client (bench process)",
    "redis-py: connection health checks",
}
READS = {"HMGET", "HGETALL", "HGET", "HINCRBY", "HEXISTS"}
REAPER_CMDS = {"SMEMBERS", "HVALS"}
SCRIPT_NAMES = {
    hashlib.sha1(getattr(scripts, n).encode()).hexdigest(): n for n in dir(scripts) if n.isupper()
}
# kombu's visibility sweep holds a redis-py Lock, released by this script
SCRIPT_NAMES[hashlib.sha1(Lock.LUA_RELEASE_SCRIPT.encode()).hexdigest()] = "LOCK_RELEASE"


@dataclass
class Tally:
    """What one phase cost: top-level commands by command and by source, script internals,
    ``INFO commandstats`` and, on RabbitMQ, broker messages."""

    seconds: float = 0.0
    by_command: Counter[str] = field(default_factory=Counter)
    by_source: Counter[str] = field(default_factory=Counter)
    inside_scripts: Counter[str] = field(default_factory=Counter)
    commandstats: Counter[str] = field(default_factory=Counter)
    broker: Counter[str] = field(default_factory=Counter)


class Monitor:
    """Redis's MONITOR stream on a socket of its own, read by a thread into ``lines``."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"MONITOR\r\n")
        self.lines: list[str] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while chunk := self.sock.recv(1 << 20):
            *done, buf = (buf + chunk).split(b"\r\n")
            with self.lock:
                self.lines += [d.decode(errors="replace") for d in done]

    def between(self, start: str, end: str) -> list[str]:
        """The lines between two ``ECHO`` markers (waits for the end one to arrive)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with self.lock:
                marks = [i for i, s in enumerate(self.lines) if f'"{end}"' in s]
                if marks:
                    first = next(i for i, s in enumerate(self.lines) if f'"{start}"' in s)
                    return self.lines[first + 1 : marks[0]]
            time.sleep(0.05)
        raise RuntimeError(f"marker {end} never seen on MONITOR")


def port_roles(bench: int, main: int, children: list[int]) -> dict[str, str]:
    """``ip:port`` of each Redis connection -> the process that holds it, from ``ss``."""
    out = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True).stdout
    roles = {bench: "client", main: "main", **dict.fromkeys(children, "child")}
    found: dict[str, str] = {}
    for row in out.splitlines():
        cols = row.split()
        pid = re.search(r"pid=(\d+)", row)
        if len(cols) >= 4 and pid and int(pid.group(1)) in roles:
            found[cols[3]] = roles[int(pid.group(1))]
    return found


def source(role: str, cmd: str, args: list[str], script: str) -> str:
    """Who sent this command, judged by its process, its name and its key."""
    key = BUCKET.sub("", args[0].removeprefix("baton:")) if args else ""
    if role == "client":
        return "client (bench process)"
    if cmd in ("PING", "HELLO"):
        return "redis-py: connection health checks"
    if cmd == "BRPOP":
        return "celery: consume (BRPOP)"
    if cmd == "BLMPOP":  # a cluster's relay waits on its bell (outbox:bell)
        return "baton: outbox relay (bell wait)"
    if key.startswith("q:unacked"):
        return _kombu(cmd, key)
    if cmd == "PUBLISH":
        return "celery: task events" if ".task." in key or "task-" in key else _publish(args)
    if cmd in ("EVALSHA", "EVAL"):
        return _script_source(script)
    return _baton_key(role, cmd, key)


def _kombu(cmd: str, key: str) -> str:
    if key == "q:unacked_mutex" or cmd == "ZRANGE":
        return "kombu: visibility sweep"
    if cmd in ("ZADD", "HSET"):
        return "kombu: unacked bookkeeping (receive)"
    return "kombu: ack (ZREM/HDEL)"


def _publish(args: list[str]) -> str:
    body = " ".join(args[1:2])
    if "worker-heartbeat" in body or "worker." in args[0]:
        return "celery: worker heartbeat events"
    return "celery: task events"


def _script_source(script: str) -> str:
    background = {
        "RELEASE": "baton: timer pump",
        "RECLAIM": "baton: timer pump",
        "RESTAMP": "baton: reaper",
        "RELAY_TAKE": "baton: outbox relay (per message)",
        "RELAY_RETURN": "baton: relay liveness",
        "LOCK_RELEASE": "kombu: visibility sweep",
    }
    return background.get(script, f"baton: script {script}")


def _baton_key(role: str, cmd: str, key: str) -> str:
    if key == "metrics":
        return "baton: metrics flush"
    if key.startswith(("worker:", "workers")):
        return "baton: timer pump" if cmd == "ZCOUNT" else "baton: worker heartbeat"
    if key.startswith(("live", "reaper")) or cmd in REAPER_CMDS:
        return "baton: reaper"
    if key.startswith(("outbox:relays", "outbox:alive")) or cmd == "EXISTS":
        return "baton: relay liveness"
    if key.startswith("outbox") and role != "child":  # a hop's own push is its write's
        return "baton: outbox relay (per message)"
    if role == "child":
        return "baton: hop read pipeline" if cmd in READS else "baton: hop write pipeline"
    return f"{role}: other"


def tally(lines: list[str], roles: dict[str, str]) -> Tally:
    """Classify a phase's MONITOR lines (a MULTI and its EXEC go with what they wrap)."""
    t = Tally()
    script, multi, last = "", dict[str, bool](), dict[str, str]()
    for line in lines:
        m = LINE.match(line)
        if m is None:
            continue
        addr, args = m.group(3), ARG.findall(m.group(4))
        cmd = args[0].upper() if args else "?"
        if addr == "lua":
            t.inside_scripts[f"{script}:{cmd}"] += 1
            _count_outbox(t, cmd, args, "inside script")
            continue
        role = roles.get(addr, "unknown")
        asks = cmd == "COMMAND" and len(args) > 2 and args[1].upper() == "GETKEYS"
        if asks:  # a cluster client asking a node for a command's keys: that command's source
            args, cmd = args[2:], args[2].upper()
        if cmd == "EVALSHA":
            script = SCRIPT_NAMES.get(args[1], args[1][:8])
        if cmd == "EVAL":
            script = _eval_name(args[1])
        if cmd == "MULTI":
            multi[addr] = True
            continue
        src = (
            last.get(addr, f"{role}: other")
            if cmd == "EXEC"
            else source(role, cmd, args[1:], script)
        )
        if multi.pop(addr, False):
            _add(t, "MULTI", src)
        last[addr] = src
        _add(t, _label(cmd, script, asks), src)
        if not asks:
            _count_outbox(t, cmd, args, "pipeline")
    return t


def _label(cmd: str, script: str, asks: bool) -> str:
    """A command as tallied: a script's name after EVALSHA/EVAL, ``COMMAND GETKEYS`` before
    the command whose keys a cluster client asked for."""
    label = f"{cmd} {script}" if cmd in ("EVALSHA", "EVAL") else cmd
    return f"COMMAND GETKEYS {label}" if asks else label


def _eval_name(body: str) -> str:
    """The name of a script sent whole (``EVAL``), from its body as ``MONITOR`` escapes it."""
    raw = codecs.escape_decode(body.encode())[0]
    sha = hashlib.sha1(raw).hexdigest()
    return SCRIPT_NAMES.get(sha, sha[:8])


def merge(tallies: list[Tally]) -> Tally:
    """One tally of several nodes' phases (the same phase, read on each master)."""
    t = Tally()
    for part in tallies:
        for name in ("by_command", "by_source", "inside_scripts", "commandstats", "broker"):
            getattr(t, name).update(getattr(part, name))
    return t


def _add(t: Tally, cmd: str, src: str) -> None:
    t.by_command[f"{src} | {cmd}"] += 1
    t.by_source[src] += 1


def _count_outbox(t: Tally, cmd: str, args: list[str], where: str) -> None:
    """Each entry pushed onto the outbox is one publish to the broker, by the relay."""
    if cmd in ("LPUSH", "RPUSH") and len(args) > 1 and OUTBOX.match(args[1]):
        t.broker[f"task messages (outbox pushes, {where})"] += len(args) - 2


def commandstats(r: Any) -> Counter[str]:
    info: dict[str, Any] = r.info("commandstats")
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()})


class Bench:
    """The private servers, the worker, a client, and how a phase is measured."""

    def __init__(self, broker: str, tmp: Path, state: str = "redis") -> None:
        self.broker, self.state = broker, state
        self.tmp, self.phase = tmp, 0
        self.worker: Worker | None = None
        self.stack = ExitStack()

    def start(self) -> None:
        srv = self.stack.enter_context(servers(self.tmp, self.broker, self.state))
        self.rabbit = srv.rabbit
        extra: dict[str, str] = {}
        if srv.broker_url is not None:
            extra["BATON_BROKER_URL"] = srv.broker_url
            self._bind_events()
        env = worker_env(srv.state_url, self.tmp, BATON_IMPORTS='["benchmarks.flows"]', **extra)
        self.worker = Worker(env, ["bench"], 1, name="commands@bench").start()
        # one plain client and one MONITOR per node that serves commands (a cluster's masters)
        ports = state_ports(srv)
        self.nodes = [redis.Redis(port=p, decode_responses=True) for p in ports]
        self.monitors = [Monitor(p) for p in ports]
        from app.celery_app import create_app
        from app.client import Client
        from config import Settings

        settings = Settings(
            redis_url=srv.state_url, broker_url=srv.broker_url, imports=["benchmarks.flows"]
        )
        self.client = Client(runtime=create_app(settings)[1])

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.stack.close()

    def chain(self, n: int) -> None:
        assert self.client.submit("BenchChain", n=n).result(timeout=300) == n

    def fan(self, width: int) -> None:
        expected = width * (width - 1) // 2
        assert self.client.submit("BenchFanOut", width=width).result(timeout=300) == expected

    def measure(self, fn: Callable[[], None]) -> Tally:
        """Run ``fn`` between two MONITOR markers, commandstats reset at the start."""
        self.phase += 1
        start, end = f"bench-start-{self.phase}", f"bench-end-{self.phase}"
        self._drain_events()
        for node in self.nodes:
            node.echo(start)
            node.config_resetstat()
        began = time.perf_counter()
        fn()
        seconds = time.perf_counter() - began
        stats = sum((commandstats(node) for node in self.nodes), Counter[str]())
        for node in self.nodes:
            node.echo(end)
        assert self.worker is not None and self.worker.proc is not None
        roles = port_roles(os.getpid(), self.worker.proc.pid, self.worker.children())
        t = merge([tally(m.between(start, end), roles) for m in self.monitors])
        ours = Counter({"info": len(self.nodes), "config|resetstat": len(self.nodes)})
        t.seconds, t.commandstats = seconds, stats - ours
        t.broker.update(self._drain_events())
        return t

    def _bind_events(self) -> None:
        """A queue bound to Celery's event exchange (topic, ``#``): every event, kept."""
        from kombu import Connection, Exchange, Queue

        assert self.rabbit is not None
        with Connection(self.rabbit.url) as conn:
            Queue(EVENTS_QUEUE, Exchange("celeryev", type="topic"), routing_key="#")(conn).declare()

    def _drain_events(self) -> Counter[str]:
        """The events published since the last drain, by routing key (RabbitMQ only)."""
        got: Counter[str] = Counter()
        if self.rabbit is None:
            return got
        from kombu import Connection

        with Connection(self.rabbit.url) as conn, conn.channel() as channel:
            ch: Any = channel  # kombu's stubs leave basic_get out
            while (msg := ch.basic_get(EVENTS_QUEUE, no_ack=True)) is not None:
                got[f"event {msg.delivery_info['routing_key']}"] += 1
        return got


def state_ports(srv: Servers) -> list[int]:
    """The ports of the state's nodes that serve commands: the one Redis, or every master."""
    if srv.cluster is None:
        assert srv.redis is not None
        return [srv.redis.port]
    return [node.port for node in srv.masters()]


def per_unit(hi: Tally, lo: Tally, units: int, idle: Tally) -> dict[str, Any]:
    """The marginal cost of one more unit: (hi - lo) / units, by command and by source; the
    fast path leaves out the sources that tick with time (reported per second while idle)."""

    def diff(a: Counter[str], b: Counter[str]) -> dict[str, float]:
        keys = sorted(set(a) | set(b))
        out = {k: round((a[k] - b[k]) / units, 2) for k in keys}
        return {k: v for k, v in out.items() if abs(v) >= 0.01}

    sources = diff(hi.by_source, lo.by_source)
    fast = {k: v for k, v in sources.items() if k not in BACKGROUND}
    by_cmd = {
        k: v for k, v in diff(hi.by_command, lo.by_command).items() if k.split(" | ")[0] in fast
    }
    extra_seconds = hi.seconds - lo.seconds
    background = {
        k: round(v / idle.seconds * extra_seconds / units, 2)
        for k, v in idle.by_source.items()
        if k in BACKGROUND and k != "client (bench process)"
    }
    stats = diff(hi.commandstats, lo.commandstats)
    return {
        "fast_path_commands": round(sum(fast.values()), 2),
        "all_worker_commands": round(sum(v for k, v in sources.items() if "client" not in k), 2),
        "by_source": sources,
        "fast_path_by_command": by_cmd,
        "inside_scripts": diff(hi.inside_scripts, lo.inside_scripts),
        "background_expected_from_idle_rate": background,
        "commandstats_all_clients_incl_script_internals": {
            "total": round(sum(stats.values()), 2),
            "evalsha": stats.get("evalsha", 0.0),
            "by_command": stats,
        },
        "broker_messages": diff(hi.broker, lo.broker),
        "seconds_per_unit": round(extra_seconds / units, 5),
    }


def idle_rates(idle: Tally) -> dict[str, Any]:
    per_s = {k: round(v / idle.seconds, 2) for k, v in sorted(idle.by_source.items())}
    cmds = {k: round(v / idle.seconds, 2) for k, v in sorted(idle.by_command.items())}
    broker = {k: round(v / idle.seconds, 2) for k, v in sorted(idle.broker.items())}
    return {
        "seconds": round(idle.seconds, 1),
        "per_second_by_source": per_s,
        "by_command": cmds,
        "broker_messages_per_second": broker,
    }


def run(bench: Bench, hops: tuple[int, int], width: tuple[int, int], idle: float) -> dict[str, Any]:
    bench.chain(5)  # warm-up: imports, connections, scripts loaded, first-task costs
    bench.fan(5)
    chains = [bench.measure(partial(bench.chain, n)) for n in hops]
    fans = [bench.measure(partial(bench.fan, w)) for w in width]
    quiet = bench.measure(lambda: time.sleep(idle))
    return {
        "per_step_hop": per_unit(chains[1], chains[0], hops[1] - hops[0], quiet),
        "per_tool_call": per_unit(fans[1], fans[0], width[1] - width[0], quiet),
        "idle_worker": idle_rates(quiet),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker", choices=["redis", "rabbitmq"])
    parser.add_argument("--state", choices=["redis", "cluster"], default="redis")
    parser.add_argument("--hops", type=int, nargs=2, default=[20, 200])
    parser.add_argument("--width", type=int, nargs=2, default=[20, 200])
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.broker is None:
        args.broker = "rabbitmq" if args.state == "cluster" else "redis"
    if (problem := check_config(args.broker, args.state)) is not None:
        parser.error(problem)
    tmp = Path(tempfile.mkdtemp(prefix="baton-commands-"))
    bench = Bench(args.broker, tmp, args.state)
    head = {"broker": args.broker}
    if args.state != "redis":  # the one-Redis output stays as it was
        head["state"] = args.state
    try:
        bench.start()
        result = {**head, **run(bench, args.hops, args.width, args.idle)}
    finally:
        bench.stop()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

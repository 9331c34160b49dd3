"""A private RabbitMQ node for tests: free ports, own epmd, data in a temp dir, kill -9 and restart.

The machine may run a system RabbitMQ (``rabbit@localhost`` on 5672, epmd on 4369): this node
never touches it. It runs Debian's ``/usr/lib/rabbitmq/bin/rabbitmq-server`` script directly
(``/usr/sbin/rabbitmq-server`` would ``su rabbitmq`` and ``cd /var/lib/rabbitmq``) with:

- ``RABBITMQ_CONF_ENV_FILE`` pointing at an empty file, so ``/etc/rabbitmq/rabbitmq-env.conf``
  (which names the system node) is never sourced;
- its own epmd on a free port (``ERL_EPMD_PORT``), started by us in the foreground, and
  ``-start_epmd false`` so the VM never forks a daemonised epmd we could not kill;
- ``RABBITMQ_NODE_PORT`` / ``RABBITMQ_DIST_PORT`` free ports, node ``baton-test-<port>@localhost``,
  every base, config and the Erlang cookie (``$HOME/.erlang.cookie``) inside the temp dir.

Every process of the node carries ``BATON_RABBIT_TAG`` in its environment (the VM's port
programs — ``erl_child_setup``, ``inet_gethost``, the disk monitor's ``sh`` — each run in a
session of their own, so process groups do not reach them): ``kill`` and ``leftovers`` find
them by that tag.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from kombu import Connection

from tests.harness import free_port

SERVER_SCRIPT = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL_SCRIPT = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
TAG_VAR = "BATON_RABBIT_TAG"
RESERVED_PORTS = {4369, 5672, 15672, 25672}  # the system node's: never ours


class RabbitNotReady(RuntimeError):
    """The node did not accept an AMQP login in time (the message carries its log's tail)."""


def tagged_pids(tag: str) -> list[int]:
    """Pids of live processes whose environment holds ``BATON_RABBIT_TAG=<tag>``."""
    needle = f"{TAG_VAR}={tag}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if needle in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def own_port() -> int:
    """A free port that is none of the system node's."""
    while (port := free_port()) in RESERVED_PORTS:
        pass
    return port


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class RabbitServer:
    """A RabbitMQ node of our own, restartable (also after kill -9) on the same ports and data."""

    def __init__(self, workdir: Path, consumer_timeout_ms: int | None = None) -> None:
        self.dir = workdir
        self.consumer_timeout_ms = consumer_timeout_ms
        self.port, self.dist_port, self.epmd_port = own_port(), own_port(), own_port()
        self.nodename = f"baton-test-{self.port}@localhost"
        self.user, self.password = "baton", secrets.token_hex(12)
        self.tag = uuid.uuid4().hex
        self.start_seconds: list[float] = []  # how long each start took
        self.node: subprocess.Popen[bytes] | None = None
        self.epmd: subprocess.Popen[bytes] | None = None
        self.url = f"amqp://{self.user}:{self.password}@127.0.0.1:{self.port}//"
        self.log_file = self.dir / "log" / f"{self.nodename}.log"
        self.stdout_file = self.dir / "stdout.log"

    def start(self, timeout: float = 60.0) -> float:
        """Start epmd and the node; wait for an AMQP login. Returns the seconds it took."""
        if not SERVER_SCRIPT.exists():
            raise RuntimeError(f"{SERVER_SCRIPT} missing: install Debian's rabbitmq-server")
        began = time.monotonic()
        self._write_files()
        env = self.env()
        try:
            self.epmd = self._spawn(["epmd", "-port", str(self.epmd_port)], env, "epmd.log")
            self._wait(lambda: port_open(self.epmd_port), 10, "epmd listening")
            self.node = self._spawn([str(SERVER_SCRIPT)], env, self.stdout_file.name)
            self._wait(self._accepts_login, timeout, "AMQP login")
        except BaseException:
            self.kill()  # never leave a half-started node behind
            raise
        self.start_seconds.append(time.monotonic() - began)
        return self.start_seconds[-1]

    def kill(self) -> None:
        """SIGKILL every process of the node (wrapper, beam.smp, its port programs, epmd)."""
        deadline = time.monotonic() + 15
        while pids := tagged_pids(self.tag):
            if time.monotonic() > deadline:
                raise RuntimeError(f"rabbit processes survive SIGKILL: {pids}")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):  # already gone
                    os.kill(pid, signal.SIGKILL)
            self._reap()
            time.sleep(0.05)
        self._reap()
        self.node = self.epmd = None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the node cleanly (SIGTERM: the script runs a clean shutdown), then epmd."""
        if self.node is not None and self.node.poll() is None:
            self.node.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):  # the kill below ends it
                self.node.wait(timeout=timeout)
        self.kill()

    def restart(self, timeout: float = 60.0) -> float:
        """kill -9 and start again on the same ports and data dir; returns the start's seconds."""
        self.kill()
        return self.start(timeout)

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``rabbitmqctl`` against this node (its epmd, cookie and name); returns stdout.

        Each call boots an Erlang VM: about a second."""
        env = {**self.env(), "RABBITMQ_CTL_DIST_PORT_MIN": str(own_port())}
        env["RABBITMQ_CTL_DIST_PORT_MAX"] = env["RABBITMQ_CTL_DIST_PORT_MIN"]
        done = subprocess.run(
            [str(CTL_SCRIPT), "-n", self.nodename, *args],
            env=env,
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr[-2000:]}")
        return done.stdout

    def leftovers(self) -> list[int]:
        """Pids of this node's processes still alive (empty after ``kill``/``stop``)."""
        return tagged_pids(self.tag)

    def env(self) -> dict[str, str]:
        """The environment of the node's processes: every path inside the temp dir."""
        d = self.dir
        skip = ("RABBITMQ_", "ERL_", "BATON_RABBIT")
        env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
        erl_args = "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}"
        env.update(
            {
                TAG_VAR: self.tag,
                "HOME": str(d / "home"),
                "ERL_EPMD_PORT": str(self.epmd_port),
                "ERL_EPMD_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODENAME": self.nodename,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
                "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
                "RABBITMQ_LOG_BASE": str(d / "log"),
                "RABBITMQ_PID_FILE": str(d / "rabbit.pid"),
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": erl_args,
            }
        )
        return env

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the node's log and of its stdout, for error messages."""
        parts = []
        for path in (self.stdout_file, self.log_file):
            text = path.read_text(errors="replace") if path.exists() else "(none)"
            parts.append(f"--- {path.name} ---\n{text[-chars:]}")
        return "\n".join(parts)

    def _conf(self) -> str:
        lines = [
            f"default_user = {self.user}",
            f"default_pass = {self.password}",
            "loopback_users = none",
            "disk_free_limit.absolute = 50MB",
            "log.file.level = info",
            "log.console = false",
        ]
        if self.consumer_timeout_ms is not None:
            lines.append(f"consumer_timeout = {self.consumer_timeout_ms}")
        return "\n".join(lines) + "\n"

    def _write_files(self) -> None:
        home = self.dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        (self.dir / "log").mkdir(exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():  # the same cookie on every restart
            cookie.write_text(secrets.token_hex(16))
            cookie.chmod(0o400)
        (self.dir / "rabbitmq-env.conf").write_text("")
        (self.dir / "rabbitmq.conf").write_text(self._conf())
        (self.dir / "advanced.config").write_text("[].\n")
        (self.dir / "enabled_plugins").write_text("[].\n")

    def _spawn(self, cmd: list[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        with (self.dir / log).open("ab") as out:
            return subprocess.Popen(
                cmd,
                cwd=self.dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _accepts_login(self) -> bool:
        for name, proc in (("node", self.node), ("epmd", self.epmd)):
            if proc is not None and proc.poll() is not None:
                raise RabbitNotReady(f"rabbit {name} exited ({proc.returncode})")
        if not port_open(self.port):
            return False
        with Connection(self.url, connect_timeout=2) as conn:
            conn.connect()
        return True

    def _wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except RabbitNotReady as exc:
                raise RabbitNotReady(f"{exc}\n{self.log_tail()}") from None
            except Exception as exc:  # not up yet: retried until the deadline
                last = exc
            time.sleep(0.1)
        raise RabbitNotReady(
            f"{what} on {self.nodename} not within {timeout}s (last error: {last!r})\n"
            f"{self.log_tail()}"
        )

    def _reap(self) -> None:
        for proc in (self.node, self.epmd):
            if proc is not None:
                proc.poll()


@contextmanager
def running_rabbit(node_dir: Path) -> Iterator[RabbitServer]:
    """A RabbitMQ node of our own in ``node_dir`` (tests may kill -9 and restart it), stopped
    at the end with nothing of it left running."""
    server = RabbitServer(node_dir)
    server.dir.mkdir()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        assert not server.leftovers(), f"rabbit processes left behind: {server.leftovers()}"

"""The local stack as processes: what ``docker-compose.yml`` is for a real deployment.

``LocalStack`` starts a private ``redis-server`` (when no ``BATON_REDIS_URL`` is set), one
``celery worker`` per queue of the topology with that queue's pool and concurrency, and
optionally Flower behind basic auth; it waits until each is ready and stops all it started
(SIGTERM to the process group, SIGKILL after a grace period). ``stack.settings`` and
``stack.env`` point a ``Client`` or another process at it.

With a ``workdir`` of its own choosing (``baton up --dir D``) the stack keeps its Redis port,
Redis password and generated Flower password in ``D/stack.json`` (mode 0600), so an exported
``BATON_REDIS_URL`` and the AOF data stay valid across restarts.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import SecretStr

from config import QueueSpec, Settings, load_topology
from tasks import queries
from tasks.pool import POOL_ENV, POOL_PATH
from workflows.errors import ConfigurationError, StoreUnavailableError

CELERY_APP = "app.worker:celery_app"
# never served: the old default, and empty (``BATON_FLOWER_PASSWORD=`` as in deploy/.env.example)
WELL_KNOWN_FLOWER_PASSWORDS = frozenset({"", "change-me"})
NOT_PASSED = {"flower_password", "api_token"}  # secrets the workers have no use for
STATE_FILE = "stack.json"


class StackError(ConfigurationError):
    """A process of the local stack could not be started (the message says which and why)."""


@dataclass
class Proc:
    """A started process, leader of its own process group, logging to ``log``."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def flower_command(port: int) -> list[str]:
    """Flower on loopback, built from Baton's app (prefixed queues read right), bounded in
    memory; basic auth comes through its environment (``FLOWER_BASIC_AUTH``)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        CELERY_APP,
        "flower",
        f"--port={port}",
        "--address=127.0.0.1",
        "--max_tasks=10000",
    ]


def worker_command(queue: str, spec: QueueSpec, loglevel: str = "INFO") -> list[str]:
    """The celery worker command line for one queue (``baton worker`` and ``baton up``);
    run it with :func:`pool_env` added to the environment."""
    pool = "custom" if spec.pool == "asyncio" else spec.pool
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        CELERY_APP,
        "worker",
        "-Q",
        queue,
        "-P",
        pool,
        "-c",
        str(spec.concurrency),
        "-n",
        f"{queue}-{os.getpid()}@%h",  # unique per stack process: two stacks never clash
        "-E",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        loglevel,
    ]


def pool_env(spec: QueueSpec) -> dict[str, str]:
    """What the worker's environment needs for its pool: ``asyncio`` is Celery's ``custom``
    pool, named by a variable Celery reads when it starts."""
    return {POOL_ENV: POOL_PATH} if spec.pool == "asyncio" else {}


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as ``BATON_*`` variables, so a child process reads the very same settings."""
    env: dict[str, str] = {}
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if value is None or name in NOT_PASSED:
            continue
        key = field.alias or f"BATON_{name.upper()}"
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[key] = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return env


@dataclass(frozen=True)
class StackState:
    """What a stack keeps in its directory between runs (secrets included: the file is 0600)."""

    redis_port: int
    redis_password: str
    flower_password: str
    api_token: str = ""

    @classmethod
    def new(cls) -> StackState:
        return cls(
            free_port(), secrets.token_hex(16), secrets.token_urlsafe(16), secrets.token_urlsafe(24)
        )

    @classmethod
    def load(cls, path: Path) -> StackState | None:
        """The state saved at ``path``, None if there is none; a damaged file is a StackError."""
        try:
            data = json.loads(path.read_text())
            # a state saved before the API existed gets a token now (kept from then on)
            token = str(data.get("api_token") or secrets.token_urlsafe(24))
            return cls(
                int(data["redis_port"]), data["redis_password"], data["flower_password"], token
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StackError(f"{path} is unreadable ({exc}): delete it for new ones") from None

    def save(self, path: Path) -> None:
        # created 0600, never world-readable even for a moment
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f)
        path.chmod(0o600)  # an existing file keeps its mode on open


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    """Whether a server could bind ``port`` now: with SO_REUSEADDR, as uvicorn, Flower and
    redis-server bind, so the TIME_WAIT left by a stack that just stopped is no conflict."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LocalStack:
    """Redis (if none configured), a worker per topology queue and Flower, as child processes."""

    def __init__(
        self,
        settings: Settings,
        *,
        flower: bool = True,
        api: bool = True,
        scheduler: bool = True,
        workdir: Path | None = None,
        cwd: Path | None = None,
        ready_timeout: float = 60.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.base = settings
        self.topology = load_topology(settings.topology_file)
        self.flower, self.api, self.scheduler = flower, api, scheduler
        self.cwd = cwd or Path.cwd()
        self.ready_timeout, self.stop_timeout = ready_timeout, stop_timeout
        self._own_dir = workdir is None
        # created by start(), so a stack that never starts leaves nothing behind
        self.workdir = (
            workdir or Path(tempfile.gettempdir()) / f"baton-stack-{secrets.token_hex(6)}"
        )
        self.procs: dict[str, Proc] = {}
        self.redis_url = settings.redis_url
        self.state_file = self.workdir / STATE_FILE
        saved = None if self._own_dir else StackState.load(self.state_file)
        self.reused = saved is not None
        self.state = saved or StackState.new()
        self.flower_password, self.flower_password_generated = _flower_password(
            settings, self.state.flower_password
        )
        self.flower_url: str | None = None
        secret = settings.api_token
        self.api_token = secret.get_secret_value() if secret is not None else self.state.api_token
        self.api_token_generated = secret is None
        self.api_url: str | None = None

    @property
    def settings(self) -> Settings:
        """The settings with this stack's Redis URL: ``Client(stack.settings)``."""
        return self.base.model_copy(update={"redis_url": self.redis_url})

    @property
    def env(self) -> dict[str, str]:
        """Environment for a child process (or a shell) that talks to this stack."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("BATON_", "FLOWER_"))}
        path = os.pathsep.join(p for p in [str(self.cwd), inherited.get("PYTHONPATH", "")] if p)
        return {
            **inherited,
            **settings_env(self.settings),
            "PYTHONPATH": path,
            "PYTHONUNBUFFERED": "1",
        }

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> LocalStack:
        """Start everything and wait until it is ready; on any failure stop what was started."""
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=not self._own_dir)
        try:
            (self.workdir / "logs").mkdir(exist_ok=True)
            self.state.save(self.state_file)
            if self.redis_url is None:
                self._start_redis()
            else:
                self._check_redis(self.redis_url)
            self._start_workers()
            if self.flower:
                self._start_flower()
            if self.api:
                self._start_api()
            if self.scheduler:
                self._start_scheduler()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop Flower and the API, then the workers (they requeue through Redis), then Redis;
        idempotent."""
        front = ("flower", "api", "scheduler")
        order = [n for n in self.procs if n in front]
        order += [n for n in self.procs if n not in (*front, "redis")]
        for group in (order, [n for n in self.procs if n == "redis"]):
            procs = [self.procs.pop(n) for n in group]
            for p in procs:
                _signal_group(p.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            for p in procs:
                _reap(p, deadline)
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def dead(self) -> list[str]:
        """Names of started processes that have exited."""
        return [name for name, p in self.procs.items() if not p.alive()]

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- the parts ------------------------------------------------------------------------

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.workdir / "logs" / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                cmd,
                cwd=self.cwd,
                env=env or self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us only; we stop the children
                preexec_fn=_die_with_parent(),
            )
        proc = Proc(name, popen, log)
        self.procs[name] = proc
        return proc

    def _start_redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError(
                "redis-server is not installed (apt-get install redis-server), "
                "or set BATON_REDIS_URL to an existing Redis"
            )
        port, password = self.state.redis_port, self.state.redis_password
        if not _port_free(port):
            # refuse rather than move: shells that exported the URL would reach whatever holds it
            raise StackError(
                f"Redis port {port} (kept in {self.state_file}) is in use by another process: "
                f"stop that, or delete the file for a new port and password"
            )
        data = self.workdir / "redis"
        data.mkdir(exist_ok=True)
        conf = data / "redis.conf"  # the password in a private file, not on the command line
        conf.write_text(
            f'port {port}\nbind 127.0.0.1\ndir {data}\nappendonly yes\nsave ""\n'
            f"maxmemory-policy noeviction\nrequirepass {password}\nloglevel warning\n"
        )
        conf.chmod(0o600)
        proc = self._spawn("redis", [binary, str(conf)], env=dict(os.environ))
        url = f"redis://:{password}@127.0.0.1:{port}/0"
        _wait(lambda: _ping(url), self.ready_timeout, proc)
        self.redis_url = url

    def _check_redis(self, url: str) -> None:
        try:
            queries.ping(url)
        except StoreUnavailableError as exc:
            raise StackError(f"BATON_REDIS_URL is set but {exc.message}") from exc

    def _start_workers(self) -> None:
        procs = [
            self._spawn(queue, worker_command(queue, spec), {**self.env, **pool_env(spec)})
            for queue, spec in self.topology.queues.items()
        ]
        deadline = time.monotonic() + self.ready_timeout
        for proc in procs:
            _wait(partial(_worker_ready, proc), deadline - time.monotonic(), proc)

    def _start_flower(self) -> None:
        port = self.base.flower_port
        if not _port_free(port):
            raise StackError(
                f"Flower's port {port} is in use: set BATON_FLOWER_PORT, or run with --no-flower"
            )
        cmd = flower_command(port)
        # basic auth through Flower's environment, so the password is not on the command line
        env = {**self.env, "FLOWER_BASIC_AUTH": f"{self.base.flower_user}:{self.flower_password}"}
        proc = self._spawn("flower", cmd, env)
        url = f"http://127.0.0.1:{port}"
        _wait(lambda: _http_ok(f"{url}/healthcheck"), self.ready_timeout, proc)
        self.flower_url = url

    def _start_api(self) -> None:
        """``baton serve`` with the stack's token (in its environment, not its command line)."""
        port = self.base.api_port
        if not _port_free(port):
            raise StackError(
                f"the API's port {port} is in use: set BATON_API_PORT, or use --no-api"
            )
        cmd = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
        env = {**self.env, "BATON_API_TOKEN": self.api_token, "BATON_API_AUTH": "on"}
        proc = self._spawn("api", cmd, env)
        url = f"http://127.0.0.1:{port}"
        _wait(lambda: _http_ok(f"{url}/health"), self.ready_timeout, proc)
        self.api_url = url

    def _start_scheduler(self) -> None:
        """``baton scheduler``: fires the schedules (``docs/schedules.md``); ready after its
        first pass over them."""
        proc = self._spawn("scheduler", [sys.executable, "-m", "app.cli", "scheduler"])
        _wait(lambda: "baton scheduler ready" in proc.tail(), self.ready_timeout, proc)


def _flower_password(settings: Settings, generated: str) -> tuple[str, bool]:
    """The password Flower gets, and whether it was generated: BATON_FLOWER_PASSWORD, unless
    it is unset or well known, then ``generated`` (random, kept; ``baton up`` prints it)."""
    secret = settings.flower_password
    password = "" if secret is None else secret.get_secret_value()
    if password in WELL_KNOWN_FLOWER_PASSWORDS:
        return generated, True
    return password, False


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, a child gets SIGTERM if we die without stopping it (no orphaned stack)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: the child only calls it
    pr_set_pdeathsig = 1

    def arm() -> None:
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return arm


def _worker_ready(proc: Proc) -> bool:
    return "ready." in proc.tail(1_000_000)


def _ping(url: str) -> bool:
    queries.ping(url)
    return True


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return int(resp.status) == 200


def _wait(check: Callable[[], Any], timeout: float, proc: Proc) -> None:
    """Poll ``check`` until truthy; fail at once with its log if ``proc`` exits."""
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        if not proc.alive():
            raise StackError(
                f"{proc.name} exited with code {proc.popen.returncode} while "
                f"starting; its log ({proc.log}) ends with:\n{proc.tail()}"
            )
        try:
            if check():
                return
        except (OSError, StoreUnavailableError, urllib.error.URLError):
            pass  # not up yet
        if time.monotonic() > deadline:
            raise StackError(
                f"{proc.name} was not ready within {timeout:.0f}s; its log "
                f"({proc.log}) ends with:\n{proc.tail()}"
            )
        time.sleep(0.1)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _reap(proc: Proc, deadline: float) -> None:
    """Wait for the leader until ``deadline``, then SIGKILL whatever is left of its group."""
    try:
        proc.popen.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.popen.wait()
    _signal_group(proc.pid, signal.SIGKILL)  # stragglers (pool children) of a finished leader

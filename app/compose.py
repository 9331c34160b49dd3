"""``docker-compose.yml`` from the topology: the file ``baton compose`` writes.

One description (config/topology.yaml) drives routing, ``baton up`` and the deployment, so a
queue added to the topology gets its worker service by regenerating, not by hand. The YAML is
written as text rather than dumped, so the file keeps its comments and anchors; every value goes
through :func:`_scalar`, which quotes whatever YAML would not read back unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from app.stack import CELERY_APP, pool_env, worker_command
from config import QueueSpec, Settings, Topology
from config.settings import DEFAULT_TOPOLOGY

WIDTH = 100
REDIS_PASSWORD = "${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}"
FLOWER_PASSWORD = "${BATON_FLOWER_PASSWORD:?set BATON_FLOWER_PASSWORD in .env}"
API_TOKEN = "${BATON_API_TOKEN:?set BATON_API_TOKEN in .env}"


@dataclass(frozen=True)
class Healthcheck:
    """A compose healthcheck; the defaults suit a Python process that loads the app first."""

    test: tuple[str, ...]
    interval: str = "30s"
    timeout: str = "10s"
    retries: int = 3
    start_period: str = "30s"


@dataclass(frozen=True)
class Service:
    """One compose service, written in a fixed key order.

    ``extends`` names the ``x-`` block merged in (``baton`` or ``worker``); ``env_extends`` the
    environment anchor that ``environment`` adds to (an override replaces a merged mapping).
    """

    name: str
    command: tuple[str, ...]
    healthcheck: Healthcheck
    comments: tuple[str, ...] = ()
    extends: str | None = None
    image: str | None = None
    restart: str | None = None
    env_extends: str | None = None
    environment: tuple[tuple[str, str], ...] = ()
    volumes: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()


def render(topology: Topology, settings: Settings) -> str:
    """The whole compose file for ``topology``; ports, Flower user and imports from
    ``settings`` (their defaults give the committed docker-compose.yml)."""
    parts = [_header(settings), _anchors(settings), "services:\n"]
    parts.append("\n".join(_service(s) for s in services(topology, settings)))
    parts.append("\nvolumes:\n  redis-data:\n")
    return "".join(parts)


def services(topology: Topology, settings: Settings) -> list[Service]:
    """Redis, a worker per queue (in topology order), Flower, the metrics exporter, the HTTP
    API with its dashboard and the scheduler."""
    workers = [worker(queue, spec) for queue, spec in topology.queues.items()]
    return [redis(), *workers, flower(settings), metrics(settings), api(settings), scheduler()]


def redis() -> Service:
    """Redis with its password from .env, durability from deploy/redis.conf, no port published."""
    return Service(
        name="redis",
        comments=(
            "The password comes from the environment (.env), never from a file in the repo; the",
            "durability settings (AOF, noeviction) live in deploy/redis.conf. Starting",
            "`redis-server` directly (no shell) lets the image's entrypoint drop root.",
            "REDISCLI_AUTH is for the healthcheck. No `ports:` on purpose: Redis is reachable",
            "only from the services on this network.",
        ),
        image="redis:7",
        restart="unless-stopped",
        command=(
            "redis-server",
            "/usr/local/etc/redis/redis.conf",
            "--requirepass",
            REDIS_PASSWORD,
        ),
        environment=(("REDISCLI_AUTH", REDIS_PASSWORD),),
        volumes=("./deploy/redis.conf:/usr/local/etc/redis/redis.conf:ro", "redis-data:/data"),
        healthcheck=Healthcheck(
            test=("CMD", "redis-cli", "ping"),
            interval="5s",
            timeout="3s",
            retries=10,
            start_period="0s",
        ),
    )


def worker(queue: str, spec: QueueSpec) -> Service:
    """The worker of one queue: ``baton worker``'s command line, named ``<queue>@<host>``.

    The healthcheck pings this very worker through Celery's remote control (its own container
    hostname), so it fails when the worker is not consuming, not only when it has died."""
    env = tuple(pool_env(spec).items())
    comments = (
        (f"pool: asyncio is Celery's custom pool slot, filled with Baton's ({env[0][1]})",)
        if env
        else ()
    )
    ping = f"celery -A {CELERY_APP} inspect ping -d {queue}@$$HOSTNAME -t 5"
    return Service(
        name=f"worker-{queue}",
        comments=comments,
        extends="worker",
        env_extends="worker-env" if env else None,
        environment=env,
        command=tuple(celery_worker_args(queue, spec)),
        healthcheck=Healthcheck(test=("CMD-SHELL", ping), timeout="20s"),
    )


def celery_worker_args(queue: str, spec: QueueSpec) -> list[str]:
    """``celery ... worker`` as :func:`app.stack.worker_command` builds it, run by the image's
    ``celery`` and named ``<queue>@%h``: one name per container, so scaled copies differ."""
    cmd = worker_command(queue, spec)
    args = ["celery", *cmd[cmd.index("-A") :]]
    args[args.index("-n") + 1] = f"{queue}@%h"
    return args


def flower(settings: Settings) -> Service:
    """Flower behind basic auth (password required from .env), keeping a bounded task history."""
    port = settings.flower_port
    auth = f"${{BATON_FLOWER_USER:-{settings.flower_user}}}:{FLOWER_PASSWORD}"
    return Service(
        name="flower",
        comments=(
            "Never without auth. Note /healthcheck and /metrics skip auth: keep the port off",
            "public networks (or behind a proxy) anyway.",
        ),
        extends="baton",
        command=(
            "celery",
            "-A",
            CELERY_APP,
            "flower",
            f"--port={port}",
            f"--basic_auth={auth}",
            "--max_tasks=10000",
        ),
        ports=(f"${{BATON_FLOWER_PORT:-{port}}}:{port}",),
        healthcheck=Healthcheck(test=_http_check(f"http://127.0.0.1:{port}/healthcheck")),
    )


def metrics(settings: Settings) -> Service:
    """Baton's Prometheus exporter (queue depths, runs by status, dead letters)."""
    port = settings.metrics_port
    return Service(
        name="metrics",
        comments=(
            "Prometheus text format at /metrics; no auth, so published on the host's loopback",
            f"only; Prometheus on this network scrapes metrics:{port}.",
        ),
        extends="baton",
        command=("baton", "metrics", "--serve", "--host", "0.0.0.0", "--port", str(port)),
        ports=(f"127.0.0.1:${{BATON_METRICS_PORT:-{port}}}:{port}",),
        healthcheck=Healthcheck(test=_http_check(f"http://127.0.0.1:{port}/metrics")),
    )


def api(settings: Settings) -> Service:
    """``baton serve``: the HTTP API and dashboard, token required (from .env)."""
    port = settings.api_port
    return Service(
        name="api",
        comments=(
            "The HTTP API (llama-agents-server's routes) and the run dashboard (/baton/ui/).",
            "Bearer token required; published on the host's loopback: put a TLS proxy in front",
            "to expose it.",
        ),
        extends="baton",
        env_extends="baton-env",
        environment=(("BATON_API_TOKEN", API_TOKEN),),
        command=("baton", "serve", "--host", "0.0.0.0", "--port", str(port)),
        ports=(f"127.0.0.1:${{BATON_API_PORT:-{port}}}:{port}",),
        healthcheck=Healthcheck(test=_http_check(f"http://127.0.0.1:{port}/health")),
    )


def scheduler() -> Service:
    """``baton scheduler``: fires the schedules; healthy while its passes over them succeed."""
    beat = "/tmp/baton-scheduler.alive"
    stale = f"import os, sys, time; sys.exit(time.time() - os.stat({beat!r}).st_mtime > 15)"
    return Service(
        name="scheduler",
        comments=(
            "Starts the runs of `baton schedule` schedules (docs/schedules.md). Scaling it is",
            "safe: each tick's run is claimed by its idempotency key, so it starts once. The",
            "healthcheck fails when its heartbeat file is older than 15 s (Redis unreachable).",
        ),
        extends="baton",
        command=("baton", "scheduler", "--heartbeat", beat),
        healthcheck=Healthcheck(test=("CMD", "python", "-c", stale)),
    )


def _http_check(url: str) -> tuple[str, ...]:
    """A healthcheck that GETs ``url`` with Python: the image has no curl; a non-2xx answer
    or no answer raises, which exits non-zero."""
    code = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=5)"
    return ("CMD", "python", "-c", code)


def _header(settings: Settings) -> str:
    path = settings.topology_file
    default = path.resolve() == DEFAULT_TOPOLOGY.resolve()
    shown = "config/topology.yaml" if default else str(path)
    regenerate = "baton compose -o docker-compose.yml --force"
    if not default:
        regenerate = f"BATON_TOPOLOGY_FILE={shown} {regenerate}"
    return (
        f"# Generated by `baton compose` from {shown} (app/compose.py): do not edit by hand.\n"
        f"# Regenerate after changing the topology:  {regenerate}\n"
        "# tests/deploy/test_compose.py fails when this file and `baton compose` disagree.\n"
        "#\n"
        "# Baton in production: Redis (AOF, password, not published), one worker service per\n"
        "# queue (scale each on its own: `docker compose up -d --scale worker-<queue>=4`), Flower\n"
        "# behind basic auth, Baton's Prometheus metrics and its HTTP API (token required); every\n"
        "# service has a healthcheck.\n"
        "#   cp deploy/.env.example .env   # then set REDIS_PASSWORD, BATON_FLOWER_PASSWORD,\n"
        "#                                 # BATON_API_TOKEN\n"
        "#   docker compose up -d --build\n"
        "\n"
    )


def _anchors(settings: Settings) -> str:
    imports = f"${{BATON_IMPORTS:-{json.dumps(settings.imports)}}}"
    return (
        "x-baton: &baton\n"
        "  image: ${BATON_IMAGE:-baton:local}\n"
        "  build: .\n"
        "  restart: unless-stopped\n"
        "  environment: &baton-env\n"
        f"    BATON_REDIS_URL: {_scalar(f'redis://:{REDIS_PASSWORD}@redis:6379/0')}\n"
        f"    BATON_IMPORTS: {_scalar(imports)}\n"
        "  depends_on:\n"
        "    redis:\n"
        "      condition: service_healthy\n"
        "\n"
        "# Workers: the command line of `baton worker` (app/stack.py). Gossip and mingle are\n"
        "# off: Baton keeps cancellation in Redis, not in workers' revoke lists. SIGTERM is\n"
        "# remapped to Celery's cold shutdown, which (after the 10 s soft-shutdown window of\n"
        "# worker_soft_shutdown_timeout) requeues unfinished late-ack tasks instead of losing\n"
        "# them; the grace period gives that window time before Docker sends SIGKILL.\n"
        "x-worker: &worker\n"
        "  <<: *baton\n"
        "  stop_signal: SIGTERM\n"
        "  stop_grace_period: 30s\n"
        "  environment: &worker-env\n"
        "    <<: *baton-env\n"
        "    REMAP_SIGTERM: SIGQUIT\n"
        "\n"
    )


def _service(service: Service) -> str:
    lines = [f"  {service.name}:"]
    lines += [f"    # {line}" for line in service.comments]
    if service.extends:
        lines.append(f"    <<: *{service.extends}")
    if service.image:
        lines.append(f"    image: {_scalar(service.image)}")
    if service.restart:
        lines.append(f"    restart: {_scalar(service.restart)}")
    if service.environment:
        lines.append("    environment:")
        if service.env_extends:
            lines.append(f"      <<: *{service.env_extends}")
        lines += [f"      {key}: {_scalar(value)}" for key, value in service.environment]
    lines += _flow("command", service.command, indent=4)
    for key, items in (("volumes", service.volumes), ("ports", service.ports)):
        if items:
            lines.append(f"    {key}:")
            lines += [f"      - {_scalar(item)}" for item in items]
    check = service.healthcheck
    lines.append("    healthcheck:")
    lines += _flow("test", check.test, indent=6)
    lines += [
        f"      interval: {check.interval}",
        f"      timeout: {check.timeout}",
        f"      retries: {check.retries}",
        f"      start_period: {check.start_period}",
    ]
    return "\n".join(lines) + "\n"


def _flow(key: str, items: Sequence[str], indent: int) -> list[str]:
    """``key: ["a", "b", ...]`` as JSON strings (valid YAML), wrapped under the first item."""
    head = " " * indent + f"{key}: ["
    parts = [json.dumps(item) + "," for item in items[:-1]] + [json.dumps(items[-1]) + "]"]
    lines: list[str] = []
    line = head
    for part in parts:
        joined = line + part if line == head else f"{line} {part}"
        if len(joined) > WIDTH and line != head:
            lines.append(line)
            line = " " * len(head) + part
        else:
            line = joined
    return [*lines, line]


def _scalar(value: str) -> str:
    """``value`` plain when YAML reads it back unchanged, else double-quoted (JSON is YAML)."""
    try:
        plain = bool(value) and yaml.safe_load(f"k: {value}") == {"k": value}
    except yaml.YAMLError:
        plain = False
    return value if plain else json.dumps(value)

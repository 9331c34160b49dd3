"""The deployment files agree with the topology and keep their security promises.

docker-compose.yml is written by hand; these tests are what keeps it in step with
config/topology.yaml (one worker service per queue, with that queue's pool and concurrency)
and what stops it from drifting into an open Redis or an unauthenticated Flower.
"""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.settings import DEFAULT_TOPOLOGY, Settings
from config.topology import Topology, load_topology
from tasks.pool import POOL_ENV, POOL_PATH

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SECRET_VARS = ("REDIS_PASSWORD", "BATON_FLOWER_PASSWORD")
# Worker options as Celery spells them, short and long.
OPTION_NAMES = {
    "queues": ("-Q", "--queues"),
    "pool": ("-P", "--pool"),
    "concurrency": ("-c", "--concurrency"),
    "hostname": ("-n", "--hostname"),
    "app": ("-A", "--app"),
}


def services() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(COMPOSE.read_text())
    result: dict[str, dict[str, Any]] = data["services"]
    return result


def topology() -> Topology:
    return load_topology(DEFAULT_TOPOLOGY)


def argv(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def option(args: list[str], name: str) -> str | None:
    """The value of a Celery option given as ``-Q x``, ``--queues x`` or ``--queues=x``."""
    for i, arg in enumerate(args):
        for spelling in OPTION_NAMES[name]:
            if arg == spelling and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(spelling + "="):
                return arg.split("=", 1)[1]
    return None


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def workers() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services().items() if name.startswith("worker-")}


def test_every_topology_queue_has_exactly_one_worker_service() -> None:
    expected = {f"worker-{queue}" for queue in topology().queues}
    assert set(workers()) == expected


@pytest.mark.parametrize("queue", sorted(topology().queues))
def test_each_worker_consumes_only_its_queue_with_the_topology_pool_and_concurrency(
    queue: str,
) -> None:
    args = argv(workers()[f"worker-{queue}"])
    spec = topology().queues[queue]
    assert option(args, "queues") == queue
    if args[:2] == ["baton", "worker"]:
        return  # the CLI takes pool and concurrency from the topology itself
    if spec.pool == "asyncio":  # Celery's custom pool, named by the environment
        assert option(args, "pool") == "custom"
        env = environment(workers()[f"worker-{queue}"])
        assert env.get(POOL_ENV) == POOL_PATH
    else:
        assert option(args, "pool") == spec.pool
    assert option(args, "concurrency") == str(spec.concurrency)


@pytest.mark.parametrize("queue", sorted(topology().queues))
def test_celery_workers_load_the_module_level_app_send_events_and_name_their_queue(
    queue: str,
) -> None:
    args = argv(workers()[f"worker-{queue}"])
    if args[:2] == ["baton", "worker"]:
        return
    assert args[0] == "celery"
    assert option(args, "app") == "app.worker:celery_app"
    assert "-E" in args or "--task-events" in args
    assert option(args, "hostname") == f"{queue}@%h"


def test_workers_shut_down_cold_on_sigterm_with_time_for_the_soft_shutdown() -> None:
    for name, service in workers().items():
        assert environment(service).get("REMAP_SIGTERM") == "SIGQUIT", name
        assert service.get("stop_signal", "SIGTERM") == "SIGTERM", name
        grace = re.fullmatch(r"(\d+)s", str(service.get("stop_grace_period", "")))
        assert grace is not None and int(grace.group(1)) > 10, name  # soft shutdown is 10 s


def test_every_baton_service_reaches_redis_by_name_with_the_password_from_the_env() -> None:
    for name, service in services().items():
        if name == "redis":
            continue
        url = environment(service)["BATON_REDIS_URL"]
        assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD[^}]*\}@redis:6379/\d+", url), name


def test_every_service_has_an_image_and_a_restart_policy() -> None:
    for name, service in services().items():
        assert service.get("image") or service.get("build"), name
        assert service.get("restart") in ("always", "unless-stopped", "on-failure"), name


def test_redis_requires_a_password_taken_from_the_environment() -> None:
    args = argv(services()["redis"])
    passwords = [value for flag, value in itertools.pairwise(args) if flag == "--requirepass"]
    assert len(passwords) == 1
    assert passwords[0].startswith("${REDIS_PASSWORD:?"), "required, and no default"


def redis_config() -> dict[str, str]:
    """deploy/redis.conf as mounted into the redis service, plus command-line overrides."""
    redis = services()["redis"]
    mounts = [str(v).split(":") for v in redis.get("volumes", [])]
    files = [ROOT / host for host, target, *_ in mounts if target.endswith("redis.conf")]
    lines = [line.split(None, 1) for f in files for line in f.read_text().splitlines()]
    conf = {words[0]: words[1].strip() for words in lines if words and words[0][0] != "#"}
    args = " ".join(argv(redis)).split()
    conf.update({a[2:]: v for a, v in itertools.pairwise(args) if a.startswith("--")})
    return conf


def test_redis_keeps_an_append_only_file_and_never_evicts() -> None:
    conf = redis_config()
    assert conf.get("appendonly") == "yes"
    assert conf.get("maxmemory-policy") == "noeviction"


def test_redis_publishes_no_port_to_the_host_and_has_a_healthcheck() -> None:
    redis = services()["redis"]
    assert "ports" not in redis
    assert redis.get("image", "").startswith("redis:7")
    assert redis["healthcheck"]["test"]


def test_flower_requires_basic_auth_with_credentials_from_the_env() -> None:
    args = argv(services()["flower"])
    auth = [a.split("=", 1)[1] for a in args if a.startswith("--basic_auth=")]
    assert len(auth) == 1
    # user:password, where the user may itself be ${VAR:-default}
    parts = re.fullmatch(r"(\$\{[^}]*\}|[^:$]+):(.+)", auth[0])
    assert parts is not None
    password = parts.group(2)
    assert password.startswith("${BATON_FLOWER_PASSWORD:?"), "no default: never a known password"


def test_flower_caps_the_tasks_it_keeps_in_memory_and_publishes_its_port() -> None:
    flower = services()["flower"]
    args = argv(flower)
    assert any(re.fullmatch(r"--max_tasks=\d+", a) for a in args)
    assert option(args, "app") == "app.worker:celery_app"
    assert flower.get("ports")


def test_env_example_names_every_variable_the_compose_file_requires() -> None:
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    example = (ROOT / "deploy" / ".env.example").read_text()
    named = set(re.findall(r"^(\w+)=", example, flags=re.MULTILINE))
    assert set(SECRET_VARS) <= required
    assert required <= named
    for var in SECRET_VARS:  # shipped empty: nobody deploys a password from the repo
        assert re.search(rf"^{var}=$", example, flags=re.MULTILINE), var


def test_the_image_installs_the_locked_runtime_dependencies_only() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, flags=re.MULTILINE)
    assert "uv sync --frozen --no-dev" in dockerfile
    assert re.search(r"^USER (?!root)", dockerfile, flags=re.MULTILINE)


def runtime_packages() -> set[str]:
    """Every package the image installs: Baton's locked dependencies without the dev group."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    Node = tuple[str, tuple[str, ...]]  # a package and the extras asked of it
    todo: list[Node] = [("baton", ())]
    seen: set[Node] = set(todo)
    while todo:
        name, extras = todo.pop()
        deps = list(packages[name].get("dependencies", []))
        for extra in extras:
            deps += packages[name].get("optional-dependencies", {}).get(extra, [])
        for dep in deps:
            node = (str(dep["name"]), tuple(dep.get("extra", ())))
            if node not in seen:
                seen.add(node)
                todo.append(node)
    return {name for name, _ in seen}


def test_the_image_installs_what_kombus_redis_transport_imports() -> None:
    # kombu.transport.redis imports `packaging`, declared only by kombu's `redis` extra; the
    # dev tools pull it in locally, so only a --no-dev install (the image) would crash.
    missing = {"redis", "packaging"} - runtime_packages()
    assert not missing, f"{missing} missing: depend on celery[redis] or kombu[redis]"


def readme_commands() -> list[str]:
    """Every line inside a fenced code block of README.md."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", (ROOT / "README.md").read_text(), re.M | re.S)
    return [line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()]


def test_readme_settings_table_names_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, field in Settings.model_fields.items():
        variable = field.alias or f"BATON_{name.upper()}"
        assert f"| `{variable}` |" in readme, variable


def test_ci_runs_exactly_the_test_command_the_readme_gives() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line.strip() for line in ci if line.strip() and not line.startswith("#")]
    runs = [c for c in commands if not c.startswith(("set ", "cd "))]
    assert runs == ["bash scripts/test.sh"]
    assert "bash scripts/test.sh" in readme_commands()


SCRIPTS = [".ci/run", *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("scripts/*.sh"))]


@pytest.mark.parametrize("script", SCRIPTS)
def test_shell_scripts_are_valid_bash(script: str) -> None:
    subprocess.run(["bash", "-n", str(ROOT / script)], check=True)

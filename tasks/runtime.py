"""The distributed runtime's shared parts: settings, Redis client, Celery app, placement, sending.

One ``Runtime`` per process. The Redis client is rebuilt after a fork (prefork workers).
"""

from __future__ import annotations

import inspect
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery

from config import Settings, Topology, load_topology
from tasks import scripts
from tasks.keys import Keys
from tasks.publish import Publisher
from workflows.step import Mode
from workflows.tools import ToolSpec
from workflows.workflow import Workflow, require_workflow

TOOL_GRACE = 5.0
ASYNC_BACKSTOP = 1.0
STEP_GRACE = 10.0


@dataclass
class Message:
    """A task message to send: what to run, where, with which args and limits."""

    name: str
    args: list[Any]
    queue: str
    task_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    countdown: float | None = None
    soft_time_limit: float | None = None
    time_limit: float | None = None

    def to_json(self) -> list[Any]:
        return [
            self.name,
            self.args,
            self.queue,
            self.task_id,
            self.soft_time_limit,
            self.time_limit,
        ]

    @classmethod
    def from_json(cls, data: list[Any]) -> Message:
        name, args, queue, task_id, soft, hard = data
        return cls(name, args, queue, task_id, None, soft, hard)


class Runtime:
    """Everything a worker or client needs to act on runs."""

    def __init__(self, settings: Settings, app: Celery, topology: Topology | None = None) -> None:
        self.settings = settings
        self.app = app
        self.topology = topology or load_topology(settings.topology_file)
        self.keys = Keys(settings.key_prefix)
        self._redis: Any = None
        self._pid = 0
        self._scripts: dict[str, Any] = {}
        self.publisher = Publisher(app, f"{settings.key_prefix}:q:")

    @property
    def redis(self) -> Any:
        """The process's Redis client (``Any``: redis-py's stubs don't model decoded replies)."""
        if self._redis is None or self._pid != os.getpid():
            self._redis = redis_client(self.settings.redis_url or "redis://localhost:6379/0")
            self._pid = os.getpid()
            self._scripts = {}
        return self._redis

    def script(self, name: str) -> Any:
        """A registered Lua script (EVALSHA with automatic reload)."""
        r = self.redis
        if name not in self._scripts:
            self._scripts[name] = r.register_script(getattr(scripts, name))
        return self._scripts[name]

    # --- placement ----------------------------------------------------------------------

    def step_queue(self, workflow: type[Workflow], step: str) -> str:
        spec = workflow.spec.steps[step]
        fallback = self.topology.routes.get(workflow.name) or workflow.queue
        return self.topology.queue_for(f"{workflow.name}.{step}", spec.options.queue, fallback)

    def tool_queue(self, spec: ToolSpec) -> str:
        fallback = "tools" if "tools" in self.topology.queues else None
        return self.topology.queue_for(f"tool.{spec.name}", spec.queue, fallback)

    def tool_mode(self, spec: ToolSpec) -> Mode:
        return (
            self.topology.modes.get(f"tool.{spec.name}") or spec.mode or self.settings.default_mode
        )

    def child_mode(self, workflow: str, requested: Mode | None) -> Mode:
        cls = require_workflow(workflow)
        return (
            requested or self.topology.modes.get(workflow) or cls.mode or self.settings.default_mode
        )

    def step_message(self, workflow: str, step: str, args: list[Any]) -> Message:
        cls = require_workflow(workflow)
        timeout = cls.spec.steps[step].options.timeout
        limit = self.settings.max_time_limit if timeout is None else timeout + STEP_GRACE
        return Message(f"{workflow}.{step}", args, self.step_queue(cls, step), time_limit=limit)

    def tool_message(
        self, spec: ToolSpec, args: list[Any], countdown: float | None = None
    ) -> Message:
        # A sync tool is stopped by Celery's soft limit (a signal in the pool process); an async
        # one by asyncio at its timeout, with the soft limit a second later only as a backstop,
        # so the signal cannot land while the timeout is being reported.
        soft = spec.timeout
        if soft is not None and inspect.iscoroutinefunction(spec.fn):
            soft += ASYNC_BACKSTOP
        hard = self.settings.max_time_limit if soft is None else soft + TOOL_GRACE
        return Message(
            f"tool.{spec.name}",
            args,
            self.tool_queue(spec),
            countdown=countdown,
            soft_time_limit=soft,
            time_limit=hard,
        )

    # --- sending ------------------------------------------------------------------------

    def send(self, messages: list[Message], pipe: Any = None) -> None:
        """Publish messages: on ``pipe`` (sent with the caller's writes) or in one round trip."""
        if not messages:
            return
        own = pipe if pipe is not None else self.redis.pipeline(transaction=False)
        ts = now()
        for m in messages:
            record = json.dumps([ts + (m.countdown or 0.0), m.to_json()], separators=(",", ":"))
            own.hset(self.keys.inflight(m.args[0]), m.task_id, record)
        self.publisher.push(own, messages)
        if pipe is None:
            own.execute()

    def finished(self, pipe: Any, run_id: str, task_id: str | None) -> None:
        """The task ``task_id`` of ``run_id`` is done with its message (on ``pipe``)."""
        if task_id:
            pipe.hdel(self.keys.inflight(run_id), task_id)


def redis_client(url: str) -> Any:
    """A Redis client that notices dead connections and reconnects (Redis restarts happen)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=10,
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=10,
        retry_on_timeout=True,
        decode_responses=True,
    )


def now() -> float:
    return time.time()

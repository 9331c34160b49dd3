"""Redis writes recorded, not sent: applied later on a pipeline, or inside one Lua script.

A run's creation is a dozen writes (run hash, index, log, live set, in-flight records, queue
pushes). A top-level submit applies them in the CREATE script, all or nothing and only before
its deadline; a child run created by a step applies them on the step's own pipeline. Recording
them once keeps both paths the same writes. Every argument is kept as a string, so Lua and
redis-py write byte-identical values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class Batch:
    """The write commands a run operation issues, in order (the subset of redis-py's pipeline
    API that ``runs.create_run``, ``Runtime.send`` and ``Publisher.push`` use)."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def _add(self, *args: Any) -> None:
        self.commands.append([str(a) for a in args])

    def hset(
        self,
        name: str,
        key: str | None = None,
        value: Any = None,
        mapping: Mapping[str, Any] | None = None,
    ) -> None:
        pairs: list[Any] = [] if key is None else [key, value]
        for k, v in (mapping or {}).items():
            pairs += [k, v]
        self._add("HSET", name, *pairs)

    def zadd(self, name: str, mapping: Mapping[str, float]) -> None:
        pairs: list[Any] = []
        for member, score in mapping.items():
            pairs += [repr(float(score)), member]
        self._add("ZADD", name, *pairs)

    def zremrangebyscore(self, name: str, low: str, high: float) -> None:
        self._add("ZREMRANGEBYSCORE", name, low, repr(float(high)))

    def expire(self, name: str, seconds: int) -> None:
        self._add("EXPIRE", name, seconds)

    def xadd(self, name: str, fields: Mapping[str, Any]) -> None:
        pairs: list[Any] = []
        for k, v in fields.items():
            pairs += [k, v]
        self._add("XADD", name, "*", *pairs)

    def sadd(self, name: str, *members: str) -> None:
        self._add("SADD", name, *members)

    def lpush(self, name: str, *values: str) -> None:
        self._add("LPUSH", name, *values)

    def apply(self, pipe: Any) -> None:
        """Queue every command on a redis-py pipeline (sent with the caller's round trip)."""
        for command in self.commands:
            pipe.execute_command(*command)

    def to_json(self) -> str:
        """The commands for the CREATE script's ``cjson.decode``."""
        return json.dumps(self.commands, separators=(",", ":"))

"""Rate limits of tools: ``@tool(rate_limit="60/m", rate_key=lambda args: args["user"])``.

A limit of ``N`` per second, minute or hour spaces a tool's calls (per key) ``1/N`` of the unit
apart: the generic cell rate algorithm with no burst (a call may start once the previous
call's slot plus the interval has come). Distributed, the slots are handed out by one Lua
script for every worker (``tasks.tool_task``, ``tasks.scripts.ACQUIRE``) and a call waits for
its slot in Redis's timer set; in-process (and for a tool run in-process inside a worker) the
same rule is applied per process by :func:`wait_turn`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RateKey = Callable[[dict[str, Any]], Any]
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
MAX_TOLERANCE = 0.05  # seconds
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([smh])\s*$")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``count`` calls per ``per`` seconds, evenly spaced."""

    count: int
    per: float
    text: str

    @property
    def interval(self) -> float:
        """Seconds between two calls' slots."""
        return self.per / self.count

    @property
    def tolerance(self) -> float:
        """How much earlier than its turn a start may come (GCRA's tolerance): it makes up
        for the few ms a woken call is late, so the rate holds over time; two starts are
        never closer than ``interval - tolerance``."""
        return min(self.interval / 2, MAX_TOLERANCE)


def parse_rate(text: str) -> RateLimit:
    """``"5/s"``, ``"60/m"``, ``"100/h"`` as a :class:`RateLimit`; anything else: ValueError."""
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) <= 0:
        raise ValueError(
            f"bad rate limit {text!r}: expected 'N/s', 'N/m' or 'N/h' with N a positive integer"
        )
    return RateLimit(int(match.group(1)), UNITS[match.group(2)], text.strip())


def check_limit_options(
    rate_limit: str | None,
    rate_key: object,
    concurrency: int | None,
    concurrency_key: object,
    keyed_on: str,
) -> RateLimit | None:
    """The parsed rate limit of a ``@tool`` or ``@step``; a bad limit option is a one-line
    ValueError when it is defined. ``keyed_on``: what the key functions take ("the arguments",
    "the event")."""
    rate = None if rate_limit is None else parse_rate(rate_limit)
    if rate_key is not None and (rate is None or not callable(rate_key)):
        raise ValueError(f"rate_key needs a rate_limit and must be a function of {keyed_on}")
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency <= 0
    ):
        raise ValueError(f"bad concurrency {concurrency!r}: expected a positive integer")
    if concurrency_key is not None and (concurrency is None or not callable(concurrency_key)):
        raise ValueError(
            f"concurrency_key needs a concurrency and must be a function of {keyed_on}"
        )
    return rate


# in-process slots: (tool, key) -> the earliest time (monotonic) the next call may start
_NEXT: dict[tuple[str, str], float] = {}


async def wait_turn(tool: str, key: str, rate: RateLimit) -> None:
    """Wait for this call's slot under ``rate`` in this process (FIFO: the slot is taken
    before the first await)."""
    now = time.monotonic()
    if len(_NEXT) > 10_000:  # forget the keys whose slots are past
        for stale in [k for k, v in _NEXT.items() if v < now]:
            del _NEXT[stale]
    slot = max(_NEXT.get((tool, key), now), now)
    _NEXT[(tool, key)] = slot + rate.interval
    if slot > now:
        await asyncio.sleep(slot - now)

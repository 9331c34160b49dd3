"""General-purpose example tools: arithmetic, text, and tools that are slow or fail on purpose.

They are deterministic and stateless (``flaky`` counts attempts with ``ToolContext.attempt``,
not with a global), so they behave the same in-process and on a distributed worker. Every
result is JSON.
"""

from __future__ import annotations

import asyncio
from typing import Any

from workflows import Retry, ToolContext, tool

FLAKY_MAX_ATTEMPTS = 3


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@tool
def word_count(text: str) -> int:
    """Count the whitespace-separated words of a text."""
    return len(text.split())


@tool(timeout=1.0)
async def slow(seconds: float) -> dict[str, float]:
    """Sleep for ``seconds``; its timeout is 1 s, so anything longer fails with ToolTimeout."""
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@tool(timeout=30.0)
async def complete(prompt: str, latency: float = 0.2) -> str:
    """An LLM stand-in: waits ``latency`` seconds (the network), then answers deterministically.

    IO-bound and async: config/topology.yaml routes it to the ``llm`` queue, whose asyncio
    worker keeps hundreds of such calls in flight at once."""
    await asyncio.sleep(latency)
    words = prompt.split()
    return f"{len(words)} words; first: {words[0] if words else ''}"


@tool(retry=Retry(max_attempts=FLAKY_MAX_ATTEMPTS, delay=0.01))
def flaky(key: str, fail_times: int, ctx: ToolContext) -> dict[str, Any]:
    """Fail the first ``fail_times`` attempts of a call, then succeed (retried up to 3 times)."""
    if ctx.attempt <= fail_times:
        raise RuntimeError(f"flaky {key}: attempt {ctx.attempt} failed on purpose")
    return {"key": key, "attempts": ctx.attempt}


@tool(retry=Retry(max_attempts=FLAKY_MAX_ATTEMPTS, delay=0.01))
def always_fails() -> None:
    """Fail on every attempt (retried up to 3 times)."""
    raise RuntimeError("always_fails failed on purpose")

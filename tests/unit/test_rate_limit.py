"""Rate limit strings, their validation at decoration, and the in-process limiter."""

from __future__ import annotations

import asyncio
import time

import pytest
from celery.exceptions import Retry as CeleryRetry

from tasks.attempts import Attempt, tell_celery
from tasks.protocol import Span, SpanKind, SpanOutcome
from workflows import tool
from workflows.rate_limit import parse_rate, wait_turn


@pytest.mark.parametrize(
    ("text", "count", "per", "interval"),
    [
        ("5/s", 5, 1.0, 0.2),
        ("60/m", 60, 60.0, 1.0),
        ("100/h", 100, 3600.0, 36.0),
        (" 2 / s ", 2, 1.0, 0.5),
    ],
)
def test_rates_parse(text: str, count: int, per: float, interval: float) -> None:
    rate = parse_rate(text)
    assert (rate.count, rate.per, rate.interval) == (count, per, interval)


@pytest.mark.parametrize("text", ["", "5", "0/s", "-1/s", "5/d", "5/x", "1.5/s", "s/5", "5/ss"])
def test_a_bad_rate_is_a_one_line_value_error_at_decoration(text: str) -> None:
    with pytest.raises(ValueError, match="bad rate limit") as info:

        @tool(rate_limit=text)
        def bad(x: int) -> int:
            return x

    assert "\n" not in str(info.value)


def test_a_rate_key_needs_a_rate_limit() -> None:
    with pytest.raises(ValueError, match="rate_key needs a rate_limit"):

        @tool(rate_key=lambda args: args["x"])
        def keyed(x: int) -> int:
            return x


def test_a_limited_tool_knows_its_key() -> None:
    @tool(name="rl_keyed_unit", rate_limit="3/m", rate_key=lambda args: args["user"])
    def keyed(user: str, n: int = 1) -> int:
        return n

    spec = keyed.__baton_tool__  # type: ignore[attr-defined]
    assert spec.rate.interval == 20.0 and spec.limit_key({"user": "ann"}) == "ann"


def test_the_in_process_limiter_spaces_calls_per_key() -> None:
    rate = parse_rate("20/s")

    async def main() -> list[float]:
        began = time.monotonic()

        async def one(key: str) -> float:
            await wait_turn("rl_unit", key, rate)
            return time.monotonic() - began

        return await asyncio.gather(*(one("k") for _ in range(5)), one("other"))

    *same, other = asyncio.run(main())
    assert same == sorted(same) and same[-1] >= 0.19  # 4 intervals of 0.05 s, FIFO
    assert other < 0.04  # another key does not wait


def test_a_limited_delivery_is_a_retry_for_celery_naming_the_wait() -> None:
    what = "waiting for rate limit 5/s of tool t (key ann) until 10:00:00.200"
    span = Span(
        SpanKind.TOOL, "t", "r1", "i1", "i1.0", 1, "tools", "w", 1.0, 1.0, SpanOutcome.LIMITED, what
    )
    with pytest.raises(CeleryRetry, match="waiting for rate limit 5/s of tool t"):
        tell_celery(Attempt(span))

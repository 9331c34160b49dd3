"""Concurrency limits of tools, at decoration: validated, and their keys."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.keys import Keys
from workflows import tool


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True])
def test_a_bad_concurrency_is_a_one_line_value_error_at_decoration(bad: Any) -> None:
    with pytest.raises(ValueError, match="bad concurrency") as info:

        @tool(concurrency=bad)
        def limited(x: int) -> int:
            return x

    assert "\n" not in str(info.value)


def test_a_concurrency_key_needs_a_concurrency() -> None:
    with pytest.raises(ValueError, match="concurrency_key needs a concurrency") as info:

        @tool(concurrency_key=lambda args: args["x"])
        def keyed(x: int) -> int:
            return x

    assert "\n" not in str(info.value)


def test_a_limited_tool_knows_its_key() -> None:
    @tool(name="cl_keyed_unit", concurrency=3, concurrency_key=lambda args: args["user"])
    def keyed(user: str, n: int = 1) -> int:
        return n

    spec = keyed.__baton_tool__  # type: ignore[attr-defined]
    assert spec.concurrency == 3 and spec.concurrency_of({"user": "ann"}) == "ann"
    assert spec.rate is None and spec.limit_key({"user": "ann"}) == ""
    assert Keys("b").concurrency("cl_keyed_unit", "ann") == "b:limit:conc:cl_keyed_unit:ann"


def test_an_unkeyed_limit_has_one_key() -> None:
    @tool(name="cl_unit", concurrency=1)
    def one(n: int) -> int:
        return n

    assert one.__baton_tool__.concurrency_of({"n": 1}) == ""  # type: ignore[attr-defined]

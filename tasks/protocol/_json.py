"""JSON helpers shared by the protocol's records: compact dumps, loads that name what failed."""

from __future__ import annotations

import json
from typing import Any

from workflows.errors import PayloadError


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def load(text: str | bytes | None, what: str) -> Any:
    try:
        return json.loads(text)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"{what} is not JSON: {exc}", payload=str(text)[:200]) from exc

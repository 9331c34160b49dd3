"""The one JSON codec for events, results, errors and snapshots.

An event travels as ``{"type": <tag>, "data": {...}}``; decoding resolves the tag against the
event registry only.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError

from workflows.errors import PayloadError
from workflows.events import Event, event_class

MAX_PAYLOAD_BYTES = 1_000_000


def encode_event(event: Event) -> dict[str, Any]:
    return {"type": type(event).type_tag, "data": event.model_dump(mode="json")}


def decode_event(envelope: Any) -> Event:
    """Rebuild an event from its envelope; unknown tags and invalid data are PayloadErrors."""
    if not isinstance(envelope, dict) or "type" not in envelope:
        raise PayloadError("an event must be an object with 'type' and 'data'", payload=envelope)
    cls = event_class(str(envelope["type"]))
    try:
        return cls.model_validate(envelope.get("data") or {})
    except ValidationError as exc:
        raise PayloadError(f"invalid {cls.__name__}: {exc}", payload=envelope) from exc


def to_jsonable(value: Any) -> Any:
    """A JSON-compatible copy of ``value``; raises PayloadError for what JSON cannot hold."""
    if isinstance(value, Event):
        return encode_event(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"value is not JSON-serializable: {exc}", payload=repr(value)) from exc
    return value


def dumps(value: Any, limit: int = MAX_PAYLOAD_BYTES) -> str:
    """Serialize to compact JSON, refusing payloads over ``limit`` bytes."""
    try:
        text = json.dumps(to_jsonable(value), separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"value is not JSON-serializable: {exc}", payload=repr(value)) from exc
    if len(text) > limit:
        raise PayloadError(f"payload is {len(text)} bytes, over the {limit}-byte limit")
    return text


def loads(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"payload is not JSON: {exc}", payload=str(text)[:200]) from exc

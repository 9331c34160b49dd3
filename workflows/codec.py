"""The one JSON codec for events, results, errors and snapshots.

An event travels as ``{"type": <tag>, "data": {...}}``; decoding resolves the tag against the
event registry only.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar, get_args
from uuid import UUID

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from workflows.errors import PayloadError
from workflows.events import Event, event_class

MAX_PAYLOAD_BYTES = 1_000_000


def encode_event(event: Event) -> dict[str, Any]:
    """The event's envelope. Fields typed ``Any`` and extra fields keep their values' types
    (a model in ``StopEvent.result`` comes back a model), see :func:`to_data`."""
    typed = _typed_fields(type(event))
    extra = event.model_extra
    if not typed and not extra:
        return {"type": type(event).type_tag, "data": event.model_dump(mode="json")}
    skip = set(typed) | set(extra or ())
    data = event.model_dump(mode="json", exclude=skip)
    for name in skip:
        data[name] = to_data(getattr(event, name))
    return {"type": type(event).type_tag, "data": data}


def decode_event(envelope: Any) -> Event:
    """Rebuild an event from its envelope; unknown tags and invalid data are PayloadErrors."""
    if not isinstance(envelope, dict) or "type" not in envelope:
        raise PayloadError("an event must be an object with 'type' and 'data'", payload=envelope)
    cls = event_class(str(envelope["type"]))
    data = envelope.get("data") or {}
    try:
        if isinstance(data, dict) and _has_typed_values(cls, data):
            names, typed = _field_names(cls), _typed_fields(cls)
            data = {k: from_data(v) if k in typed or k not in names else v for k, v in data.items()}
        return cls.model_validate(data, by_name=True)
    except ValidationError as exc:
        raise PayloadError(f"invalid {cls.__name__}: {exc}", payload=envelope) from exc


_TYPED_FIELDS: dict[type[BaseModel], frozenset[str]] = {}
_FIELD_NAMES: dict[type[BaseModel], frozenset[str]] = {}


def _typed_fields(cls: type[BaseModel]) -> frozenset[str]:
    """Fields whose annotation contains ``Any``: pydantic cannot say what type their values
    had, so they travel through :func:`to_data` (memoized: encoding is on the hot path)."""
    found = _TYPED_FIELDS.get(cls)
    if found is None:
        _TYPED_FIELDS[cls] = frozenset()  # a model that contains itself: not typed by that
        found = _TYPED_FIELDS[cls] = frozenset(
            name for name, f in cls.model_fields.items() if _mentions_any(f.annotation)
        )
    return found


def _field_names(cls: type[BaseModel]) -> frozenset[str]:
    found = _FIELD_NAMES.get(cls)
    if found is None:
        found = _FIELD_NAMES[cls] = frozenset(cls.model_fields)
    return found


def _mentions_any(annotation: Any) -> bool:
    """``Any`` somewhere in the annotation, or a model whose own fields are typed so."""
    if annotation is Any or annotation is object or annotation is None:
        return annotation is not None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return bool(_typed_fields(annotation))
    return any(_mentions_any(arg) for arg in get_args(annotation))


def _has_typed_values(cls: type[Event], data: dict[str, Any]) -> bool:
    """Whether decoding needs :func:`from_data` (a typed field, or an extra key)."""
    return bool(_typed_fields(cls)) or not data.keys() <= _field_names(cls)


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


def arguments_data(args: dict[str, Any]) -> dict[str, Any]:
    """Tool arguments as plain JSON: models as their fields, datetimes as ISO text, ...; the
    tool validates them back into its parameters' types."""
    try:
        data: dict[str, Any] = to_jsonable_python(args)
    except PydanticSerializationError as exc:
        raise PayloadError(f"tool arguments are not JSON-serializable: {exc}") from exc
    return data


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


# --- typed values: what the store, results and ``Any`` event fields hold -------------------
#
# JSON cannot say "this dict was a ChatTurn" or "this list was a tuple", so values that are not
# plain JSON travel as a tagged object ``{"__baton__": <kind>, ...}``. Decoding resolves a model
# or enum class only among modules already imported in this process (never by importing a path
# taken from data, as for event tags); a class that is not loaded comes back as its plain data.

TAG = "__baton__"
_PLAIN = (str, int, float, bool, type(None))
_PLAIN_TYPES = frozenset(_PLAIN)


def to_data(value: Any) -> Any:
    """``value`` as JSON-compatible data that :func:`from_data` turns back into the same types:
    pydantic models, events, tuples, sets, datetimes, UUIDs, decimals, bytes and enums included.
    Anything else is a PayloadError naming its type."""
    if type(value) in _PLAIN_TYPES:
        return value
    if isinstance(value, list):
        return [to_data(v) for v in value]
    if isinstance(value, dict):
        if all(type(k) is str for k in value) and TAG not in value:
            return {k: to_data(v) for k, v in value.items()}
        return {TAG: "dict", "items": [[to_data(k), to_data(v)] for k, v in value.items()]}
    if isinstance(value, Event):
        return {TAG: "event", "value": encode_event(value)}
    if isinstance(value, BaseModel):
        return {TAG: "model", "class": class_path(type(value)), "value": _model_data(value)}
    if isinstance(value, Enum):
        return {TAG: "enum", "class": class_path(type(value)), "value": to_data(value.value)}
    if isinstance(value, _PLAIN):  # a str or int subclass
        return value
    for kind, (cls, encode, _) in _SCALARS.items():
        if isinstance(value, cls):
            return {TAG: kind, "value": encode(value)}
    if isinstance(value, tuple | set | frozenset):
        kind = "tuple" if isinstance(value, tuple) else type(value).__name__
        return {TAG: kind if kind in _COLLECTIONS else "set", "items": [to_data(v) for v in value]}
    raise PayloadError(
        f"a value of type {type(value).__name__} cannot be stored: use JSON data, pydantic models, "
        "events, tuples, sets, datetimes, UUIDs, decimals, bytes or enums",
        payload=repr(value)[:200],
    )


def from_data(data: Any) -> Any:
    """The value :func:`to_data` encoded (plain JSON comes back as it is)."""
    if isinstance(data, _PLAIN):
        return data
    if isinstance(data, list):
        return [from_data(v) for v in data]
    if not isinstance(data, dict):
        return data
    kind = data.get(TAG)
    if kind is None:
        return {k: from_data(v) for k, v in data.items()}
    try:
        return _decode_tagged(str(kind), data)
    except (KeyError, TypeError, ValueError) as exc:
        raise PayloadError(f"malformed {kind} value: {exc}", payload=data) from exc


def _decode_tagged(kind: str, data: dict[str, Any]) -> Any:
    if kind in _COLLECTIONS:
        return _COLLECTIONS[kind](from_data(v) for v in data["items"])
    if kind == "dict":
        return {from_data(k): from_data(v) for k, v in data["items"]}
    if kind == "event":
        return decode_event(data["value"])
    if kind == "model":
        cls = _loaded_class(str(data["class"]), BaseModel)
        value = from_data(data["value"])
        return value if cls is None else cls.model_validate(value, by_name=True)
    if kind == "enum":
        enum_cls = _loaded_class(str(data["class"]), Enum)
        value = from_data(data["value"])
        return value if enum_cls is None else enum_cls(value)
    if kind in _SCALARS:
        return _SCALARS[kind][2](data["value"])
    raise ValueError(f"unknown kind {kind!r}")


def _model_data(model: BaseModel) -> Any:
    """A model's fields as pydantic dumps them (by name: aliases and custom serializers kept),
    except fields typed ``Any`` and extra fields, whose values keep their own types."""
    cls = type(model)
    typed = _typed_fields(cls)
    extra = model.model_extra
    try:
        if not typed and not extra:
            return model.model_dump(mode="json", exclude_computed_fields=True)
        skip = set(typed) | set(extra or ())
        data = model.model_dump(mode="json", exclude=skip, exclude_computed_fields=True)
    except PydanticSerializationError as exc:
        raise PayloadError(f"a {cls.__name__} cannot be stored: {exc}") from exc
    for name in typed:
        data[name] = to_data(getattr(model, name))
    for key, value in (extra or {}).items():
        data[key] = to_data(value)
    return data


def class_path(cls: type) -> str:
    """``module:qualname``: how typed values name their class."""
    return f"{cls.__module__}:{cls.__qualname__}"


_C = TypeVar("_C")


def _loaded_class(path: str, base: type[_C]) -> type[_C] | None:
    """The class at ``module:qualname`` if that module is already imported and it is a ``base``
    subclass; else None (the caller keeps the plain data)."""
    module_name, _, qualname = path.partition(":")
    found: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found if isinstance(found, type) and issubclass(found, base) else None


_COLLECTIONS: dict[str, Callable[[Iterable[Any]], Any]] = {
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
}
_SCALARS: dict[str, tuple[type, Callable[[Any], Any], Callable[[Any], Any]]] = {
    "datetime": (datetime, datetime.isoformat, datetime.fromisoformat),
    "date": (date, date.isoformat, date.fromisoformat),
    "time": (time, time.isoformat, time.fromisoformat),
    "timedelta": (timedelta, timedelta.total_seconds, lambda s: timedelta(seconds=s)),
    "uuid": (UUID, str, UUID),
    "decimal": (Decimal, str, Decimal),
    "bytes": (bytes, lambda b: base64.b64encode(b).decode(), base64.b64decode),
}

"""Baton's runs and events in llama-agents-server's wire shapes (``HandlerData`` and event
envelopes), so ``llama_agents.client.WorkflowClient`` works against ``baton serve`` unchanged."""

from __future__ import annotations

import json
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic_core import to_jsonable_python

from tasks.protocol import LogEntry, LogKind, RunRecord, RunStatus
from workflows.codec import decode_event, from_data, loads
from workflows.errors import BatonError, ErrorInfo, InvalidInputError
from workflows.events import Event, StartEvent, StopEvent

Status = Literal["running", "completed", "failed", "cancelled"]
STATUSES: tuple[Status, ...] = ("running", "completed", "failed", "cancelled")


@dataclass(frozen=True)
class Envelope:
    """An event as llama's ``EventEnvelopeWithMetadata``: class name, MRO names, JSON value."""

    value: dict[str, Any]
    qualified_name: str | None
    type: str
    types: list[str] | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Handler:
    """A run as llama's ``HandlerData``: the handler id is the Baton run id."""

    handler_id: str
    workflow_name: str
    run_id: str
    status: Status
    started_at: str
    updated_at: str | None
    completed_at: str | None
    error: str | None
    result: Envelope | None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["result_unreadable"] = False
        return data


def envelope_of(event: Event, qualified_name: bool = True) -> Envelope:
    """llama's envelope of ``event``: its ``type`` is the class name clients match on."""
    cls = type(event)
    value = to_jsonable_python(event, fallback=repr)
    names = [c.__name__ for c in cls.__mro__[1:] if isinstance(c, type) and issubclass(c, Event)]
    types = names[: names.index("Event")] if "Event" in names else names
    return Envelope(
        value=value if isinstance(value, dict) else {"value": value},
        qualified_name=f"{cls.__module__}.{cls.__name__}" if qualified_name else None,
        type=cls.__name__,
        types=types or None,
    )


def end_envelope(entry: LogEntry, qualified_name: bool = True) -> Envelope:
    """The last envelope of a stream: the StopEvent, or for a failed or cancelled run the
    stop event llama publishes then (``WorkflowFailedEvent``/``WorkflowCancelledEvent``)."""
    if entry.kind is LogKind.STOP:
        return envelope_of(decode_event(entry.data), qualified_name)
    name = "WorkflowFailedEvent" if entry.kind is LogKind.FAILED else "WorkflowCancelledEvent"
    value: dict[str, Any] = {"result": None}
    if entry.kind is LogKind.FAILED and isinstance(entry.data, dict):
        details = entry.data.get("details") or {}
        value |= {
            "step_name": str(details.get("step", "")) if isinstance(details, dict) else "",
            "exception": {
                "type": str(entry.data.get("type", "")),
                "message": str(entry.data.get("message", "")),
            },
            "attempts": None,
            "elapsed_seconds": None,
        }
    return Envelope(
        value, f"workflows.events.{name}" if qualified_name else None, name, ["StopEvent"]
    )


def handler_of(record: RunRecord) -> Handler:
    """A run's record as a handler: completed runs carry their result as a StopEvent."""
    ended = record.status is not RunStatus.RUNNING
    return Handler(
        handler_id=record.run_id,
        workflow_name=record.workflow,
        run_id=record.run_id,
        status=record.status.value,
        started_at=_iso(record.created),
        updated_at=_iso(record.updated),
        completed_at=_iso(record.updated) if ended else None,
        error=_error_text(record.error),
        result=_result(record),
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _error_text(error: ErrorInfo | None) -> str | None:
    return None if error is None else f"{error.type}: {error.message}"


def _result(record: RunRecord) -> Envelope | None:
    if record.status is not RunStatus.COMPLETED or record.result is None:
        return None
    value = from_data(loads(record.result))
    if isinstance(value, dict) and set(value) == {"type", "data"}:
        with suppress(BatonError):
            value = decode_event(value)
    return envelope_of(value if isinstance(value, StopEvent) else StopEvent(result=value))


def bare_result(handler: Handler) -> Any:
    """``GET /results``' ``result``: a StopEvent's ``result`` field, else the event's value."""
    if handler.result is None:
        return None
    if handler.result.type == "StopEvent":
        return handler.result.value.get("result")
    return handler.result.value


@dataclass(frozen=True)
class EventRequest:
    """An event a client sent: llama's ``EventEnvelope`` (``type`` or ``qualified_name``,
    ``value`` or legacy ``data``), or, where the class is known, its bare fields."""

    name: str | None
    fields: dict[str, Any]


def read_event_request(raw: Any, bare_ok: bool) -> EventRequest:
    """Parse an envelope (an object, or an object as a JSON string); with ``bare_ok``, an
    object without ``value``/``data`` and without both names is the event's fields."""
    if isinstance(raw, str):
        with suppress(json.JSONDecodeError):
            raw = json.loads(raw)
    if not isinstance(raw, dict):
        raise InvalidInputError(
            "Failed to deserialize event. Must be a json object, or stringified json object"
        )
    has_value = "value" in raw or "data" in raw
    if bare_ok and not has_value and ("type" not in raw or "qualified_name" not in raw):
        return EventRequest(None, raw)
    value = raw.get("value", raw.get("data"))
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise InvalidInputError("an event's value must be a JSON object of its fields")
    name = raw.get("type") or raw.get("qualified_name")
    if name is not None and not isinstance(name, str):
        raise InvalidInputError("an event's type must be a string")
    if name is None and not bare_ok:
        raise InvalidInputError("Invalid client data. Must have a type or a qualified name")
    return EventRequest(name, value)


def start_names(cls: type[StartEvent]) -> set[str]:
    """Names a start envelope may give the workflow's start event: its class name, qualified
    name and type tag, or the plain ``StartEvent`` llama's client sends by default."""
    names = {cls.__name__, cls.__qualname__, cls.type_tag, f"{cls.__module__}.{cls.__name__}"}
    return names | {"StartEvent", "workflows.events.StartEvent", StartEvent.type_tag}

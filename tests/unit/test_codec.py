"""One JSON codec: known event types only, JSON only, bounded size."""

from __future__ import annotations

import pytest

from workflows import Event, PayloadError, UnknownEventTypeError
from workflows.codec import MAX_PAYLOAD_BYTES, decode_event, dumps, encode_event, loads


class Parcel(Event):
    weight: float
    tags: list[str] = []


def test_an_event_round_trips_through_its_envelope() -> None:
    envelope = encode_event(Parcel(weight=1.5, tags=["a"]))
    assert envelope == {"type": Parcel.type_tag, "data": {"weight": 1.5, "tags": ["a"]}}
    assert decode_event(loads(dumps(envelope))) == Parcel(weight=1.5, tags=["a"])


def test_unknown_event_type_in_a_payload_is_an_unknown_event_type_error() -> None:
    with pytest.raises(UnknownEventTypeError, match=r"unknown event type 'os\.system'"):
        decode_event({"type": "os.system", "data": {}})


def test_invalid_event_data_is_a_payload_error_that_keeps_the_payload() -> None:
    envelope = {"type": Parcel.type_tag, "data": {"weight": "heavy"}}
    with pytest.raises(PayloadError, match="invalid Parcel") as info:
        decode_event(envelope)
    assert info.value.details["payload"] == envelope


def test_an_envelope_without_a_type_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="must be an object with 'type' and 'data'"):
        decode_event(["not", "an", "envelope"])


def test_a_non_json_value_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="not JSON-serializable"):
        dumps({"when": object()})
    with pytest.raises(PayloadError, match="not JSON-serializable"):
        dumps({1, 2})


def test_an_oversized_payload_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match=f"over the {MAX_PAYLOAD_BYTES}-byte limit"):
        dumps({"blob": "x" * MAX_PAYLOAD_BYTES})
    assert len(dumps({"blob": "x" * 100})) < MAX_PAYLOAD_BYTES


def test_text_that_is_not_json_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="payload is not JSON"):
        loads("{not json")

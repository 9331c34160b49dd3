"""Resolving ``baton send``'s event type: by tag, class name or qualified name; namesakes."""

from __future__ import annotations

import re

import pytest

from app.cli.answer import build_event, event_classes, resolve_event
from workflows.errors import InvalidInputError
from workflows.events import Event, HumanResponseEvent


class Verdict(HumanResponseEvent):
    ok: bool


class Other:
    class Verdict(Event):
        score: int


def test_event_type_resolves_by_tag_class_name_or_qualified_name() -> None:
    assert resolve_event(Verdict.type_tag) is Verdict
    assert resolve_event("Other.Verdict") is Other.Verdict
    assert resolve_event("HumanResponseEvent") is HumanResponseEvent
    assert event_classes()[Verdict.type_tag] is Verdict


def test_a_name_shared_by_two_classes_is_an_error_listing_both_tags() -> None:
    with pytest.raises(InvalidInputError, match="ambiguous") as info:
        resolve_event("Verdict")
    assert Verdict.type_tag in info.value.message and Other.Verdict.type_tag in info.value.message


def test_a_shared_name_resolves_to_the_one_the_run_waits_for() -> None:
    assert resolve_event("Verdict", awaited=[Other.Verdict.type_tag]) is Other.Verdict


def test_an_unknown_name_lists_what_the_run_waits_for_else_close_names() -> None:
    with pytest.raises(InvalidInputError, match=f"candidates: {re.escape(Verdict.type_tag)}$"):
        resolve_event("Nope", awaited=[Verdict.type_tag])
    with pytest.raises(InvalidInputError, match=r"candidates: .*Verdict"):
        resolve_event("Verdit")


def test_invalid_fields_are_named_on_one_line() -> None:
    with pytest.raises(InvalidInputError) as info:
        build_event(Other.Verdict, {"score": "high"})
    assert info.value.message.startswith("invalid input for Verdict: score: ")
    assert "\n" not in info.value.message
    assert build_event(Verdict, {"ok": True}) == Verdict(ok=True)

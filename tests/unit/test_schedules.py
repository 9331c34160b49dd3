"""Next-fire computation and the missed-tick policy, on an injected clock (no Redis)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.schedules import (
    CATCH_UP,
    check_cron,
    due_ticks,
    idempotency_key,
    latest_tick,
    next_tick,
    parse_every,
    ticks,
)
from tasks.protocol.schedules import ScheduleRecord
from workflows.errors import InvalidInputError, PayloadError


def at(text: str) -> float:
    """A UTC time as a timestamp: ``at("2026-01-01 00:05:00")``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def cron(expr: str, created: str = "2026-01-01 00:00:00", grace: float = 60.0) -> ScheduleRecord:
    return ScheduleRecord("s", "AddTwice", check_cron(expr), None, at(created), grace)


def every(seconds: int, created: float = 0.0, grace: float = 60.0) -> ScheduleRecord:
    return ScheduleRecord("s", "AddTwice", None, seconds, created, grace)


def test_next_and_latest_tick_of_a_cron_in_utc() -> None:
    s = cron("*/5 * * * *")
    assert next_tick(s, at("2026-01-01 00:03:00")) == at("2026-01-01 00:05:00")
    assert next_tick(s, at("2026-01-01 00:05:00")) == at("2026-01-01 00:10:00")  # strictly after
    assert latest_tick(s, at("2026-01-01 00:05:00")) == at("2026-01-01 00:05:00")  # at or before
    assert latest_tick(s, at("2026-01-01 00:09:59.9")) == at("2026-01-01 00:05:00")
    daily = cron("30 2 * * *")
    assert next_tick(daily, at("2026-01-01 03:00:00")) == at("2026-01-02 02:30:00")


def test_six_fields_have_seconds_first() -> None:
    s = cron("*/10 * * * * *")
    assert ticks(s, at("2026-01-01 00:00:00"), at("2026-01-01 00:00:30")) == [
        at("2026-01-01 00:00:10"),
        at("2026-01-01 00:00:20"),
        at("2026-01-01 00:00:30"),
    ]


def test_intervals_are_aligned_on_the_epoch() -> None:
    s = every(30)
    assert next_tick(s, 1000.0) == 1020.0
    assert latest_tick(s, 1020.0) == 1020.0
    assert ticks(s, 1000.0, 1080.5) == [1020.0, 1050.0, 1080.0]


def test_a_running_scheduler_fires_each_tick_once_in_order() -> None:
    s = every(1, created=100.2)
    fired: list[float] = []
    previous = None
    for now in (100.5, 101.0, 101.3, 102.9, 103.05, 106.0):  # irregular passes, one slow
        fired += due_ticks(s, now, previous)
        previous = now
    assert fired == [101.0, 102.0, 103.0, 104.0, 105.0, 106.0]  # none skipped, none twice


def test_no_tick_at_or_before_creation() -> None:
    s = every(1, created=100.0)
    assert due_ticks(s, 100.5, None) == []
    assert due_ticks(s, 101.0, 100.5) == [101.0]


def test_after_an_outage_only_the_latest_tick_fires_and_only_within_grace() -> None:
    s = every(60, created=0.0, grace=30.0)
    # no scheduler ran from 1000 to 1390: ticks 1020..1380 were missed; 1380 is 10 s old
    assert due_ticks(s, 1390.0, None) == [1380.0]
    assert due_ticks(s, 1390.0, 1000.0) == [1380.0]  # a pass long ago counts as an outage
    assert due_ticks(s, 1415.0, None) == []  # 35 s late: past grace, wait for 1440
    assert due_ticks(s, 1440.0, 1415.0) == [1440.0]


def test_a_slow_pass_catches_up_only_within_grace() -> None:
    s = every(1, created=0.0, grace=2.0)
    assert due_ticks(s, 104.5, 104.5 - CATCH_UP) == [103.0, 104.0]


def test_daily_cron_missed_by_a_minute_fires_once_on_start() -> None:
    s = cron("0 0 * * *", created="2025-12-01 00:00:00", grace=120.0)
    assert due_ticks(s, at("2026-01-02 00:01:00"), None) == [at("2026-01-02 00:00:00")]
    assert due_ticks(s, at("2026-01-02 00:03:00"), None) == []


def test_idempotency_key_names_the_schedule_and_the_tick() -> None:
    assert idempotency_key("nightly", at("2026-01-02 00:00:00")) == (
        "schedule:nightly:2026-01-02T00:00:00Z"
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("30", 30), ("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400)]
)
def test_intervals_parse(text: str, seconds: int) -> None:
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["0s", "", "1.5s", "5 weeks", "-1"])
def test_bad_intervals_are_one_line_errors(text: str) -> None:
    with pytest.raises(InvalidInputError, match="bad interval"):
        parse_every(text)


@pytest.mark.parametrize("expr", ["61 * * * *", "* * *", "not a cron", "* * * * * * * *"])
def test_bad_cron_expressions_are_one_line_errors(expr: str) -> None:
    with pytest.raises(InvalidInputError, match="bad cron expression"):
        check_cron(expr)


def test_the_record_round_trips_and_rejects_damage() -> None:
    s = cron("*/5 * * * *")
    assert ScheduleRecord.from_json(s.to_json()) == s
    with pytest.raises(PayloadError):
        ScheduleRecord.from_json('{"name": "s"}')

"""Scheduled workflows: cron and interval schedules, and the scheduler that fires them.

A schedule (``Client().schedules.add(...)``, ``baton schedule add``) is a definition in Redis.
``baton scheduler`` processes fire it: each computes the ticks that came due (cron by
``croniter``, in UTC; intervals aligned on the epoch) and submits one run per tick with the
idempotency key ``schedule:<name>:<tick>``. The CREATE script claims that key together with the
run, so however many schedulers run, each tick starts exactly one run and no leader is needed.
Why not Celery beat, and the missed-tick policy: ``docs/schedules.md``.
"""

from __future__ import annotations

import builtins
import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from croniter import CroniterError, croniter

from tasks import schedules as store
from tasks.protocol.schedules import ScheduleRecord
from workflows.errors import BatonError, InvalidInputError, StoreUnavailableError
from workflows.events import StartEvent
from workflows.workflow import Workflow, require_constructible, require_workflow

if TYPE_CHECKING:
    from app.client import Client

DEFAULT_GRACE = 60.0  # seconds a tick may still fire late (after an outage)
CATCH_UP = 5.0  # a scheduler whose previous pass is this recent fires every tick since it
MAX_SLEEP = 1.0  # a scheduler looks for new or removed schedules at least this often
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
EVERY = re.compile(r"(\d+)\s*([smhd]?)")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Schedule:
    """A schedule as users see it: its definition, when it fires next, what it last started."""

    name: str
    workflow: str
    cron: str | None
    every: int | None  # seconds
    input: dict[str, Any]
    grace: float
    created: float
    next_fire: float | None
    last_tick: float | None
    last_run: str | None

    @property
    def when(self) -> str:
        """``cron */5 * * * *`` or ``every 30s``."""
        return f"cron {self.cron}" if self.cron is not None else f"every {self.every}s"


@dataclass(frozen=True)
class Fired:
    """One tick submitted by a scheduler; ``first``: this scheduler noted the run first."""

    name: str
    tick: float
    run_id: str
    first: bool


# --- times ---------------------------------------------------------------------------------


def parse_every(text: str | int) -> int:
    """``30``, ``30s``, ``5m``, ``2h``, ``1d`` as whole seconds (at least 1)."""
    match = EVERY.fullmatch(str(text).strip())
    seconds = int(match.group(1)) * UNITS[match.group(2)] if match else 0
    if seconds < 1:
        raise InvalidInputError(
            f"bad interval {text!r}: whole seconds, at least 1, e.g. 30s, 5m, 2h, 1d"
        )
    return seconds


def check_cron(expr: str) -> str:
    """``expr`` normalised, if croniter takes it: 5 fields, or 6 with seconds first."""
    expr = " ".join(expr.split())
    fields = len(expr.split())
    ok = fields in (5, 6) or (fields == 1 and expr.startswith("@"))
    if ok:
        try:
            croniter(expr, 0.0, second_at_beginning=fields == 6).get_next(float)
        except (CroniterError, ValueError, KeyError):
            ok = False
    if not ok:
        raise InvalidInputError(
            f"bad cron expression {expr!r}: 5 fields (minute hour day month weekday), "
            "or 6 with seconds first"
        )
    return expr


def _cron(expr: str, start: float) -> croniter:
    return croniter(expr, start, second_at_beginning=len(expr.split()) == 6)


def next_tick(record: ScheduleRecord, after: float) -> float:
    """The first tick strictly after ``after``."""
    if record.every is not None:
        return (math.floor(after / record.every) + 1) * float(record.every)
    assert record.cron is not None
    return float(_cron(record.cron, after).get_next(float))


def latest_tick(record: ScheduleRecord, upto: float) -> float:
    """The last tick at or before ``upto``."""
    if record.every is not None:
        return math.floor(upto / record.every) * float(record.every)
    assert record.cron is not None
    before = float(_cron(record.cron, upto).get_prev(float))  # strictly before ``upto``
    after = next_tick(record, before)
    return after if after <= upto else before


def ticks(record: ScheduleRecord, after: float, upto: float) -> list[float]:
    """Every tick in ``(after, upto]``, oldest first."""
    out: list[float] = []
    tick = next_tick(record, after)
    while tick <= upto:
        out.append(tick)
        tick = next_tick(record, tick)
    return out


def due_ticks(record: ScheduleRecord, now: float, previous: float | None) -> list[float]:
    """The ticks a scheduler fires at ``now``, its previous pass over ``record`` at ``previous``.

    The missed-tick policy: a tick fires only if it is after the schedule's creation and at
    most ``grace`` seconds old. A scheduler that passed less than ``CATCH_UP`` seconds ago
    fires every tick since (a slow pass skips none); one that just started, or comes back
    after an outage, fires only the latest tick: missed ticks are not replayed."""
    floor = max(record.created, now - record.grace)
    if previous is not None and now - previous <= CATCH_UP:
        return ticks(record, max(previous, floor), now)
    tick = latest_tick(record, now)
    return [tick] if tick > floor else []


def tick_text(tick: float) -> str:
    """A tick as in its idempotency key: UTC, ISO 8601, to the second."""
    return datetime.fromtimestamp(tick, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def idempotency_key(name: str, tick: float) -> str:
    """The key a tick's run is submitted with: ``schedule:<name>:<tick>``."""
    return f"schedule:{name}:{tick_text(tick)}"


# --- the API -------------------------------------------------------------------------------


class Schedules:
    """``Client().schedules``: add, list, get and remove schedules, and see the runs they start.

    Bad input is one :class:`InvalidInputError` and writes nothing: a bad name or a name in
    use, not exactly one of ``cron`` and ``every``, a bad cron expression or interval, an
    unknown workflow, a start payload its start event rejects, a grace outside retention."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def add(
        self,
        name: str,
        workflow: str | type[Workflow],
        start: Mapping[str, Any] | StartEvent | None = None,
        *,
        cron: str | None = None,
        every: str | int | None = None,
        grace: float = DEFAULT_GRACE,
    ) -> Schedule:
        """Add a schedule that starts ``workflow`` with ``start`` (its start event's fields,
        or the event) on each ``cron`` tick or ``every`` interval (``30s``, ``5m``, ...)."""
        rt = self.client.runtime
        if not NAME.fullmatch(name):
            raise InvalidInputError(
                f"bad schedule name {name!r}: letters, digits, '_', '.', '-' (100 at most)"
            )
        if (cron is None) == (every is None):
            raise InvalidInputError("a schedule needs exactly one of cron and every")
        expr = None if cron is None else check_cron(cron)
        seconds = None if every is None else parse_every(every)
        flow = workflow if isinstance(workflow, str) else workflow.name
        cls = require_workflow(flow)
        require_constructible(cls)
        if isinstance(start, StartEvent):
            cls.make_start_event(start)
            data = start.model_dump(mode="json")
        else:
            data = dict(start or {})
            cls.make_start_event(None, **data)
        retention = rt.settings.retention_seconds
        if not 0 < grace < retention:
            raise InvalidInputError(
                f"grace must be above 0 and below retention ({retention}s), not {grace}"
            )
        record = ScheduleRecord(
            name, flow, expr, seconds, store.server_time(rt), float(grace), data
        )
        try:
            record.to_json()
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"the input of schedule {name!r} is not JSON: {exc}") from exc
        if not store.add(rt, record):
            raise InvalidInputError(
                f"a schedule named {name!r} exists (remove it first: baton schedule remove)"
            )
        return self._view(record, record.created)

    def list(self) -> builtins.list[Schedule]:
        """Every schedule, by name, with its next fire time and last run."""
        rt = self.client.runtime
        now = store.server_time(rt)
        return [self._view(r, now) for r in store.all_schedules(rt)]

    def get(self, name: str) -> Schedule:
        for schedule in self.list():
            if schedule.name == name:
                return schedule
        raise InvalidInputError(f"no schedule named {name!r}")

    def remove(self, name: str) -> None:
        """Delete the schedule (the runs it started stay); an unknown name is an error."""
        if not store.remove(self.client.runtime, name):
            raise InvalidInputError(f"no schedule named {name!r}")

    def runs(self, name: str, limit: int = 20) -> builtins.list[tuple[float, str]]:
        """The runs the schedule started, newest first: (tick, run id)."""
        return store.started_runs(self.client.runtime, name, limit)

    def _view(self, record: ScheduleRecord, now: float) -> Schedule:
        last = store.started_runs(self.client.runtime, record.name, 1)
        return Schedule(
            record.name,
            record.workflow,
            record.cron,
            record.every,
            record.input,
            record.grace,
            record.created,
            next_tick(record, max(now, record.created)),
            last[0][0] if last else None,
            last[0][1] if last else None,
        )


# --- the scheduler -------------------------------------------------------------------------


class Scheduler:
    """One scheduler process's loop. Any number may run against one Redis: they share no
    state but the runs' idempotency keys.

    ``clock`` (Redis's time by default, so schedulers on hosts with skewed clocks agree) and
    ``log`` (one line per event) are injectable."""

    def __init__(
        self,
        client: Client,
        clock: Callable[[], float] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.client = client
        self.clock = clock or (lambda: store.server_time(client.runtime))
        self.log = log
        self.passed: dict[str, float] = {}  # schedule name -> this process's previous pass
        self.next_due: float | None = None

    def run_pass(self) -> list[Fired]:
        """Fire what is due now; a Redis outage raises ``StoreUnavailableError``."""
        rt = self.client.runtime
        records = store.all_schedules(rt)
        now = self.clock()
        fired: list[Fired] = []
        for record in records:
            for tick in due_ticks(record, now, self.passed.get(record.name)):
                try:
                    fired.append(self.fire(record, tick))
                except StoreUnavailableError:
                    raise
                except BatonError as exc:
                    self.log(f"error: schedule {record.name} tick {tick_text(tick)}: {exc}")
        self.passed = {r.name: now for r in records}
        self.next_due = min((next_tick(r, now) for r in records), default=None)
        return fired

    def fire(self, record: ScheduleRecord, tick: float) -> Fired:
        """Submit ``tick``'s run (exactly once over all schedulers, by its idempotency key)."""
        cls = require_workflow(record.workflow)
        start = cls.make_start_event(None, **record.input)
        key = idempotency_key(record.name, tick)
        handle = self.client.submit(record.workflow, start, idempotency_key=key)
        first = store.record_run(self.client.runtime, record.name, tick, handle.run_id)
        if first:
            self.log(f"{tick_text(tick)} {record.name}: started run {handle.run_id}")
        return Fired(record.name, tick, handle.run_id, first)

    def run_forever(self, stop: threading.Event, heartbeat: Path | None = None) -> None:
        """Pass until ``stop`` is set: wake at the next tick (or every ``MAX_SLEEP``); after
        each good pass touch ``heartbeat`` (a container healthcheck reads its age)."""
        ready = False
        while not stop.is_set():
            wait = MAX_SLEEP
            try:
                self.run_pass()
                if self.next_due is not None:
                    wait = min(MAX_SLEEP, max(self.next_due - self.clock(), 0.0) + 0.001)
            except BatonError as exc:  # Redis down, or a damaged record: say so, go on
                self.log(f"error: {exc.message} (retrying)")
                stop.wait(MAX_SLEEP)
                continue
            if heartbeat is not None:
                heartbeat.touch()
            if not ready:
                self.log("baton scheduler ready")
                ready = True
            stop.wait(wait)

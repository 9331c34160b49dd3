"""Submitting the chaos runs and following them: client threads, the bot, the fault thread.

Each client thread submits its share of the runs at a steady rate (at most ``window`` young
runs in flight) and polls them until they end; the bot answers every input request of the
human-in-the-loop runs; the fault thread spreads the faults evenly over the submission time.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.client import Client, RunHandle
from tests.chaos.cluster import Cluster, fault_schedule
from tests.chaos.flows import ChaosAnswer, ChaosAsk, RunPlan, bot_reply, plan_run
from tests.chaos.record import ChaosConfig
from workflows import BatonError, InvalidInputError, StoreUnavailableError
from workflows.codec import decode_event

POLL = 0.1  # seconds between polls of a run's status (polling a condition, not synchronising)
STALL = 30.0  # a run in flight longer than this stops holding a slot of its client's window
MIX = {  # run kind -> weight
    "gather": 3,
    "fanout": 3,
    "nested": 3,
    "hitl": 2,
    "hitl_child": 2,
    "retry": 3,
    "sleep": 3,
    "doomed": 1,
}


@dataclass
class Outcome:
    """A planned run and how it ended, as the clients saw it."""

    plan: RunPlan
    index: int
    run_id: str | None = None
    submitted_at: float = 0.0  # monotonic
    status: str | None = None  # completed / failed / cancelled; None: not seen ending
    result: Any = None
    error: str | None = None
    ends: int = 0  # end entries in its stream
    vanished: bool = False  # its run hash disappeared while it was running


def make_plans(cfg: ChaosConfig) -> list[RunPlan]:
    """The runs of this setting, the same for the same seed."""
    rng = random.Random(cfg.seed)
    kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=cfg.runs)
    return [plan_run(kind, f"r{i:05d}", rng.randint(1, 999)) for i, kind in enumerate(kinds)]


class Driver:
    """Client threads submitting at a steady rate, a bot answering input requests, and the
    fault thread; :meth:`run` returns once every run ended or the deadline passed."""

    def __init__(self, cfg: ChaosConfig, cluster: Cluster, outcomes: list[Outcome]) -> None:
        self.cfg, self.cluster, self.outcomes = cfg, cluster, outcomes
        self.settings = cluster.settings()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.deadline: float | None = None
        self.submitted = 0
        self.faults_done = False
        self.client_errors: Counter[str] = Counter()
        self.suite_errors: list[str] = []
        self.bot = Bot(Client(self.settings), self.stop)

    def run(self) -> None:
        clients = [
            self._thread(f"client{i}", self._drive, self.outcomes[i :: self.cfg.clients])
            for i in range(self.cfg.clients)
        ]
        helpers = [self._thread("bot", self.bot.loop), self._thread("faults", self._faults)]
        for thread in [*clients, *helpers]:
            thread.start()
        self._watch(clients)
        self.stop.set()
        for thread in [*clients, *helpers]:
            thread.join()

    def _thread(self, name: str, fn: Callable[..., None], *args: Any) -> threading.Thread:
        def body() -> None:
            try:
                fn(*args)
            except Exception as exc:  # a broken suite thread must show, not hang the run
                self.suite_errors.append(f"{name}: {exc!r}")
                self.stop.set()

        return threading.Thread(target=body, name=f"chaos-{name}", daemon=True)

    def _watch(self, clients: list[threading.Thread]) -> None:
        """Set the deadline once everything is submitted and every fault injected; report."""
        last_report = 0.0
        while any(t.is_alive() for t in clients):
            self.stop.wait(1.0)  # the main thread's polling interval
            everything_sent = self.submitted == len(self.outcomes) and self.faults_done
            if self.deadline is None and everything_sent:
                self.deadline = time.monotonic() + self.cfg.grace
            if time.monotonic() - last_report >= 10:
                last_report = time.monotonic()
                self._report()

    def _report(self) -> None:
        ended = sum(o.status is not None or o.vanished for o in self.outcomes)
        faults = sum(self.cluster.faults.values())
        elapsed = time.monotonic() - self.started
        print(
            f"[chaos {elapsed:6.1f}s] submitted {self.submitted}/{len(self.outcomes)}, "
            f"ended {ended}, faults {faults}/{self.cfg.faults}",
            file=sys.stderr,
            flush=True,
        )

    def _expired(self) -> bool:
        return self.stop.is_set() or (
            self.deadline is not None and time.monotonic() > self.deadline
        )

    def _due(self, index: int) -> float:
        return self.started + index * self.cfg.duration / max(1, self.cfg.runs)

    def _drive(self, todo: list[Outcome]) -> None:
        """One client: submit each run at its time (fewer if its window is full), follow them."""
        client = Client(self.settings)
        queue: deque[Outcome] = deque(todo)
        watching: list[Outcome] = []
        while (queue or watching) and not self._expired():
            while queue and self._may_submit(queue[0], watching):
                if not self._submit(client, queue[0]):
                    break
                watching.append(queue.popleft())
            watching = [o for o in watching if not self._settled(client, o)]
            self.stop.wait(POLL)

    def _may_submit(self, outcome: Outcome, watching: list[Outcome]) -> bool:
        young = sum(time.monotonic() - o.submitted_at < STALL for o in watching)
        return time.monotonic() >= self._due(outcome.index) and young < self.cfg.window

    def _submit(self, client: Client, outcome: Outcome) -> bool:
        plan = outcome.plan
        try:  # the idempotency key makes a retry safe when the first reply was lost
            handle = client.submit(
                plan.workflow, idempotency_key=plan.label, label=plan.label, x=plan.x
            )
        except Exception as exc:
            self._client_error("submit", exc)
            return False
        outcome.run_id, outcome.submitted_at = handle.run_id, time.monotonic()
        with self.lock:
            self.submitted += 1
        if plan.reply is not None:
            self.bot.watch(handle.run_id)
        return True

    def _settled(self, client: Client, outcome: Outcome) -> bool:
        """True once the run ended (its outcome recorded) or its hash vanished."""
        assert outcome.run_id is not None
        handle = client.get(outcome.run_id)
        try:
            status = handle.status()
            if status == "running":
                return False
            outcome.ends = end_entries(handle)
            outcome.result, outcome.error = _outcome(handle, status)
        except InvalidInputError:  # no run hash: Redis lost it (a restart under everysec)
            outcome.vanished = True
        except Exception as exc:  # Redis down or frozen: ask again next round
            self._client_error("poll", exc)
            return False
        else:
            outcome.status = status
        self.bot.forget(outcome.run_id)
        return True

    def _client_error(self, what: str, exc: Exception) -> None:
        with self.lock:
            self.client_errors[f"{what}: {type(exc).__name__}"] += 1

    def _faults(self) -> None:
        """Inject the faults at even intervals over the submission time."""
        rng = random.Random(self.cfg.seed + 1)
        kinds = fault_schedule(self.cfg.faults, rng, self.cfg.fault_kinds)
        rt = Client(self.settings).runtime
        for k, kind in enumerate(kinds):
            due = self.started + (k + 1) * self.cfg.duration / (len(kinds) + 1)
            while time.monotonic() < due and not self.stop.is_set():
                self.stop.wait(POLL)  # pacing between faults
            if self.stop.is_set():
                return
            print(f"[chaos] fault {k + 1}/{len(kinds)}: {kind}", file=sys.stderr, flush=True)
            self.cluster.inject(kind, rng, rt)
        self.faults_done = True


def end_entries(handle: RunHandle) -> int:
    """How many end entries ("stop", "failed", "cancelled") the run's stream holds."""
    return sum(e["kind"] in ("stop", "failed", "cancelled") for e in handle.timeline())


def _outcome(handle: RunHandle, status: str) -> tuple[Any, str | None]:
    if status == "completed":
        try:
            return handle.result(timeout=5), None
        except BatonError as exc:
            return None, f"completed, yet no result: {exc}"
    error = handle.info().error
    return None, f"{error.type}: {error.message}" if error else status


class Bot:
    """Answers every input request of the runs it watches (a person, automated)."""

    def __init__(self, client: Client, stop: threading.Event) -> None:
        self.client, self.stop = client, stop
        self.lock = threading.Lock()
        self.pending: dict[str, set[str]] = {}  # run id -> ids of the requests answered
        self.errors: list[str] = []

    def watch(self, run_id: str) -> None:
        with self.lock:
            self.pending[run_id] = set()

    def forget(self, run_id: str) -> None:
        with self.lock:
            self.pending.pop(run_id, None)

    def loop(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                runs = list(self.pending.items())
            for run_id, answered in runs:
                self._answer(self.client.get(run_id), answered)
            self.stop.wait(POLL)  # polling the watched streams

    def _answer(self, handle: RunHandle, answered: set[str]) -> None:
        """Answer the run's input requests not answered yet (each once)."""
        try:
            entries = handle.timeline()
        except BatonError:  # Redis down or frozen; or the run vanished (the client notes it)
            return
        for entry in entries:
            if entry["kind"] != "input" or entry["id"] in answered:
                continue
            try:
                ask = decode_event(entry["data"])
                assert isinstance(ask, ChaosAsk), f"unexpected input request {ask!r}"
                handle.send_event(ChaosAnswer(reply=bot_reply(ask.label)))
            except StoreUnavailableError:
                return  # try again next round
            except BatonError as exc:  # e.g. the waiter was taken by a send whose reply was lost
                self.errors.append(f"{handle.run_id}: {type(exc).__name__}: {exc}"[:300])
            answered.add(entry["id"])

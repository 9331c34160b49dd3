"""Counting what went wrong, from the clients' outcomes, the effects file, Redis and the logs."""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from app.client import Client
from tasks.runtime import Runtime
from tests.chaos.driver import Outcome, end_entries
from tests.chaos.record import ChaosResult
from tests.harness import eventually
from workflows import BatonError
from workflows.tools import get_tool

RETENTION_MARGIN = 5.0  # seconds past the retention before leftover keys count


def judge(
    outcomes: list[Outcome], result: ChaosResult, diagnose: Callable[[str], str] | None = None
) -> None:
    """Completed right, failed as meant, lost, or finished twice / with a wrong result
    (the first 20 problems listed, with ``diagnose(run_id)`` appended when given)."""
    for o in outcomes:
        plan, problem = o.plan, None
        if o.run_id is None:
            problem = "lost: could not be submitted"
        elif o.vanished:
            problem = "lost: its run hash vanished while it ran"
        elif o.status is None:
            problem = "lost: did not end within the deadline"
        elif o.status != plan.status:
            problem = f"lost: ended {o.status}, expected {plan.status} ({o.error})"
        result.runs_submitted += o.run_id is not None
        if problem is None and o.ends > 1:
            result.runs_finished_twice += 1
            problem = f"finished twice: {o.ends} end entries"
        elif problem is None and plan.status == "completed" and (wrong := _wrong(o)):
            result.runs_finished_twice += 1
            result.wrong_results += 1
            problem = f"wrong result: {wrong}"
        elif problem is None:
            result.runs_completed += plan.status == "completed"
            result.runs_failed_as_expected += plan.status == "failed"
        else:
            result.runs_lost += 1
        if problem is not None and len(result.problems) < 20:
            if diagnose is not None and o.run_id is not None:
                problem += f" [{diagnose(o.run_id)}]"
            result.problems.append(f"{plan.label} {plan.kind} run {o.run_id}: {problem}")


def diagnose(rt: Runtime, run_id: str) -> str:
    """Where a run stands in Redis: status, messages in flight, parked steps, its last log
    entries and its children (what a developer looks at first)."""
    r, k = rt.redis, rt.keys
    try:
        parts = [_standing(rt, run_id)]
        kinds = [fields.get("k") for _, fields in r.xrevrange(k.events(run_id), count=5)]
        parts.append(f"last entries {kinds[::-1]}")
        parts += [f"child {c}: {_standing(rt, c)}" for c in sorted(r.smembers(k.children(run_id)))]
    except Exception as exc:  # Redis trouble while diagnosing: say so, don't fail the count
        return f"no diagnosis: {exc!r}"
    return "; ".join(parts)


def _standing(rt: Runtime, run_id: str) -> str:
    r, k = rt.redis, rt.keys
    status = r.hget(k.run(run_id), "status") or "no run hash"
    parked = sum(1 for _ in r.scan_iter(match=k.wait(run_id, "*"), count=1000))
    return f"{status}, {r.hlen(k.inflight(run_id))} in flight, {parked} parked"


def _wrong(o: Outcome) -> str | None:
    plan, got = o.plan, o.result
    if not isinstance(got, dict):
        return f"{got!r}"[:200]
    tokens = got.get("tokens")
    if got.get("value") != plan.value:
        return f"value {got.get('value')!r}, expected {plan.value}"
    if not isinstance(tokens, dict) or set(tokens) != plan.call_keys:
        return f"answered calls {sorted(tokens or [])}, expected {sorted(plan.call_keys)}"
    if plan.reply is not None and got.get("reply") != plan.reply:
        return f"reply {got.get('reply')!r}, expected {plan.reply!r}"
    return None


def recheck_ends(outcomes: list[Outcome], client: Client) -> None:
    """Count end entries again, now that every late message was handled (for the runs not
    yet expired: a second end written later would show here)."""
    for o in outcomes:
        if o.status is None or o.run_id is None:
            continue
        try:
            o.ends = max(o.ends, end_entries(client.get(o.run_id)))
        except BatonError:
            continue


def effects(path: Path, outcomes: list[Outcome], result: ChaosResult) -> None:
    """From the tools' log: executions started after the execution whose token the workflow
    received had ended, and calls executed more often than their retry policy allows."""
    starts: dict[str, list[float]] = {}
    ends: dict[str, float] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        kind, key, what, ts = line.split()
        if kind == "start":
            starts.setdefault(key, []).append(float(ts))
        elif kind == "end":
            ends[what] = float(ts)
    for o in outcomes:
        tokens = o.result.get("tokens") if isinstance(o.result, dict) else None
        for key, token in (tokens or {}).items():
            if token not in ends:
                result.unknown_tokens += 1
                continue
            result.executed_after_answer += sum(t > ends[token] for t in starts.get(key, []))
    for key, times in starts.items():
        allowed = get_tool(key.split("/", 1)[0]).retry.max_attempts
        if len(times) > allowed:
            result.calls_over_policy += 1
            result.extra_executions += len(times) - allowed


def queue_lengths(rt: Runtime) -> dict[str, int]:
    """Messages waiting in every queue list under the prefix, and kombu's unacked hash."""
    r, out = rt.redis, {}
    for key in r.scan_iter(match=f"{rt.keys.broker_prefix()}*", count=1000):
        kind = r.type(key)
        if kind == "list":
            out[key] = int(r.llen(key))
        elif key == rt.keys.unacked():
            out[key] = int(r.hlen(key))
    return {k: v for k, v in out.items() if v}


def settle(rt: Runtime, timeout: float) -> dict[str, int]:
    """Wait until queues and the unacked hash are empty (late acks: nothing runs any more),
    or the timeout; what is left then is duplicates nobody will consume."""
    with contextlib.suppress(AssertionError):
        eventually(lambda: not queue_lengths(rt), timeout=timeout, interval=0.5)
    return queue_lengths(rt)


def excluded(rt: Runtime, key: str) -> bool:
    """Keys that are no run's data, so they may outlive the retention (each one why)."""
    broker = rt.keys.broker_prefix()
    if key.startswith(f"{broker}_kombu.binding"):
        return True  # kombu's exchange -> queue bindings: one per exchange, made at start-up
    ttl = int(rt.redis.ttl(key))
    if key == f"{broker}unacked_mutex" and ttl > 0:
        return True  # kombu's lock while restoring unacked messages; expires by itself
    if key == rt.keys.reaper_lock() and ttl > 0:
        return True  # a live worker's reaper holds it while it sweeps (seconds, with a TTL)
    if (key == rt.keys.workers() or key.startswith(rt.keys.worker(""))) and ttl > 0:
        return True  # a live worker's registry record: renewed by its heartbeat, else expires
    if key == rt.keys.relays():
        return True  # the outbox relays' names (``tasks.relay``): one per relay, swept when dead
    if key.startswith(rt.keys.relay_alive("")) and ttl > 0:
        return True  # a live outbox relay's check-in: renewed, else expires
    if key == rt.keys.metrics():
        return True  # the metrics counters: bounded by names x outcomes x buckets, and kept
    if rt.keys.buckets and key == rt.keys.bucket_count():
        return True  # a cluster's bucket count, recorded by the first worker, for good
    return key == rt.keys.dead_letters() and ttl > 0  # the dead-letter list, if it expires


def leftover_keys(rt: Runtime) -> tuple[list[str], list[str]]:
    keys = sorted(rt.redis.scan_iter(match=f"{rt.settings.key_prefix}:*", count=1000))
    skipped = [k for k in keys if excluded(rt, k)]
    return [k for k in keys if k not in skipped], skipped


def wait_for_retention(rt: Runtime, since: float) -> tuple[list[str], list[str]]:
    """Every run's keys must be gone ``retention`` seconds after the last write (``since``,
    monotonic); stop waiting early when only excluded keys are left."""
    left = since + rt.settings.retention_seconds + RETENTION_MARGIN - time.monotonic()
    with contextlib.suppress(AssertionError):
        eventually(lambda: not leftover_keys(rt)[0], timeout=max(left, 0.1), interval=1.0)
    return leftover_keys(rt)


def shapes(rt: Runtime, keys: list[str]) -> dict[str, int]:
    """Leftover keys by shape (``run:{id}:dlv``) and the status of their run: which write
    leaks, and whether its run ended (a lost run's keys never get a TTL)."""
    prefix = rt.settings.key_prefix
    status: dict[str, str] = {}
    counts: Counter[str] = Counter()
    for key in keys:
        m = re.match(rf"{re.escape(prefix)}:run:([^:]+)(:[^:]+)?", key)
        if m is None:
            counts[key.removeprefix(f"{prefix}:")] += 1
            continue
        run_id = m.group(1)
        if run_id not in status:
            status[run_id] = rt.redis.hget(rt.keys.run(run_id), "status") or "no run hash"
        counts[f"run:{{id}}{m.group(2) or ''} (run {status[run_id]})"] += 1
    return dict(counts.most_common())


def describe(rt: Runtime, keys: list[str]) -> list[str]:
    """``key (type, ttl, entries)`` for the report: what leaks, and how much."""
    r = rt.redis
    sizes = {"list": r.llen, "hash": r.hlen, "set": r.scard, "zset": r.zcard, "stream": r.xlen}
    out = []
    for key in keys[:20]:
        kind = r.type(key)
        entries = f", {sizes[kind](key)} entries" if kind in sizes else ""
        out.append(f"{key} ({kind}, ttl {r.ttl(key)}{entries})")
    return out


# Celery's "[2025-01-01 12:00:00,123: " prefix, ids and durations: masked so that equal lines
# from different tasks count as one
LOG_NOISE = re.compile(r"\b[0-9a-f]{32}\b|\b[0-9a-f-]{36}\b|\d+(\.\d+)?s\b|\b\d{4,}\b")
LOG_STAMP = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,.]+: ")
ERROR_LINE = r"ERROR/|CRITICAL/|Unrecoverable|^\w+(\.\w+)*(Error|Exception)\b"
WARNING_LINE = r"WARNING/"


def log_lines(workdir: Path, pattern: str) -> list[str]:
    """Distinct worker-log lines matching ``pattern`` (ids and times masked), most frequent
    first: the evidence a developer starts from (the logs themselves stay in the work dir
    when something failed)."""
    counts: Counter[str] = Counter()
    for log in sorted(workdir.glob("chaos-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if re.search(pattern, line):
                text = LOG_NOISE.sub("<n>", LOG_STAMP.sub("[", line.strip()))
                counts[text[:240]] += 1
    return [f"{n} x {line}" for line, n in counts.most_common(15)]

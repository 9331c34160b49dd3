"""The read side of the store: what the client, the CLI and metrics may ask Redis.

``app/`` never talks to Redis itself; it calls these. Each function turns a lost or silent
Redis (``ConnectionError``, ``TimeoutError``, or any other refusal) into
:class:`StoreUnavailableError`, so callers
only ever handle Baton errors. Records are the typed ones of :mod:`tasks.protocol`.
"""

from __future__ import annotations

import heapq
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import redis
import redis.asyncio

from tasks import heartbeat
from tasks.cluster import cluster_client, is_cluster_url, node_url, on_node
from tasks.keys import Keys
from tasks.protocol import (
    DeadLetter,
    InflightRecord,
    LogEntry,
    RunRecord,
    Span,
    SpanKind,
    SpanOutcome,
    ToolArgs,
    WaiterRecord,
    parse_entry,
)
from tasks.protocol.workers import WorkerRecord
from workflows.errors import InvalidInputError, PayloadError, StoreUnavailableError

if TYPE_CHECKING:
    from tasks.runtime import Runtime

T = TypeVar("T")
DEFAULT_SCAN = 1000  # how many of the newest run ids ``recent_runs`` looks at, at least


@contextmanager
def store_errors() -> Iterator[None]:
    """Turn Redis being down or silent into a one-line :class:`StoreUnavailableError`."""
    try:
        yield
    except redis.TimeoutError as exc:
        raise StoreUnavailableError(f"Redis did not answer in time: {_one_line(exc)}") from exc
    except redis.ConnectionError as exc:
        raise StoreUnavailableError(f"Redis is unreachable: {_one_line(exc)}") from exc
    except redis.RedisError as exc:  # out of memory, read-only replica, ...: still one line
        raise StoreUnavailableError(f"Redis refused: {_one_line(exc)}") from exc


def guarded(fn: Callable[[], T]) -> T:
    """``fn()`` under :func:`store_errors` (for calls into run operations from ``app/``)."""
    with store_errors():
        return fn()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# --- runs ----------------------------------------------------------------------------------


def run_record(rt: Runtime, run_id: str) -> RunRecord | None:
    """The run's hash, or None if it was never created or has expired."""
    with store_errors():
        raw = rt.redis.hgetall(rt.keys.run(run_id))
    return RunRecord.parse(run_id, raw) if raw else None


def require_run(rt: Runtime, run_id: str) -> RunRecord:
    """The run's hash; an unknown run is bad input (the CLI's and client's one message)."""
    record = run_record(rt, run_id)
    if record is None:
        raise InvalidInputError(f"no run {run_id!r} (never submitted, or expired)")
    return record


def store_data(rt: Runtime, run_id: str) -> dict[str, str]:
    """A run's store as stored: key -> JSON text."""
    with store_errors():
        return dict(rt.redis.hgetall(rt.keys.store(run_id)))


def recent_runs(rt: Runtime, status: str | None = None, limit: int = 100) -> list[RunRecord]:
    """Newest runs first, only those in ``status`` if given; expired ones are skipped."""
    k = rt.keys
    with store_errors():
        ids = newest_run_ids(rt, max(limit * 10, DEFAULT_SCAN) + 1)
        states = _pipelined(rt, [("hget", k.run(i), "status") for i in ids])
        found = [(i, s) for i, s in zip(ids, states, strict=True) if s is not None]
        wanted = [i for i, s in found if status is None or s == status][:limit]
        raws = _pipelined(rt, [("hgetall", k.run(i)) for i in wanted])
    return [RunRecord.parse(i, raw) for i, raw in zip(wanted, raws, strict=True) if raw]


def status_counts(rt: Runtime, sample: int) -> Counter[str]:
    """How many of the latest ``sample`` runs are in each status."""
    with store_errors():
        ids = newest_run_ids(rt, max(sample, 1))
        states = _pipelined(rt, [("hget", rt.keys.run(str(i)), "status") for i in ids])
    return Counter(str(s) for s in states if s is not None)


def newest_run_ids(rt: Runtime, n: int) -> list[str]:
    """The ``n`` newest run ids of the runs index, newest first (every bucket's, merged)."""
    k = rt.keys
    buckets = list(k.all_buckets())
    if len(buckets) == 1:
        return [str(i) for i in rt.redis.zrevrange(k.runs(), 0, n - 1)]
    calls = [("zrevrange", k.runs(b), 0, n - 1, True) for b in buckets]  # with scores
    pairs = [(float(score), str(run_id)) for got in _pipelined(rt, calls) for run_id, score in got]
    return [run_id for _, run_id in heapq.nlargest(n, pairs)]


def _pipelined(rt: Runtime, calls: list[tuple[Any, ...]]) -> list[Any]:
    """Run ``(command, *args)`` calls in one round trip (no transaction)."""
    if not calls:
        return []
    pipe = rt.redis.pipeline(transaction=False)
    for name, *args in calls:
        getattr(pipe, name)(*args)
    return list(pipe.execute())


# --- waiters -------------------------------------------------------------------------------


def waiters(rt: Runtime, root_run_id: str) -> list[WaiterRecord]:
    """The steps of a root run and its children waiting for an external event (HITL).

    They live in the root run's hash only: pass the root's id (a run record's ``root``)."""
    with store_errors():
        raw = rt.redis.hgetall(rt.keys.waiters(root_run_id))
    return [WaiterRecord.from_json(str(raw[field])) for field in sorted(raw)]


# --- the run log ---------------------------------------------------------------------------


def log_entries(rt: Runtime, run_id: str) -> list[LogEntry]:
    """The run's whole event stream, oldest first."""
    with store_errors():
        raw = rt.redis.xrange(rt.keys.events(run_id))
    return [parse_entry(entry_id, fields) for entry_id, fields in raw]


def run_tree(rt: Runtime, run_id: str) -> list[str]:
    """The run and its children, their children...: a round trip per generation."""
    tree, level = [run_id], [run_id]
    with store_errors():
        while level:
            pipe = rt.redis.pipeline(transaction=False)
            for rid in level:
                pipe.smembers(rt.keys.children(rid))
            level = sorted({str(k) for kids in pipe.execute() for k in kids} - set(tree))
            tree += level
    return tree


def spans(rt: Runtime, run_id: str, children: bool = True) -> list[Span]:
    """The run's spans (and its children's, with ``children``), ordered by start."""
    ids = run_tree(rt, run_id) if children else [run_id]
    with store_errors():
        raws = _pipelined(rt, [("lrange", rt.keys.spans(rid), 0, -1) for rid in ids])
    found = [Span.from_json(text) for raw in raws for text in raw]
    return sorted(found, key=lambda s: (s.start, s.end))


@dataclass(frozen=True)
class Activity:
    """What a live run tree's messages are doing: how many wait on each queue (sent, never
    started) and how many started (running now, or about to be redelivered)."""

    queued: dict[str, int]
    started: int


def activity(rt: Runtime, run_id: str) -> Activity:
    """The in-flight messages of the run and its children, started or still queued."""
    ids = run_tree(rt, run_id)
    calls: list[tuple[Any, ...]] = []
    for rid in ids:
        calls += [("hgetall", rt.keys.inflight(rid)), ("hkeys", rt.keys.deliveries(rid))]
    with store_errors():
        raws = _pipelined(rt, calls)
    queued: Counter[str] = Counter()
    started = 0
    for inflight, delivered in zip(raws[::2], raws[1::2], strict=True):
        begun = set(delivered)
        for task_id, text in inflight.items():
            if task_id in begun:
                started += 1
            else:
                queued[InflightRecord.from_json(text).message.queue] += 1
    return Activity(dict(queued), started)


def limit_delayed(rt: Runtime, run_id: str) -> bool:
    """Whether the run tree has in-flight messages and every one is a tool call or a step
    delivery waiting for its rate or concurrency limit: its attempt's latest span is
    ``limited`` (it may also have just been released, and be on its queue)."""
    ids = run_tree(rt, run_id)
    calls: list[tuple[Any, ...]] = []
    for rid in ids:
        calls += [("hvals", rt.keys.inflight(rid)), ("lrange", rt.keys.spans(rid), 0, -1)]
    with store_errors():
        raws = _pipelined(rt, calls)
    latest: dict[tuple[SpanKind, str, str, int], Span] = {}
    pending = []
    for inflight, texts in zip(raws[::2], raws[1::2], strict=True):
        pending += [InflightRecord.from_json(text).message.args for text in inflight]
        for text in texts:
            span = Span.from_json(text)
            # a tool attempt is its call's; a step delivery its invocation's (no call)
            key = (span.kind, span.run, span.call or span.inv, span.attempt)
            if key not in latest or span.end >= latest[key].end:
                latest[key] = span
    if not pending:
        return False
    for a in pending:
        if isinstance(a, ToolArgs):
            last = latest.get((SpanKind.TOOL, a.run_id, a.call_id, a.attempt))
        else:
            last = latest.get((SpanKind.STEP, a.run_id, a.inv_id, a.attempt))
        if last is None or last.outcome is not SpanOutcome.LIMITED:
            return False
    return True


def sleeping_until(rt: Runtime, run_id: str) -> float | None:
    """When the run tree's next sleeping step wakes (wall clock), if any sleeps: a step whose
    latest delivery parked on ``ctx.sleep`` (its span carries ``until``) and has not woken."""
    latest: dict[tuple[str, str], Span] = {}
    for span in spans(rt, run_id):
        key = (span.run, span.inv)
        if span.kind is SpanKind.STEP and (key not in latest or span.end >= latest[key].end):
            latest[key] = span
    wakes = [
        s.until
        for s in latest.values()
        if s.outcome is SpanOutcome.SUSPENDED and s.until is not None and s.until > time.time()
    ]
    return min(wakes) if wakes else None


def live_workers(rt: Runtime) -> list[WorkerRecord]:
    """The workers whose heartbeat is fresh (``tasks.heartbeat``), by name."""
    with store_errors():
        return heartbeat.live_workers(rt)


def follow_log(
    rt: Runtime,
    run_id: str,
    after: str = "0-0",
    block_ms: int | None = None,
    count: int | None = None,
) -> list[LogEntry]:
    """Entries after the id ``after``; with ``block_ms``, wait up to that long for one."""
    with store_errors():
        key = rt.keys.events(run_id)
        # on a cluster, on its master's own client: XREAD's keys are not read locally
        got = on_node(rt.redis, key, lambda r: r.xread({key: after}, count=count, block=block_ms))
    return [parse_entry(i, fields) for _, entries in got or [] for i, fields in entries]


class AsyncLogReader:
    """Run logs and statuses read from asyncio code (the HTTP API's event streams): one
    connection pool shared by every reader, so an open stream costs no thread."""

    def __init__(self, rt: Runtime, max_connections: int | None = None) -> None:
        self._keys = rt.keys
        url = rt.settings.store_url
        self._redis: Any
        if is_cluster_url(url):
            self._redis = redis.asyncio.RedisCluster.from_url(
                node_url(url),
                max_connections=max_connections or rt.settings.redis_max_connections,
                socket_timeout=10,
                socket_connect_timeout=5,
                decode_responses=True,
            )
            return
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            rt.settings.store_url,
            max_connections=max_connections or rt.settings.redis_max_connections,
            timeout=10,
            socket_timeout=10,  # above the longest block of ``follow``
            socket_connect_timeout=5,
            socket_keepalive=True,
            health_check_interval=10,
            decode_responses=True,
        )
        self._redis = redis.asyncio.Redis(connection_pool=pool)

    async def follow(
        self, run_id: str, after: str = "0-0", block_ms: int | None = None, count: int = 500
    ) -> list[LogEntry]:
        """As :func:`follow_log`; ``block_ms`` should stay under 10 s (the socket timeout)."""
        with store_errors():
            got = await self._redis.xread(
                {self._keys.events(run_id): after}, count=count, block=block_ms
            )
        return [parse_entry(i, fields) for _, entries in got or [] for i, fields in entries]

    async def status(self, run_id: str) -> str | None:
        """The run's status, or None if it was never created or has expired."""
        with store_errors():
            value = await self._redis.hget(self._keys.run(run_id), "status")
        return None if value is None else str(value)

    async def close(self) -> None:
        await self._redis.aclose()


# --- dead letters, queues, the broker ------------------------------------------------------


def dead_letters(rt: Runtime, limit: int) -> tuple[int, list[DeadLetter]]:
    """How many dead letters there are, and the newest ``limit`` of them."""
    key = rt.keys.dead_letters()
    with store_errors():
        total, raw = _pipelined(rt, [("llen", key), ("lrange", key, 0, max(limit, 1) - 1)])
    return int(total), [_dead_letter(str(item)) for item in raw[: max(limit, 0)]]


def _dead_letter(text: str) -> DeadLetter:
    """An unreadable entry is shown as such: the list is where garbage lands."""
    try:
        return DeadLetter.from_json(text)
    except PayloadError as exc:
        return DeadLetter(f"unreadable dead letter: {exc.message}", {}, text)


@dataclass(frozen=True)
class StoreCounts:
    """Sizes read in one round trip for metrics."""

    queue_depths: dict[str, int]  # messages waiting per queue
    unacked: int  # messages taken by a worker and not yet acknowledged
    dead_letters: int
    runs_indexed: int  # run ids in the runs index (expired runs included)


def store_counts(rt: Runtime, queues: list[str]) -> StoreCounts:
    """Queue depths, unacknowledged messages, dead letters and the runs index's size."""
    k = rt.keys
    calls: list[tuple[Any, ...]] = [("llen", k.queue(q)) for q in queues]
    calls += [("hlen", k.unacked()), ("llen", k.dead_letters())]
    calls += [("zcard", k.runs(b)) for b in k.all_buckets()]
    with store_errors():
        got = _pipelined(rt, calls)
    depths, (unacked, dead) = got[: len(queues)], got[len(queues) : len(queues) + 2]
    indexed = got[len(queues) + 2 :]
    return StoreCounts(
        {q: int(n) for q, n in zip(queues, depths, strict=True)},
        int(unacked),
        int(dead),
        sum(int(n) for n in indexed),
    )


@dataclass(frozen=True)
class FlowCounts:
    """Timers and concurrency limits as metrics see them (``tasks.timers``, the limits)."""

    timers_pending: int  # delayed messages and sleeps in the timer set
    timers_overdue: int  # of those, due more than ``OVERDUE`` seconds ago (pumps behind)
    holders: dict[str, int]  # concurrency limit (``tool:key``) -> permits held
    waiting: dict[str, int]  # concurrency limit -> calls waiting for a permit
    outbox: int = 0  # messages not yet published to a separate broker (``tasks.relay``)


OVERDUE = 1.0  # seconds past due after which a timer counts as overdue


def flow_counts(rt: Runtime) -> FlowCounts:
    """The timer set's size and overdue part, and every concurrency limit in use: two round
    trips (the limits in use are named by their index)."""
    k = rt.keys
    with store_errors():
        now = rt.server_time()
        calls: list[tuple[Any, ...]] = []
        for b in k.all_buckets():
            calls += [
                ("zcard", k.timers(b)),
                ("zcount", k.timers(b), "-inf", now - OVERDUE),
                ("hkeys", k.concurrency_index(b)),
                ("llen", k.outbox(b)),
            ]
        got = _pipelined(rt, calls)
        pending, overdue = sum(map(int, got[0::4])), sum(map(int, got[1::4]))
        bases = [base for each in got[2::4] for base in each]
        outbox = sum(map(int, got[3::4]))
        calls = []
        for base in sorted(bases):
            calls += [("zcard", f"{base}:holders"), ("llen", f"{base}:waiting")]
        sizes = _pipelined(rt, calls)
    names = [_limit_name(k, str(b)) for b in sorted(bases)]
    return FlowCounts(
        int(pending),
        int(overdue),
        {n: int(h) for n, h in zip(names, sizes[::2], strict=True)},
        {n: int(w) for n, w in zip(names, sizes[1::2], strict=True)},
        int(outbox),
    )


def _limit_name(k: Keys, base: str) -> str:
    """A concurrency limit's base key as metrics name it: ``tool:NAME:KEY`` or ``step:...``."""
    rest = re.sub(r"^:\{\d+\}", "", base.removeprefix(k.prefix))  # a cluster's bucket tag
    for kind, head in (("step", ":limit:step:conc:"), ("tool", ":limit:conc:")):
        if rest.startswith(head):
            return f"{kind}:{rest.removeprefix(head)}"
    return base


# --- reachability --------------------------------------------------------------------------


def ping(url: str) -> None:
    """Check that the Redis at ``url`` answers; any Redis error is StoreUnavailableError.

    The message never contains the URL (it may hold a password)."""
    client = (
        cluster_client(url, socket_connect_timeout=1, socket_timeout=2)
        if is_cluster_url(url)
        else redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        raise StoreUnavailableError(f"Redis does not answer: {_one_line(exc)}") from exc
    finally:
        client.close()

"""Prometheus metrics in the text exposition format (0.0.4), read from the store by queries.

Flower's ``/metrics`` has no queue depth and no per-queue series (flower#1294), so Baton
exports its own: messages waiting per queue, unacknowledged messages, runs by status among
the latest runs, the dead-letter count, live workers and their slots per queue (from the
heartbeat registry), and per step and tool name duration histograms by outcome with counters
of failed and retried attempts (summed from every worker's spans by ``tasks.metric_counts``,
which flushes each process's counts every few seconds). ``baton metrics`` prints them;
``baton up`` serves them on ``BATON_METRICS_PORT``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tasks import metric_counts, queries
from tasks.protocol import RunStatus
from tasks.runtime import Runtime
from workflows.errors import StoreUnavailableError

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATUSES = tuple(s.value for s in RunStatus)
DEFAULT_SAMPLE = 1000


@dataclass
class Gauge:
    """One metric family: a name, its help text and its labelled values."""

    name: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)
    type: str = "gauge"

    def render(self) -> str:
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.type}"]
        lines += [_sample(self.name, labels, value) for labels, value in self.samples]
        return "\n".join(lines)


def counter(name: str, help: str, samples: list[tuple[dict[str, str], float]]) -> Gauge:
    """A counter family (its name ends in ``_total``; its values only grow)."""
    return Gauge(name, help, samples, "counter")


@dataclass
class Histogram:
    """A histogram family: per label set, cumulative ``_bucket{le}``, ``_sum`` and ``_count``."""

    name: str
    help: str
    series: list[tuple[dict[str, str], metric_counts.Series]] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} histogram"]
        for labels, s in self.series:
            for le, n in s.cumulative():
                lines.append(_sample(f"{self.name}_bucket", {**labels, "le": le}, float(n)))
            lines.append(_sample(f"{self.name}_sum", labels, s.sum))
            lines.append(_sample(f"{self.name}_count", labels, float(s.count)))
        return "\n".join(lines)


def _sample(name: str, labels: dict[str, str], value: float) -> str:
    inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
    return f"{name}{{{inner}}} {_number(value)}" if inner else f"{name} {_number(value)}"


def _number(value: float) -> str:
    """Whole numbers exactly (a counter past a million stays exact), others in full."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def queues(rt: Runtime) -> list[str]:
    """The topology's queues and those declared in code (the app's task queues)."""
    declared = {q.name for q in (rt.app.conf.task_queues or [])}
    return sorted({*rt.topology.queues, *declared})


def collect(rt: Runtime, sample: int = DEFAULT_SAMPLE) -> list[Gauge | Histogram]:
    """Read every gauge; if Redis is unreachable only ``baton_store_up 0`` is reported."""
    up = Gauge("baton_store_up", "1 if Redis answered this scrape, else 0.")
    try:
        gauges = _read(rt, sample)
    except StoreUnavailableError:
        up.samples.append(({}, 0))
        return [up]
    up.samples.append(({}, 1))
    return [up, *gauges]


def exposition(rt: Runtime, sample: int = DEFAULT_SAMPLE) -> str:
    """The whole scrape body."""
    return "\n".join(g.render() for g in collect(rt, sample)) + "\n"


def _read(rt: Runtime, sample: int) -> list[Gauge | Histogram]:
    counts = queries.store_counts(rt, queues(rt))
    depth = Gauge(
        "baton_queue_depth",
        "Messages waiting in a queue (not yet taken by a worker).",
        [({"queue": q}, float(n)) for q, n in counts.queue_depths.items()],
    )
    return [
        depth,
        Gauge(
            "baton_unacked_messages",
            "Messages taken by a worker and not yet acknowledged.",
            [({}, float(counts.unacked))],
        ),
        _runs_by_status(rt, sample),
        Gauge(
            "baton_runs_indexed",
            "Run ids in the runs index (expired runs included).",
            [({}, float(counts.runs_indexed))],
        ),
        Gauge(
            "baton_dead_letters",
            "Rejected messages kept in the dead-letter list.",
            [({}, float(counts.dead_letters))],
        ),
        *_workers(rt),
        *_flow(rt),
        *_spans(rt),
    ]


def _flow(rt: Runtime) -> list[Gauge]:
    """Timers waiting in Redis, and each concurrency limit's permits held and calls waiting."""
    flow = queries.flow_counts(rt)
    return [
        Gauge(
            "baton_timers_pending",
            "Delayed messages (retry backoff, limited calls) and sleeps in the timer set.",
            [({}, float(flow.timers_pending))],
        ),
        Gauge(
            "baton_timers_overdue",
            f"Timers due more than {queries.OVERDUE:g}s ago (the workers' pumps are behind).",
            [({}, float(flow.timers_overdue))],
        ),
        Gauge(
            "baton_outbox_pending",
            "Messages written for a separate broker and not yet published by a relay.",
            [({}, float(flow.outbox))],
        ),
        Gauge(
            "baton_limit_permits_held",
            "Permits held per concurrency limit (tool:NAME:KEY or step:NAME:KEY).",
            [({"limit": n}, float(v)) for n, v in flow.holders.items()],
        ),
        Gauge(
            "baton_limit_waiting",
            "Calls or steps waiting for a permit per concurrency limit (tool:NAME:KEY, step:...).",
            [({"limit": n}, float(v)) for n, v in flow.waiting.items()],
        ),
    ]


def _workers(rt: Runtime) -> list[Gauge]:
    """Live workers and their slots per queue; every known queue, 0 when none consumes it."""
    live = queries.live_workers(rt)
    names = sorted({*queues(rt), *(q for w in live for q in w.queues)})
    workers = dict.fromkeys(names, 0.0)
    slots = dict.fromkeys(names, 0.0)
    for w in live:
        for q in set(w.queues):
            workers[q] += 1
            slots[q] += w.concurrency
    return [
        Gauge(
            "baton_workers",
            "Live workers (fresh heartbeat) consuming a queue.",
            [({"queue": q}, n) for q, n in workers.items()],
        ),
        Gauge(
            "baton_worker_slots",
            "Summed concurrency of the live workers consuming a queue.",
            [({"queue": q}, n) for q, n in slots.items()],
        ),
    ]


def _spans(rt: Runtime) -> list[Gauge | Histogram]:
    """Duration histograms and failure/retry counters, from the spans every worker counted."""
    with queries.store_errors():
        series = metric_counts.read(rt)
    out: list[Gauge | Histogram] = []
    for kind in ("step", "tool"):
        mine = [s for s in series if s.kind == kind]
        what, whats = (
            ("step delivery", "Step deliveries")
            if kind == "step"
            else ("tool attempt", "Tool attempts")
        )
        out.append(
            Histogram(
                f"baton_{kind}_duration_seconds",
                f"Seconds per {what}, by {kind} name and outcome "
                "(completed, suspended, retry, failed, limited).",
                [({"name": s.name, "outcome": s.outcome}, s) for s in mine],
            )
        )
        names = sorted({s.name for s in mine})
        for outcome, family, verb in (
            ("failed", "failures", "failed"),
            ("retry", "retries", "were retried"),
            ("limited", "limited", "waited for a rate or concurrency limit"),
        ):
            totals = dict.fromkeys(names, 0.0)
            for s in mine:
                if s.outcome == outcome:
                    totals[s.name] += s.count
            out.append(
                counter(
                    f"baton_{kind}_{family}_total",
                    f"{whats} that {verb}, by {kind} name.",
                    [({"name": n}, v) for n, v in totals.items()],
                )
            )
    return out


def _runs_by_status(rt: Runtime, sample: int) -> Gauge:
    counts = queries.status_counts(rt, sample)
    statuses = [*STATUSES, *sorted(set(counts) - set(STATUSES))]
    return Gauge(
        "baton_runs",
        f"Runs by status among the latest {sample} runs.",
        [({"status": s}, float(counts[s])) for s in statuses],
    )


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n")


class MetricsServer:
    """``GET /metrics`` on a daemon thread; ``stop()`` shuts it down."""

    def __init__(self, rt: Runtime, port: int, host: str = "127.0.0.1") -> None:
        handler = _handler(rt)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.url = f"http://{host}:{self.httpd.server_address[1]}/metrics"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="baton-metrics", daemon=True
        )

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def _handler(rt: Runtime) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404)
                return
            body = exposition(rt).encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # scrapes are frequent; keep the console quiet

    return Handler

"""Prometheus metrics in the text exposition format (0.0.4), read from the store by queries.

Flower's ``/metrics`` has no queue depth and no per-queue series (flower#1294), so Baton
exports its own: messages waiting per queue, unacknowledged messages, runs by status among
the latest runs, and the dead-letter count. ``baton metrics`` prints them; ``baton up``
serves them on ``BATON_METRICS_PORT``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tasks import queries
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

    def render(self) -> str:
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} gauge"]
        for labels, value in self.samples:
            inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
            lines.append(f"{self.name}{{{inner}}} {value:g}" if inner else f"{self.name} {value:g}")
        return "\n".join(lines)


def queues(rt: Runtime) -> list[str]:
    """The topology's queues and those declared in code (the app's task queues)."""
    declared = {q.name for q in (rt.app.conf.task_queues or [])}
    return sorted({*rt.topology.queues, *declared})


def collect(rt: Runtime, sample: int = DEFAULT_SAMPLE) -> list[Gauge]:
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


def _read(rt: Runtime, sample: int) -> list[Gauge]:
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
    ]


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

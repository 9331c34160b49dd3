"""Step and tool metrics from real worker processes (issue "Operations you can trust", point 9).

Every step delivery and tool attempt a worker runs is counted in that process and flushed to
Redis every few seconds; the exporter renders duration histograms per name and outcome,
failure and retry counters, and live workers per queue.
"""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import metrics
from app.client import Client
from tasks.metric_counts import FLUSH_EVERY
from tasks.runtime import Runtime
from tests.harness import Worker, eventually
from tests.integration.tool_error_flows import TriesTool

pytestmark = pytest.mark.integration

Key = tuple[str, frozenset[tuple[str, str]]]
SPAN_FAMILIES = ("baton_step_", "baton_tool_")


def scrape(rt: Runtime) -> dict[Key, float]:
    """Every sample of the exporter's text, by name and labels."""
    text = metrics.exposition(rt)
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def key(metric: str, **labels: str) -> Key:
    return (metric, frozenset(labels.items()))


def settled(rt: Runtime) -> dict[Key, float]:
    """The span metrics once no worker has counts left to flush: two scrapes a flush apart
    agree (earlier tests' last observations may still be in flight)."""
    seen: list[dict[Key, float]] = []

    def check() -> tuple[dict[Key, float]] | None:
        now = {k: v for k, v in scrape(rt).items() if k[0].startswith(SPAN_FAMILIES)}
        same = bool(seen) and seen[-1] == now
        seen.append(now)
        return (now,) if same else None  # a tuple: no span counted yet is an answer too

    return eventually(check, timeout=60, interval=FLUSH_EVERY + 0.5, what="metrics settled")[0]


def test_step_and_tool_histograms_failures_retries_and_workers(
    client: Client, workers: Worker
) -> None:
    rt = client.runtime
    before = settled(rt)
    after: dict[Key, float] = {}

    def grown(k: Key) -> float:
        return after.get(k, 0.0) - before.get(k, 0.0)

    booms = [client.submit("Boom", label=f"metrics-{i}") for i in range(2)]
    tool = client.submit(TriesTool, tool="tef_add", params={"a": 2, "b": 3})
    assert tool.result(timeout=30)["ok"] is True
    eventually(lambda: all(b.status() == "failed" for b in booms), what="the Boom runs failed")

    expected = {
        # Retry(max_attempts=2): per run one attempt retried, one failed
        key("baton_step_retries_total", name="Boom.explode"): 2.0,
        key("baton_step_failures_total", name="Boom.explode"): 2.0,
        key("baton_step_duration_seconds_count", name="Boom.explode", outcome="retry"): 2.0,
        key("baton_step_duration_seconds_count", name="Boom.explode", outcome="failed"): 2.0,
        # the step parks on its call, then resumes with the answer
        key("baton_step_duration_seconds_count", name="TriesTool.answer", outcome="suspended"): 1.0,
        key("baton_step_duration_seconds_count", name="TriesTool.answer", outcome="completed"): 1.0,
        key("baton_tool_duration_seconds_count", name="tef_add", outcome="completed"): 1.0,
    }

    def arrived() -> bool:
        nonlocal after
        after = scrape(rt)
        return all(grown(k) >= v for k, v in expected.items())

    eventually(arrived, timeout=30, what="the runs' spans flushed")
    after = settled(rt)  # nothing more than that comes later
    assert {k: grown(k) for k in expected} == expected
    assert grown(key("baton_tool_failures_total", name="tef_add")) == 0
    assert grown(key("baton_tool_retries_total", name="tef_add")) == 0
    assert grown(key("baton_step_failures_total", name="TriesTool.answer")) == 0
    _check_histograms(after)

    samples = scrape(rt)
    assert samples[key("baton_workers", queue="itest")] >= 1
    assert samples[key("baton_worker_slots", queue="itest")] >= 4
    assert samples[key("baton_store_up")] == 1


def _check_histograms(samples: dict[Key, float]) -> None:
    """Buckets are cumulative and the ``+Inf`` one is the count, for every series."""
    series: dict[tuple[str, frozenset[tuple[str, str]]], list[tuple[float, float]]] = {}
    for (name, labels), value in samples.items():
        if name.endswith("_bucket"):
            rest = frozenset((k, v) for k, v in labels if k != "le")
            le = float(dict(labels)["le"])
            series.setdefault((name.removesuffix("_bucket"), rest), []).append((le, value))
    assert series
    for (family, labels), buckets in series.items():
        counts = [n for _, n in sorted(buckets)]
        assert counts == sorted(counts), (family, labels)
        assert counts[-1] == samples[(f"{family}_count", labels)], (family, labels)

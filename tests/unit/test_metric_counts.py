"""Step and tool metrics: in-process aggregation of spans, the flush to one Redis hash, and the
Prometheus rendering of what was flushed (histograms, failure and retry counters, workers)."""

from __future__ import annotations

import os
import threading
from typing import Any, cast

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import metrics
from tasks import metric_counts, queries
from tasks.keys import Keys
from tasks.metric_counts import BUCKETS, Recorder, fields_of, parse
from tasks.protocol import Span, SpanKind, SpanOutcome
from tasks.protocol.workers import WorkerRecord
from tasks.runtime import Runtime
from tests.harness import eventually


class FakeRedis:
    """HINCRBY, HINCRBYFLOAT and HGETALL, applied at ``execute``; ``down`` refuses them."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.down = False
        self.executed = 0
        self.lock = threading.Lock()

    def pipeline(self, transaction: bool = True) -> FakePipe:
        return FakePipe(self)

    def hgetall(self, key: str) -> dict[str, str]:
        return dict(self.hashes.get(key, {}))


class FakePipe:
    def __init__(self, r: FakeRedis) -> None:
        self.r, self.ops = r, cast(list[tuple[str, str, float]], [])

    def hincrby(self, key: str, f: str, v: int) -> None:
        self.ops.append((key, f, v))

    def hincrbyfloat(self, key: str, f: str, v: float) -> None:
        self.ops.append((key, f, v))

    def execute(self) -> None:
        if self.r.down:
            raise ConnectionError("redis is down")
        with self.r.lock:
            for key, f, v in self.ops:
                h = self.r.hashes.setdefault(key, {})
                old = float(h.get(f, "0"))
                h[f] = str(old + v) if f.endswith("sum") else str(int(old + v))
            self.r.executed += 1


class FakeRuntime:
    def __init__(self) -> None:
        self.keys = Keys("t")
        self.redis = FakeRedis()


def rt_of(fake: FakeRuntime) -> Runtime:
    return cast(Runtime, fake)


def span(
    name: str,
    seconds: float,
    outcome: SpanOutcome = SpanOutcome.COMPLETED,
    kind: SpanKind = SpanKind.STEP,
) -> Span:
    return Span(kind, name, "run", "inv", "", 1, "q", "w", 0.0, seconds, outcome)


def test_a_span_counts_once_in_the_first_bucket_its_duration_fits() -> None:
    base = "step\tFlow.go\tcompleted"
    assert fields_of(span("Flow.go", 0.005)) == {
        f"{base}\tcount": 1.0,
        f"{base}\tsum": pytest.approx(0.005),
        f"{base}\t0": 1.0,  # le is inclusive
    }
    assert f"{base}\t1" in fields_of(span("Flow.go", 0.006))
    assert f"{base}\t{len(BUCKETS) - 1}" in fields_of(span("Flow.go", 120.0))
    above = fields_of(span("Flow.go", 500.0))  # in +Inf (the count) only
    assert sorted(above) == [f"{base}\tcount", f"{base}\tsum"]


def test_observations_from_many_threads_are_flushed_exactly_once() -> None:
    fake, rec = FakeRuntime(), Recorder(every=3600)  # flushed by hand here

    def work() -> None:
        for i in range(500):
            rec.observe(rt_of(fake), span("Flow.go", 0.01 if i % 2 else 3.0))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert rec.flush() and rec.flush()  # the second has nothing left to add
    [s] = parse(fake.redis.hgetall("t:metrics"))
    assert (s.kind, s.name, s.outcome, s.count) == ("step", "Flow.go", "completed", 4000)
    assert s.sum == pytest.approx(2000 * 0.01 + 2000 * 3.0)
    assert s.buckets[BUCKETS.index(0.01)] == 2000 and s.buckets[BUCKETS.index(5.0)] == 2000
    assert sum(s.buckets) == 4000
    assert fake.redis.executed == 1
    rec.stopped.set()


def test_deltas_survive_a_failed_flush_and_go_out_with_the_next() -> None:
    fake, rec = FakeRuntime(), Recorder(every=3600)
    rec.observe(rt_of(fake), span("Flow.go", 0.2, SpanOutcome.RETRY))
    fake.redis.down = True
    assert not rec.flush()
    rec.observe(rt_of(fake), span("Flow.go", 0.3, SpanOutcome.RETRY))
    fake.redis.down = False
    assert rec.flush()
    [s] = parse(fake.redis.hgetall("t:metrics"))
    assert (s.outcome, s.count, s.buckets[BUCKETS.index(0.25)], s.buckets[BUCKETS.index(0.5)]) == (
        "retry",
        2,
        1,
        1,
    )
    rec.stopped.set()


def test_the_flusher_thread_starts_with_the_first_observation() -> None:
    fake, rec = FakeRuntime(), Recorder(every=0.01)
    assert rec.thread is None
    rec.observe(rt_of(fake), span("search", 1.5, SpanOutcome.FAILED, SpanKind.TOOL))
    got = eventually(lambda: parse(fake.redis.hgetall("t:metrics")), what="flushed")
    assert [(s.kind, s.name, s.outcome, s.count) for s in got] == [("tool", "search", "failed", 1)]
    rec.stopped.set()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_empty_with_a_flusher_of_its_own() -> None:
    fake, rec = FakeRuntime(), Recorder(every=3600)
    rec.observe(rt_of(fake), span("Flow.go", 0.1))
    pid = os.fork()
    if pid == 0:  # the child: the parent's delta is the parent's to flush
        ok = not rec.pending and rec.thread is None and rec.pid == os.getpid()
        rec.observe(rt_of(fake), span("Flow.go", 0.1))
        ok = ok and rec.thread is not None and rec.thread.is_alive()
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sum(d["step\tFlow.go\tcompleted\tcount"] for d in rec.pending.values()) == 1
    rec.stopped.set()


def test_unknown_fields_are_skipped() -> None:
    raw = {"junk": "1", "step\ta\tcompleted\tcount": "x", "step\ta\tcompleted\t99": "3"}
    [s] = parse(raw)
    assert s.count == 0 and sum(s.buckets) == 0


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_the_exporter_renders_cumulative_histograms_and_failure_retry_counters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, rec = FakeRuntime(), Recorder(every=3600)
    for seconds, outcome in [(0.02, SpanOutcome.RETRY), (0.7, SpanOutcome.FAILED)]:
        rec.observe(rt_of(fake), span("Boom.explode", seconds, outcome))
    for seconds in (0.004, 0.3, 200.0):
        rec.observe(rt_of(fake), span("Flow.go", seconds))
    rec.observe(rt_of(fake), span("search", 1.0, SpanOutcome.RETRY, SpanKind.TOOL))
    assert rec.flush()
    monkeypatch.setattr(queries, "live_workers", lambda rt: [])
    monkeypatch.setattr(metrics, "queues", lambda rt: [])
    text = "\n".join(f.render() for f in metrics._spans(rt_of(fake))) + "\n"
    fams = families(text)
    assert "# TYPE baton_step_duration_seconds histogram" in text
    steps = fams["baton_step_duration_seconds"]
    assert steps.type == "histogram"
    got = {
        (s.labels["name"], s.labels["outcome"], s.labels["le"]): s.value
        for s in steps.samples
        if s.name.endswith("_bucket")
    }
    assert got[("Flow.go", "completed", "0.005")] == 1
    assert got[("Flow.go", "completed", "0.25")] == 1
    assert got[("Flow.go", "completed", "0.5")] == 2
    assert got[("Flow.go", "completed", "120")] == 2
    assert got[("Flow.go", "completed", "+Inf")] == 3
    count = {
        (s.labels["name"], s.labels["outcome"]): s.value
        for s in steps.samples
        if s.name.endswith("_count")
    }
    assert count == {
        ("Boom.explode", "retry"): 1,
        ("Boom.explode", "failed"): 1,
        ("Flow.go", "completed"): 3,
    }
    total = next(
        s.value for s in steps.samples if s.name.endswith("_sum") and s.labels["name"] == "Flow.go"
    )
    assert total == pytest.approx(200.304)

    def values(family: str) -> dict[str, float]:
        return {s.labels["name"]: s.value for s in fams[family].samples}

    assert fams["baton_step_failures"].type == "counter"
    assert values("baton_step_failures") == {"Boom.explode": 1, "Flow.go": 0}
    assert values("baton_step_retries") == {"Boom.explode": 1, "Flow.go": 0}
    assert values("baton_tool_retries") == {"search": 1}
    assert values("baton_tool_failures") == {"search": 0}
    assert 'baton_tool_duration_seconds_count{name="search",outcome="retry"} 1' in text
    rec.stopped.set()


def test_no_observation_yet_still_declares_the_families(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "\n".join(f.render() for f in metrics._spans(rt_of(FakeRuntime())))
    for family in ("step", "tool"):
        assert f"# TYPE baton_{family}_duration_seconds histogram" in text
        assert f"# TYPE baton_{family}_failures_total counter" in text
        assert f"# TYPE baton_{family}_retries_total counter" in text


def worker(name: str, queues: tuple[str, ...], concurrency: int) -> WorkerRecord:
    return WorkerRecord(name, queues, "prefork", concurrency, 1, 0.0, 0.0)


def test_workers_and_slots_per_queue_include_queues_no_worker_consumes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    live = [worker("a@h", ("itest", "tools"), 4), worker("b@h", ("itest",), 2)]
    monkeypatch.setattr(queries, "live_workers", lambda rt: live)
    monkeypatch.setattr(metrics, "queues", lambda rt: ["baton", "itest", "tools"])
    text = "\n".join(g.render() for g in metrics._workers(rt_of(FakeRuntime()))) + "\n"
    fams = families(text)
    workers = {s.labels["queue"]: s.value for s in fams["baton_workers"].samples}
    slots = {s.labels["queue"]: s.value for s in fams["baton_worker_slots"].samples}
    assert workers == {"baton": 0, "itest": 2, "tools": 1}
    assert slots == {"baton": 0, "itest": 6, "tools": 4}


def test_large_counts_render_exactly() -> None:
    line = metrics._sample("x_total", {"name": "a"}, 12345678.0)
    assert line == 'x_total{name="a"} 12345678'
    assert metrics._sample("x_sum", {}, 0.1 + 0.2) == f"x_sum {0.1 + 0.2!r}"


def test_the_module_recorder_is_the_one_observe_uses() -> None:
    assert metric_counts.RECORDER.every == metric_counts.FLUSH_EVERY

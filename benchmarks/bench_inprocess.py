#!/usr/bin/env python3
"""Baton in-process benchmark: microseconds per step execution.

The same shapes, sizes and counting as ``benchmarks/llamaindex/bench_llamaindex.py``:
  * a 10-step sequential chain (StartEvent -> E1 -> ... -> E9 -> StopEvent), many runs;
  * fan-out/fan-in of width 100 and 1000: ``dispatch`` sends ``width`` Items with
    ``ctx.send_event``, ``work`` (num_workers=100) turns each into a Done, ``collect`` gathers
    them with ``ctx.collect_events`` (1 + width + width step executions per run).

``--compare`` also runs the llama-index-workflows baseline in its own venv
(``benchmarks/llamaindex/run.sh``) and prints how many times cheaper Baton is per step.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from workflows import Context, Event, StartEvent, StopEvent, Workflow, step

SEQ_STEPS = 10
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------
# a. 10-step sequential workflow
# --------------------------------------------------------------------------
class E1(Event):
    pass


class E2(Event):
    pass


class E3(Event):
    pass


class E4(Event):
    pass


class E5(Event):
    pass


class E6(Event):
    pass


class E7(Event):
    pass


class E8(Event):
    pass


class E9(Event):
    pass


class BenchSequential10(Workflow):
    @step
    async def s0(self, ev: StartEvent) -> E1:
        return E1()

    @step
    async def s1(self, ev: E1) -> E2:
        return E2()

    @step
    async def s2(self, ev: E2) -> E3:
        return E3()

    @step
    async def s3(self, ev: E3) -> E4:
        return E4()

    @step
    async def s4(self, ev: E4) -> E5:
        return E5()

    @step
    async def s5(self, ev: E5) -> E6:
        return E6()

    @step
    async def s6(self, ev: E6) -> E7:
        return E7()

    @step
    async def s7(self, ev: E7) -> E8:
        return E8()

    @step
    async def s8(self, ev: E8) -> E9:
        return E9()

    @step
    async def s9(self, ev: E9) -> StopEvent:
        return StopEvent(result="done")


# --------------------------------------------------------------------------
# b. fan-out / fan-in via ctx.send_event + ctx.collect_events
# --------------------------------------------------------------------------
class Item(Event):
    i: int


class Done(Event):
    i: int


class BenchFanOut(Workflow):
    def __init__(self, width: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.width = width

    @step
    async def dispatch(self, ctx: Context, ev: StartEvent) -> Item | None:
        for i in range(self.width):
            ctx.send_event(Item(i=i))
        return None

    @step(num_workers=100)
    async def work(self, ev: Item) -> Done:
        return Done(i=ev.i)

    @step
    async def collect(self, ctx: Context, ev: Done) -> StopEvent | None:
        got = ctx.collect_events(ev, [Done] * self.width)
        if got is None:
            return None
        return StopEvent(result=sum(e.i for e in got if isinstance(e, Done)))


# --------------------------------------------------------------------------
async def bench_sequential(runs: int, warmup: int) -> dict[str, Any]:
    wf = BenchSequential10(timeout=600)
    for _ in range(warmup):
        assert await wf.run() == "done"
    t0 = time.perf_counter()
    for _ in range(runs):
        await wf.run()
    dt = time.perf_counter() - t0
    return {
        "runs": runs,
        "total_s": round(dt, 4),
        "us_per_step": round(dt / (runs * SEQ_STEPS) * 1e6, 2),
    }


async def bench_fanout(width: int, repeat: int, warmup: int) -> dict[str, Any]:
    wf = BenchFanOut(width, timeout=600)
    expected = width * (width - 1) // 2
    for _ in range(warmup):
        assert await wf.run() == expected
    execs = 1 + width + width
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = await wf.run()
        dt = time.perf_counter() - t0
        assert res == expected, (res, expected)
        samples.append(dt)
    return {
        "repeat": repeat,
        "step_executions_per_run": execs,
        "run_s": [round(s, 4) for s in samples],
        "median_run_s": round(statistics.median(samples), 4),
        "us_per_step": round(statistics.median(samples) / execs * 1e6, 2),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    seq = await bench_sequential(args.seq_runs, args.seq_warmup)
    f100 = await bench_fanout(100, args.repeat_100 or max(args.repeat, 5), 1)
    f1000 = await bench_fanout(1000, args.repeat, args.warmup_1000)
    return {
        "impl": "baton-inprocess",
        "python": platform.python_version(),
        "sequential_10_us_per_step": seq["us_per_step"],
        "fanout_100_us_per_step": f100["us_per_step"],
        "fanout_1000_us_per_step": f1000["us_per_step"],
        "details": {"sequential_10": seq, "fanout_100": f100, "fanout_1000": f1000},
    }


KEYS = ("sequential_10_us_per_step", "fanout_100_us_per_step", "fanout_1000_us_per_step")


def baseline() -> dict[str, Any]:
    """Run the llama-index-workflows benchmark in its own venv and read its JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "llamaindex.json"
        script = ROOT / "benchmarks" / "llamaindex" / "run.sh"
        subprocess.run(
            ["bash", str(script), "--out", str(out)], check=True, stdout=subprocess.DEVNULL
        )
        data: dict[str, Any] = json.loads(out.read_text())
        return data


def compare(baton: dict[str, Any], llama: dict[str, Any]) -> dict[str, Any]:
    """Per shape: both figures and how many times cheaper Baton is per step."""
    return {
        key.removesuffix("_us_per_step"): {
            "baton_us": baton[key],
            "llamaindex_us": llama[key],
            "times_cheaper": round(llama[key] / baton[key], 1),
        }
        for key in KEYS
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seq-runs", type=int, default=200)
    ap.add_argument("--seq-warmup", type=int, default=10)
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="timed runs of the 1000-wide fan-out (100-wide uses max(repeat, 5))",
    )
    ap.add_argument("--repeat-100", type=int, default=0)
    ap.add_argument("--warmup-1000", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the JSON result here")
    ap.add_argument(
        "--compare",
        action="store_true",
        help="also run the llama-index-workflows baseline and print the ratios",
    )
    args = ap.parse_args()

    t0 = time.perf_counter()
    result = asyncio.run(main_async(args))
    result["script_wall_s"] = round(time.perf_counter() - t0, 2)
    if args.compare:
        llama = baseline()
        result["llamaindex_version"] = llama.get("version")
        result["comparison"] = compare(result, llama)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

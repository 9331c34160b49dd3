"""The README's demo runs the showcase distributed on a stack it starts and stops itself."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.harness import ROOT


def test_the_demo_runs_distributed_on_its_own_redis_and_workers_and_stops_them() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    before = _stack_processes()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "app.demo", "--distributed-only"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=100,
            check=True,
        ).stdout
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"demo hung; it printed:\n{exc.stdout}\n{exc.stderr}") from exc
    assert "'middle': {'sum': 4, 'product': 6, 'inner': 110}" in out
    assert "ApprovalRequested" in out and "'status': 'rejected'" in out
    assert "Stopped everything the demo started." in out
    assert _stack_processes() <= before  # its redis-server (run from its temp dir) is gone


def _stack_processes() -> set[str]:
    found = subprocess.run(["pgrep", "-f", "baton-stack-"], capture_output=True, text=True)
    return set(found.stdout.split())

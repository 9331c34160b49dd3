"""The README's demo runs the showcase distributed on a stack it starts and stops itself."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.harness import ROOT


@pytest.mark.long  # slow (a TTL, a backlog, a whole stack): bash scripts/long.sh
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
        printed = f"{_text(exc.stdout)}\n{_text(exc.stderr)}"
        raise AssertionError(f"demo hung; it printed:\n{printed}") from exc
    assert "'middle': {'sum': 4, 'product': 6, 'inner': 110}" in out
    assert "ApprovalRequested" in out and "'status': 'rejected'" in out
    assert "Stopped everything the demo started." in out
    assert _stack_processes() <= before  # its redis-server (run from its temp dir) is gone


def _stack_processes() -> set[str]:
    found = subprocess.run(["pgrep", "-f", "baton-stack-"], capture_output=True, text=True)
    return set(found.stdout.split())


def _text(output: bytes | str | None) -> str:
    # TimeoutExpired carries the raw bytes read so far, even with text=True
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""

"""llama-agents-client 0.4.1's ``WorkflowClient``, unchanged, against ``baton serve``: list
workflows, run one and read its result, stream events, answer an input request, cancel.

The client lives in a venv of its own (llama-index-workflows installs a top-level
``workflows`` that clashes with Baton's), made on first use as benchmarks/llamaindex/run.sh
makes its venv, and cached in ``BATON_LLAMA_AGENTS_VENV`` (default
/tmp/baton-llama-agents-venv). Making it needs PyPI.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import RedisServer, free_port, stop_group
from tests.integration.test_http_api import TOKEN, start_server

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "llama_client_compat_script.py"
VENV = Path(os.environ.get("BATON_LLAMA_AGENTS_VENV", "/tmp/baton-llama-agents-venv"))
PINS = ("llama-agents-client==0.4.1", "llama-index-workflows==2.26.1")
pytestmark = [pytest.mark.usefixtures("workers"), pytest.mark.long]


def llama_python() -> Path:
    """The venv's python, made (under a lock, so concurrent sessions wait) if missing or not
    at the pinned versions; a ``.baton-ready`` marker says an install finished."""
    python = VENV / "bin" / "python"
    lock_path = VENV.parent / f"{VENV.name}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = VENV / ".baton-ready"
        if python.exists() and marker.exists() and marker.read_text() == "\n".join(PINS):
            return python
        shutil.rmtree(VENV, ignore_errors=True)
        base = shutil.which("python3.11") or sys.executable
        subprocess.run([base, "-m", "venv", str(VENV)], check=True, capture_output=True)
        install = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        done = subprocess.run([*install, *PINS], capture_output=True, text=True, cwd="/tmp")
        if done.returncode != 0:
            raise AssertionError(f"could not install {PINS}: {done.stderr[-2000:]}")
        marker.write_text("\n".join(PINS))
    return python


@pytest.fixture(scope="module")
def server_url(redis_server: RedisServer, testdir: Path) -> Iterator[str]:
    port = free_port()
    proc = start_server(redis_server.url, testdir, port, "serve-compat.log", BATON_API_TOKEN=TOKEN)
    yield f"http://127.0.0.1:{port}"
    stop_group(proc)


def test_llama_agents_client_works_unchanged(server_url: str) -> None:
    began = time.monotonic()
    python = llama_python()
    ready = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = subprocess.run(
        [str(python), str(SCRIPT), server_url, TOKEN],
        cwd="/tmp",  # outside the repo, so Baton's `workflows` cannot shadow llama's
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"venv ready in {ready - began:.1f}s, script ran in {time.monotonic() - ready:.1f}s")

    assert out["health"] == "healthy"
    assert {"AddTwice", "Approve", "Research"} <= set(out["workflows"])
    assert out["start_fields"] == ["a", "b"]
    assert {"first", "second", "Numbers", "Summed"} <= set(out["graph_nodes"])
    assert out["event_titles"][0] == "Numbers"
    assert out["run"] == {"status": "completed", "type": "StopEvent"}
    assert out["run_result"] == 10
    assert out["stream_types"][-1] == "StopEvent" and "ResearchProgress" in out["stream_types"]
    assert isinstance(out["stream_last_sequence"], int)
    assert out["stream_status"] == "completed"
    assert out["question"] == "ok compat?" and out["sent"] == "sent"
    assert out["hitl_types"] == ["Ask", "StopEvent"]
    assert out["hitl_result"] == {"label": "compat", "approved": True}
    assert out["cancel"] == "cancelled" and out["cancelled_listed"]
    assert out["cancelled_get_status"] == 500

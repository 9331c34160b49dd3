"""``baton up --dir D`` keeps its Redis port and passwords across restarts (in ``D/stack.json``,
mode 0600) and prints the ``export`` line each time; CLI commands name the Redis they use when
``BATON_REDIS_URL`` is unset."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from app.stack import STATE_FILE, LocalStack, StackError, StackState
from config import Settings
from tests.harness import ROOT, ProcessDied, eventually, free_port

pytestmark = [pytest.mark.integration, pytest.mark.long]
EXPORT = re.compile(r"export BATON_REDIS_URL=(redis://:(\w+)@127\.0\.0\.1:(\d+)/0)")


def _env(tmp_path: Path) -> dict[str, str]:
    """A shell without BATON_* settings, one solo worker in the topology."""
    topology = tmp_path / "topology.yaml"
    topology.write_text("default_queue: itest\nqueues:\n  itest: {pool: solo, concurrency: 1}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATON_", "FLOWER_"))}
    env.update(
        {
            "BATON_TOPOLOGY_FILE": str(topology),
            "BATON_IMPORTS": "tests.integration.flows",
            "BATON_API_PORT": str(free_port()),
            "PYTHONPATH": str(ROOT),
            "COLUMNS": "200",
        }
    )
    return env


def _run_up_once(tmp_path: Path, env: dict[str, str], workdir: Path, n: int) -> tuple[str, str]:
    """Start ``baton up --dir``, wait until it is ready, SIGTERM it; its stdout and stderr."""
    out, err = tmp_path / f"up{n}.out", tmp_path / f"up{n}.err"
    cmd = [
        sys.executable,
        "-m",
        "app.cli",
        "up",
        "--dir",
        str(workdir),
        "--no-flower",
        "--no-metrics",
    ]
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=o, stderr=e)
    try:

        def ready() -> bool:
            if proc.poll() is not None:  # it gave up: say why at once, not after the timeout
                raise ProcessDied(f"baton up exited {proc.returncode}: {err.read_text()[-2000:]}")
            return "Press Ctrl-C" in out.read_text()

        eventually(ready, timeout=90, what="baton up ready")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out.read_text(), err.read_text()


def test_baton_up_with_a_dir_keeps_redis_port_and_passwords_and_prints_the_export_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, workdir = _env(tmp_path), tmp_path / "stack"
    first_out, first_err = _run_up_once(tmp_path, env, workdir, 1)
    state_file = workdir / STATE_FILE
    saved = json.loads(state_file.read_text())
    assert state_file.stat().st_mode & 0o777 == 0o600
    first = EXPORT.search(first_out)
    assert first is not None, first_out
    assert (first[2], int(first[3])) == (saved["redis_password"], saved["redis_port"])
    assert "kept in" in first_err

    second_out, second_err = _run_up_once(tmp_path, env, workdir, 2)
    second = EXPORT.search(second_out)
    assert second is not None and second[1] == first[1], second_out
    assert json.loads(state_file.read_text()) == saved
    assert "reused from" in second_err
    # the API's token is kept too, and printed (the dashboard's login)
    assert saved["api_token"] and f"token {saved['api_token']}" in first_out
    assert f"token {saved['api_token']}" in second_out
    # Flower would get the kept password too (the stack reads it without starting)
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("BATON_FLOWER_PASSWORD", raising=False)
    stack = LocalStack(Settings(), workdir=workdir)
    assert (stack.flower_password, stack.flower_password_generated) == (
        saved["flower_password"],
        True,
    )


def test_a_kept_redis_port_taken_by_another_process_is_one_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    workdir = tmp_path / "stack"
    workdir.mkdir()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        StackState(port, "pw", "fpw").save(workdir / STATE_FILE)
        stack = LocalStack(Settings(redis_url=None), workdir=workdir, flower=False)
        with pytest.raises(StackError, match=f"Redis port {port} .* is in use") as raised:
            stack.start()
    assert "\n" not in raised.value.message and stack.procs == {}


def test_a_cli_command_names_the_default_redis_once_when_the_url_is_unset(
    tmp_path: Path,
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "status", "no-such-run"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note:")]
    assert notes == ["note: BATON_REDIS_URL is unset; using redis://localhost:6379/0"], proc.stderr
    assert "Traceback" not in proc.stderr

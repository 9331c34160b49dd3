"""``baton serve`` as the dashboard tests run it: a process of its own, on a free port, behind
a random token; settings from the environment (``tests.harness.worker_env``)."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import httpx

from tests.harness import ROOT, ProcessDied, eventually, free_port, stop_group


class Dashboard:
    """``baton serve`` on a free port, behind a random ``BATON_API_TOKEN``."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_urlsafe(16)
        self.env = {**env, "BATON_API_TOKEN": self.token}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def start(self) -> Dashboard:
        cmd = [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            eventually(self._up, timeout=40, interval=0.1, what="dashboard server up")
        except BaseException:
            self.stop()
            raise
        return self

    def _up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise ProcessDied(f"baton serve exited: {self.log.read_text(errors='replace')[-3000:]}")
        got = httpx.get(f"{self.url}/baton/api/workflows", headers=self.headers, timeout=2)
        return got.status_code == 200

    def stop(self) -> None:
        stop_group(self.proc)

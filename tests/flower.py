"""A ``celery flower`` process for tests, started as ``baton up`` starts it."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from app.stack import flower_command
from tests.harness import ROOT, ProcessDied, eventually, free_port, stop_group

FLOWER_USER = "baton"


class Flower:
    """A ``celery flower`` process as ``app.stack`` starts it: ``-A app``, 127.0.0.1, and
    basic auth through ``FLOWER_BASIC_AUTH`` in its environment."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.user, self.password = FLOWER_USER, secrets.token_urlsafe(16)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Flower:
        cmd = flower_command(self.port)
        env = {**self.env, "FLOWER_BASIC_AUTH": f"{self.user}:{self.password}"}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            eventually(self._healthy, timeout=40, interval=0.1, what="Flower up")
        except BaseException:
            self.stop()
            raise
        return self

    def _alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ProcessDied(f"flower exited: {self.log.read_text(errors='replace')[-3000:]}")

    def _healthy(self) -> bool:
        self._alive()
        with urllib.request.urlopen(f"{self.url}/healthcheck", timeout=2) as response:
            return bool(response.status == 200)

    def api(self, path: str) -> Any:
        """GET one of Flower's JSON API paths with basic auth."""
        self._alive()
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request = urllib.request.Request(
            f"{self.url}{path}", headers={"Authorization": f"Basic {token}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        stop_group(self.proc)

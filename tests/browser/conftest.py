"""Fixtures for the browser tests: a private redis-server, a worker, Flower behind basic auth,
and headless Chromium from Debian (``/usr/bin/chromium``, which ``scripts/bootstrap.sh``
installs) driven by Playwright. Playwright never downloads a browser here."""

from __future__ import annotations

import base64
import importlib
import json
import os
import secrets
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from app.celery_app import create_app
from app.client import Client
from app.stack import flower_command
from config import Settings
from tests.api_server import Dashboard
from tests.harness import (
    ROOT,
    TEST_IMPORTS,
    ProcessDied,
    RedisServer,
    Worker,
    eventually,
    free_port,
    stop_group,
    worker_env,
)

for _module in TEST_IMPORTS:  # the workflows the client submits by name, registered here too
    importlib.import_module(_module)

CHROMIUM = Path("/usr/bin/chromium")
# Chromium as root in a container: no sandbox, no GPU, nothing phoning home
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
]
QUEUES = ["baton", "tools", "analysis", "itest", "llm"]
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


@pytest.fixture(scope="module")
def browser_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser")


@pytest.fixture(scope="module")
def redis_server(browser_dir: Path) -> Iterator[RedisServer]:
    server = RedisServer(browser_dir / "redis")
    server.dir.mkdir()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(redis_server: RedisServer) -> Client:
    _, runtime = create_app(Settings(redis_url=redis_server.url, imports=TEST_IMPORTS))
    return Client(runtime=runtime)


@pytest.fixture(scope="module")
def worker(redis_server: RedisServer, browser_dir: Path) -> Iterator[Worker]:
    started = Worker(worker_env(redis_server.url, browser_dir), QUEUES, concurrency=2).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def flower(redis_server: RedisServer, browser_dir: Path, worker: Worker) -> Iterator[Flower]:
    """Flower, once its event stream is live: it has seen the worker's heartbeat (Flower only
    knows the tasks whose events it receives, so runs are submitted after this)."""
    env = worker_env(redis_server.url, browser_dir)
    started = Flower(env, browser_dir / "flower.log").start()
    try:
        eventually(
            lambda: started.api("/api/workers?status=1").get(worker.name),
            timeout=40,
            interval=0.2,
            what=f"Flower sees worker {worker.name}",
        )
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless chromium under Playwright. Never skipped: bootstrap installs it."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"{CHROMIUM} not found: run `bash scripts/bootstrap.sh` as root "
            "(or `sudo apt-get install chromium`)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def dashboard(redis_server: RedisServer, browser_dir: Path, worker: Worker) -> Iterator[Dashboard]:
    """``baton serve`` with the run dashboard at /baton/ui/ (``tests.api_server``), behind a
    token of its own."""
    env = worker_env(redis_server.url, browser_dir)
    started = Dashboard(env, browser_dir / "dashboard.log").start()
    yield started
    started.stop()


DOCS_IMG = ROOT / "docs" / "img"


def screenshot(page: Page, tmp_path: Path, name: str) -> None:
    """Into ``tmp_path`` always; into docs/img only when asked to update the docs
    (``BATON_UPDATE_SCREENSHOTS=1``)."""
    shot = tmp_path / name
    # from the top, nothing focused: the sticky navbar stays on top, the skip link hidden
    page.evaluate("window.scrollTo(0, 0); document.activeElement?.blur()")
    page.screenshot(path=shot, full_page=True)
    if os.environ.get("BATON_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_IMG / name)

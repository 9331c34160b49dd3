"""Fixtures for the browser tests: a private redis-server, a worker, Flower behind basic auth,
and headless Chromium from Debian (``/usr/bin/chromium``, which ``scripts/bootstrap.sh``
installs) driven by Playwright. Playwright never downloads a browser here."""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from app.celery_app import create_app
from app.client import Client
from config import Settings
from tests.api_server import Dashboard
from tests.flower import Flower
from tests.harness import (
    ROOT,
    TEST_IMPORTS,
    RedisServer,
    Worker,
    eventually,
    running_redis,
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


@pytest.fixture(scope="module")
def browser_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser")


@pytest.fixture(scope="module")
def redis_server(browser_dir: Path) -> Iterator[RedisServer]:
    with running_redis(browser_dir / "redis") as server:
        yield server


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

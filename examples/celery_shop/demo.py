"""The shop and Baton both ways, on a running Baton stack (the last part of ``python -m app.demo``).

Starts the shop's own worker (``celery -A examples.celery_shop.app:shop worker -Q shop``), then:
a ``Checkout`` run whose tool calls are shop tasks on the shop's worker; a shop chain with a
Baton run in the middle; three Baton runs as a chord's header, summed up by a shop task.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from celery import chain, chord
from rich.console import Console
from rich.pretty import Pretty

from app.client import Client
from app.interop import baton_run
from examples.celery_shop.app import configure
from examples.celery_shop.tasks import fetch_order, receipt, summarize

SHOP_IMPORT = "examples.celery_shop.checkout"  # what Baton's workers import for the shop
READY_TIMEOUT = 60.0


def start_shop_worker(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """The shop's worker, in a session of its own; returns once it is ready."""
    cmd = [sys.executable, "-m", "celery", "-A", "examples.celery_shop.app:shop", "worker"]
    cmd += ["-Q", "shop", "-c", "2", "-E", "-n", "shop@%h", "--loglevel", "INFO"]
    cmd += ["--without-gossip", "--without-mingle"]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + READY_TIMEOUT
    while "ready." not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the shop's worker did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    return proc


def run(console: Console, client: Client, env: dict[str, str], workdir: Path) -> None:
    """Both directions against the stack ``client`` submits to (its workers import
    :data:`SHOP_IMPORT`; ``env`` is the stack's environment for a child process)."""
    console.rule("[bold]A plain Celery app (the shop) with Baton, both ways")
    settings = client.runtime.settings
    configure(settings.broker, f"{settings.key_prefix}:q:", backend=settings.store_url)
    proc = start_shop_worker(env, Path.cwd(), workdir / "shop-worker.log")
    try:
        handle = client.submit("Checkout", customer="alice", items=["apple", "pear"])
        console.print("  [bold]Checkout[/] (shop tasks as tools)", Pretty(handle.result(60)))
        for span in handle.spans():
            if span.kind.value == "tool":
                console.print(f"    tool {span.name} on queue {span.queue}: {span.outcome.value}")
        line = chain(fetch_order.s("o1"), baton_run("Checkout"), receipt.s()).apply_async()
        console.print("  [bold]fetch_order | Checkout | receipt[/]", Pretty(line.get(timeout=60)))
        header = [baton_run("Checkout", start=o) for o in _orders()]
        summary = chord(header, summarize.s()).apply_async().get(timeout=60)
        console.print("  [bold]chord(3 x Checkout) -> summarize[/]", Pretty(summary))
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _orders() -> list[dict[str, object]]:
    return [
        {"customer": "gina", "items": ["apple"]},
        {"customer": "hank", "items": ["pear", "kiwi"]},
        {"customer": "ivy", "items": ["melon"]},
    ]

"""What every ``baton`` command shares: the Typer app, consoles, error handling, formatting.

Expected failures are Baton errors (Redis being down included: the store's queries raise
``StoreUnavailableError``; invalid settings raise ``ConfigurationError``, already one line naming
the variable), a bad topology and invalid option values; ``handled`` turns each into one
``error:`` line and exit code 1.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from app.celery_app import create_app
from app.client import Client
from config import Settings, TopologyError
from tasks.runtime import Runtime
from workflows.errors import BatonError, InvalidInputError

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="baton",
    help="Baton: event-driven workflows on Celery + Redis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
STATUS_STYLE = {"running": "cyan", "completed": "green", "failed": "red", "cancelled": "yellow"}
KIND_STYLE = {"stop": "green", "failed": "red", "cancelled": "yellow", "retry": "magenta"}

RunId = Annotated[str, typer.Argument(help="a run id, as printed by `baton submit`")]


def handled(fn: Callable[P, R]) -> Callable[P, R]:
    """Expected failures become one ``error:`` line and exit code 1; Ctrl-C exits 130."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (BatonError, ValidationError, TopologyError) as exc:
            err.print(f"[red]error:[/] {escape(one_line(exc))}", soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper


def one_line(exc: BaseException) -> str:
    """The error as one line (pydantic's many lines joined, its help links dropped)."""
    text = exc.message if isinstance(exc, BatonError) else str(exc)
    lines = [line.strip() for line in text.splitlines()]
    return "; ".join(line for line in lines if line and not line.startswith("For further"))


def runtime() -> Runtime:
    """The runtime for the ``BATON_*`` settings (read per command, so errors are handled)."""
    settings = Settings()
    if settings.redis_url is None:
        say_which_redis(settings.store_url)
    return create_app(settings)[1]


@functools.cache  # once per process, however many clients a command makes
def say_which_redis(url: str) -> None:
    """Note on stderr which Redis a command uses when BATON_REDIS_URL is unset: a silent
    default hides why a command sees no runs (or another project's)."""
    err.print(f"note: BATON_REDIS_URL is unset; using {escape(redacted(url))}", soft_wrap=True)


def redacted(url: str) -> str:
    """``url`` without its password, fit to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def client() -> Client:
    return Client(runtime=runtime())


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def status_text(state: str) -> str:
    return f"[{STATUS_STYLE.get(state, 'white')}]{escape(state)}[/]"


def kind_text(kind: str) -> str:
    return f"[{KIND_STYLE.get(kind, 'white')}]{escape(kind)}[/]"


def json_object(text: str, of: str) -> dict[str, Any]:
    """``--input``: a JSON object (inline, or ``@file``) of ``of``; anything else, one line."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise InvalidInputError(f"--input {text}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--input is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"--input must be a JSON object of {of}")
    return data

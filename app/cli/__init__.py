"""The ``baton`` command line: run a local stack or a worker, submit runs and follow them.

Settings come from ``BATON_*`` variables (or ``.env``). Bad input — an unknown workflow or run,
JSON that is not an object, a wrong setting, an unreachable Redis — ends with a one-line
``error:`` and exit code 1, never a traceback. Commands live by concern in ``processes``,
``runs``, ``answer``, ``inspection``, ``workers`` and ``deploy``; ``common`` holds the app and
the error handling.
"""

from __future__ import annotations

from app.cli.common import app, handled

# the order `baton --help` lists the commands in
# isort: off
from app.cli import processes, runs, answer, inspection, workers, deploy, serve, schedule
# isort: on

__all__ = [
    "answer",
    "app",
    "deploy",
    "handled",
    "inspection",
    "main",
    "processes",
    "runs",
    "schedule",
    "serve",
    "workers",
]


def main() -> None:
    """Entry point of the ``baton`` console script."""
    app()

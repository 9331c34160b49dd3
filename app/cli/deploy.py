"""``baton compose``: the docker-compose.yml for the topology, so the deployment follows it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import app, err, handled
from app.compose import render
from config import Settings, load_topology
from workflows.errors import InvalidInputError


@app.command()
@handled
def compose(
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="write the file here (default: print it)"),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing --output")] = False,
) -> None:
    """Write docker-compose.yml from the topology (BATON_TOPOLOGY_FILE): Redis, a worker
    service per queue with its pool and concurrency, Flower and metrics, each with a
    healthcheck. Needs no Redis."""
    settings = Settings()
    text = render(load_topology(settings.topology_file), settings)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        with output.open("w" if force else "x") as f:  # "x": never clobber a file by accident
            f.write(text)
    except FileExistsError:
        raise InvalidInputError(f"{output} exists; pass --force to overwrite it") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot write {output}: {exc.strerror}") from exc
    err.print(f"wrote {output}", soft_wrap=True, markup=False)

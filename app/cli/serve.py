"""``baton serve``: the HTTP API (llama-agents-server compatible) on uvicorn; runs it starts
execute on the workers. It refuses to start without ``BATON_API_TOKEN`` unless auth is turned
off explicitly (``--no-auth`` or ``BATON_API_AUTH=off``), which it then says loudly."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.common import app, err, handled, runtime
from app.client import Client
from config import Settings


@app.command()
@handled
def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="interface to bind (default BATON_API_HOST)")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, help="port (default BATON_API_PORT, 8766)"),
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="no token required: local development only")
    ] = False,
) -> None:
    """Serve the HTTP API (llama-agents-server's routes, token required) and the run dashboard
    (/baton/ui/) until Ctrl-C."""
    import uvicorn  # here, not at the top: every other command starts faster without it
    from starlette.routing import Mount

    from app.http.baton_routes import baton_routes
    from app.http.server import create_asgi_app

    settings = Settings()
    if no_auth:
        settings = settings.model_copy(update={"api_auth": "off"})
    if settings.api_auth == "off":
        err.print(
            "[bold red]WARNING: authentication is OFF: anyone who can reach this port can "
            "start, read and cancel runs. Use it for local development only.[/]"
        )
    client = Client(runtime=runtime())
    dashboard = Mount("/baton", routes=baton_routes())  # its JSON API and pages, /baton/ui/
    asgi = create_asgi_app(client, settings, extra_routes=[dashboard])
    bind_host = host or settings.api_host
    bind_port = port or settings.api_port
    err.print(f"serving the HTTP API on http://{bind_host}:{bind_port} (Ctrl-C to stop)")
    uvicorn.run(
        asgi,
        host=bind_host,
        port=bind_port,
        log_level="warning",
        proxy_headers=False,
        timeout_graceful_shutdown=5,
    )

"""Entry points: the Celery app factory, the client, the CLI and the local stack.

``from app import Client`` to submit runs and follow them.
"""

from app.client import AsyncClient, Client, RunHandle, RunInfo

__all__ = ["AsyncClient", "Client", "RunHandle", "RunInfo"]

"""The ASGI app of ``baton serve``: llama-agents-server's routes backed by a Baton ``Client``
(runs execute on the workers), behind a token, a body size limit and JSON errors.

Every error is ``{"detail": ...}`` with a 4xx/5xx status, as llama-agents-server answers, and
bad input is refused before anything is written.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.client import Client
from app.http.auth import TokenAuth, login_routes
from app.http.llama_routes import llama_routes
from app.http.openapi import openapi_schema
from config import Settings
from tasks.queries import AsyncLogReader
from workflows.errors import (
    BatonError,
    ConfigurationError,
    InvalidInputError,
    StoreUnavailableError,
    UnknownWorkflowError,
)

log = logging.getLogger("baton.http")


def create_asgi_app(
    client: Client, settings: Settings, extra_routes: Sequence[BaseRoute] = ()
) -> Starlette:
    """The app; ``extra_routes`` (the dashboard's, under ``/baton``) come after Baton's own
    and sit behind the same token. Without a token, auth must be off explicitly."""
    token = settings.api_token.get_secret_value() if settings.api_token else None
    if settings.api_auth == "on" and not token:
        raise ConfigurationError(
            "BATON_API_TOKEN is unset: set it, or turn auth off for local development "
            "(baton serve --no-auth, or BATON_API_AUTH=off)"
        )
    if settings.api_auth == "off":
        token = None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.logs = AsyncLogReader(client.runtime)
        try:
            yield
        finally:
            await app.state.logs.close()

    middleware = []
    if settings.api_cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.api_cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
                allow_credentials=True,
            )
        )
    middleware += [
        Middleware(TokenAuth, token=token),
        Middleware(BodyLimit, limit=settings.api_max_body_bytes),
    ]
    routes: list[BaseRoute] = [
        *llama_routes(),
        *login_routes(token),
        Route("/openapi.json", _openapi, methods=["GET"], include_in_schema=False),
        *extra_routes,
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: _http_error,
            BatonError: _baton_error,
            Exception: _unhandled_error,
        },
    )
    app.state.client = client
    app.state.settings = settings
    return app


async def _openapi(request: Request) -> Response:
    return JSONResponse(openapi_schema())


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _baton_error(request: Request, exc: Exception) -> Response:
    """Baton's own errors, by what the caller can do about them."""
    assert isinstance(exc, BatonError)
    status = 500
    if isinstance(exc, UnknownWorkflowError):
        status = 404
    elif isinstance(exc, InvalidInputError):
        status = 400
    elif isinstance(exc, StoreUnavailableError):
        status = 503
    return JSONResponse({"detail": exc.message}, status_code=status)


async def _unhandled_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": f"Internal server error: {exc}"}, status_code=500)


class BodyTooLargeError(Exception):
    """A request body went past the limit while it was being read."""


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes is 413 ``{"detail": ...}``, by its
    Content-Length before reading, else as soon as the bytes read pass it (chunked uploads)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLargeError
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyTooLargeError:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail: dict[str, Any] = {
            "detail": f"Request body too large: the limit is {self.limit} bytes "
            "(BATON_API_MAX_BODY_BYTES)"
        }
        await JSONResponse(detail, status_code=413)(scope, receive, send)

"""Who may call the HTTP API: a bearer token, or the ``baton_token`` cookie a browser gets from
``POST /baton/login`` (HttpOnly, so page scripts never read it; SameSite=Strict, so other
sites cannot make a browser send it). ``GET /health`` and the login itself stay open."""

from __future__ import annotations

import hmac
import json
from urllib.parse import parse_qs

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_COOKIE = "baton_token"
OPEN_PATHS = frozenset({"/health", "/baton/login", "/baton/logout", "/baton", "/baton/"})
# the dashboard's own files: static, no data in them; every call they make needs the token
OPEN_PREFIXES = ("/baton/ui/",)
COOKIE_MAX_AGE = 12 * 3600


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison, so response times do not leak the token."""
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def presented_token(conn: HTTPConnection) -> str | None:
    """The bearer token of the request, else its cookie's."""
    scheme, _, value = conn.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return conn.cookies.get(TOKEN_COOKIE)


class TokenAuth:
    """ASGI middleware: a request without the token is 401 before any route runs.

    ``token`` None means authentication is off (``--no-auth``): every request passes."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        path = scope["path"]
        if (
            path in OPEN_PATHS
            or path.startswith(OPEN_PREFIXES)
            or token_matches(presented_token(conn), self.token)
        ):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        response = JSONResponse(
            {"detail": "Not authenticated: send Authorization: Bearer <BATON_API_TOKEN>"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)


def login_routes(token: str | None) -> list[Route]:
    """``POST /baton/login`` (form or JSON ``{"token": ...}``) sets the cookie;
    ``POST /baton/logout`` clears it."""

    async def login(request: Request) -> Response:
        given = await _token_field(request)
        if token is not None and not token_matches(given, token):
            return JSONResponse({"detail": "Invalid token"}, status_code=401)
        response = JSONResponse({"status": "ok"})
        if token is not None:
            response.set_cookie(
                TOKEN_COOKIE,
                token,
                max_age=COOKIE_MAX_AGE,
                path="/",
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        return response

    async def logout(request: Request) -> Response:
        response = JSONResponse({"status": "ok"})
        response.delete_cookie(TOKEN_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return [
        Route("/baton/login", login, methods=["POST"]),
        Route("/baton/logout", logout, methods=["POST"]),
    ]


async def _token_field(request: Request) -> str | None:
    """The ``token`` of a JSON object or an urlencoded form (no multipart: nothing to upload)."""
    body = await request.body()
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            data = json.loads(body)
        except ValueError:
            return None
        value = data.get("token") if isinstance(data, dict) else None
        return value if isinstance(value, str) else None
    values = parse_qs(body.decode("utf-8", errors="replace")).get("token")
    return values[0] if values else None

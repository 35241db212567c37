"""What every response of the viewer goes through: the Host check, security headers, and JSON errors.

* ``Host`` must name an allowed host (loopback by default), so a web page on another site cannot reach the
  server through DNS rebinding.
* Responses carry a strict Content-Security-Policy (scripts, styles and connections from the server itself
  only), ``nosniff``, no framing, no referrer, and ``no-store`` (scans are patient data: no disk cache).
* Every error is ``{"error": "one line"}`` with a 4xx status; an unexpected failure is a 500 with a generic
  message, its traceback going to the server log only.
"""

from __future__ import annotations

import logging

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from s2vnet.errors import InputError
from s2vnet.serve.session import NotSegmented, SessionBusy, SessionNotFound, StoreFull

__all__ = ["GuardMiddleware", "error_handlers", "SECURITY_HEADERS"]

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def _host_name(host: str) -> str:
    """``"127.0.0.1:8000"`` -> ``"127.0.0.1"``, ``"[::1]:8000"`` -> ``"[::1]"``."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class GuardMiddleware:
    """Pure ASGI middleware: refuse unknown ``Host`` headers, add :data:`SECURITY_HEADERS` to every response."""

    def __init__(self, app, allowed_hosts: tuple[str, ...] | None) -> None:
        self.app = app
        self.allowed = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _host_name(Headers(scope=scope).get("host", "").lower())
        if self.allowed is not None and host not in self.allowed:
            response = JSONResponse(
                {"error": f"host '{host}' is not served (allowed: {', '.join(sorted(self.allowed))})"},
                status_code=400,
                headers=SECURITY_HEADERS,
            )
            await response(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers[key] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _json_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _http(request: Request, exc: HTTPException) -> JSONResponse:
    return _json_error(exc.status_code, str(exc.detail))


async def _input(request: Request, exc: InputError) -> JSONResponse:
    return _json_error(400, str(exc))


def _status(code: int):
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return _json_error(code, str(exc))

    return handler


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    logging.getLogger("s2vnet.serve").exception("request %s %s failed", request.method, request.url.path)
    return _json_error(500, "internal error; the details are in the server's log")


def error_handlers() -> dict:
    """Starlette ``exception_handlers``: every failure becomes a one-line JSON error."""
    return {
        HTTPException: _http,
        InputError: _input,
        SessionNotFound: _status(404),
        NotSegmented: _status(409),
        SessionBusy: _status(409),
        StoreFull: _status(503),
        Exception: _internal,
    }

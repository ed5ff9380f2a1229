"""Which names this gateway answers to, and which web pages may change things through it.

- **Host** (DNS rebinding): a page on ``evil.example`` whose name is made to resolve to
  127.0.0.1 reaches a gateway on loopback as "its own" origin; the browser then sends
  ``Host: evil.example``. Only the names in ``SCRIBE_GATEWAY_ALLOWED_HOSTS`` (loopback names by
  default, plus the address the gateway listens on when it is a specific one) are answered;
  others get 400.
- **Origin** (cross-site requests): a browser may POST a form or a file to any address without
  asking first, and opens websockets to any address. A request that changes something (POST,
  PUT, PATCH, DELETE) or opens a websocket with an ``Origin`` header is refused (403) unless the
  origin is the gateway's own or listed in ``SCRIBE_CORS_ORIGINS``. Programs that send no
  ``Origin`` are not browsers and are not affected.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from litestar.types import ASGIApp, Receive, Scope, Send

from core.settings import Settings

_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
_ANY_ADDRESS = frozenset({"", "0.0.0.0", "::", "[::]"})


def host_name(host: str) -> str:
    """The name part of a ``Host`` header (or an origin's netloc), lower-cased, without port or final dot."""
    host = host.strip().lower()
    if host.startswith("["):
        name = host[: host.find("]") + 1] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.rstrip(".")


def _with_port(netloc: str, scheme: str) -> str:
    netloc = netloc.strip().lower()
    name = host_name(netloc)
    port = netloc[len(name) :].lstrip(".").lstrip(":") or _DEFAULT_PORTS.get(scheme, "")
    return f"{name}:{port}"


class HostPolicy:
    """The names answered to and the origins trusted, from the settings."""

    def __init__(self, settings: Settings) -> None:
        names = {host_name(name) for name in settings.gateway_allowed_hosts}
        if host_name(settings.gateway_host) not in _ANY_ADDRESS:
            listening = settings.gateway_host
            names.add(host_name(f"[{listening}]" if ":" in listening and not listening.startswith("[") else listening))
        self.any_host = "*" in names
        self.exact = {name for name in names if not name.startswith("*.")}
        self.suffixes = tuple(name[1:] for name in names if name.startswith("*."))
        self.origins = {origin.strip().rstrip("/").lower() for origin in settings.cors_origins}

    def allows_host(self, host: str) -> bool:
        if self.any_host:
            return True
        name = host_name(host)
        return bool(name) and (name in self.exact or name.endswith(self.suffixes))

    def allows_origin(self, origin: str, host: str, scheme: str) -> bool:
        """Whether a request from a page at ``origin`` may change things here (its own origin, or listed)."""
        origin = origin.strip().rstrip("/").lower()
        if origin in self.origins:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # "null" (sandboxed pages, files) and anything odd
        own = "https" if scheme in ("https", "wss") else "http"
        # Behind a TLS-terminating proxy the page is https and this hop http: the name and port decide.
        return _with_port(parts.netloc, parts.scheme) in {_with_port(host, own), _with_port(host, parts.scheme)}


def header(scope: Scope, name: bytes) -> str | None:
    """A request header straight from the ASGI scope (before Litestar has made a request of it)."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class OriginMiddleware:
    """Refuses unknown ``Host`` names (400) and foreign origins changing things (403), in the error shape."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = header(scope, b"host") or ""
        if not self.policy.allows_host(host):
            await _refuse(
                scope,
                receive,
                send,
                400,
                "bad_host",
                f"This server does not answer to the name {host_name(host) or '(none)'!r}. Use its own address; "
                "an operator can add names with SCRIBE_GATEWAY_ALLOWED_HOSTS.",
            )
            return
        origin = header(scope, b"origin")
        changes = scope["type"] == "websocket" or scope.get("method") in _CHANGING
        if origin is not None and changes and not self.policy.allows_origin(origin, host, scope.get("scheme", "http")):
            await _refuse(
                scope,
                receive,
                send,
                403,
                "cross_origin",
                f"A web page from {origin[:100]} may not use this server. Use the server's own page; "
                "an operator can allow a web app with SCRIBE_CORS_ORIGINS.",
            )
            return
        await self.app(scope, receive, send)


async def _refuse(scope: Any, receive: Receive, send: Any, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if "websocket.http.response" in scope.get("extensions", {}):  # a real HTTP answer instead of the upgrade
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": code})


def middleware(settings: Settings) -> Any:
    """The middleware factory for ``Litestar(middleware=[...])``."""
    policy = HostPolicy(settings)

    def wrap(app: ASGIApp) -> ASGIApp:
        return OriginMiddleware(app, policy)

    return wrap


def cors_headers() -> Iterable[str]:
    """Request headers a listed web app may send."""
    return (
        "Authorization",
        "Content-Type",
        "Idempotency-Key",
        "Last-Event-ID",
        "Range",
        "If-Range",
        "If-None-Match",
    )

"""One error shape for every 4xx and 5xx: ``{"error": {"code", "message"}}``, mapped here and only here.

- :class:`ApiError`: a refusal the gateway decides (status, stable code, a sentence, headers).
- Litestar's own refusals (validation, unknown route, wrong method, body too large) keep their
  status and get the shape, with a sentence instead of Litestar's internals.
- NATS or PostgreSQL out of reach: 503 with ``Retry-After``; the request may be repeated.
- Anything else: 500, logged with its traceback (a 500 is a bug to fix, never an answer to input).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import asyncpg
import msgspec
import nats.errors
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5


class ErrorDetail(msgspec.Struct):
    """What went wrong, for programs (``code``) and for people (``message``)."""

    code: str
    message: str


class ErrorBody(msgspec.Struct):
    """Every error answer's body."""

    error: ErrorDetail


class ApiError(Exception):
    """A refusal with its HTTP status, a stable code, a sentence for people and any headers it needs."""

    def __init__(self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def unavailable(what: str = "The service") -> ApiError:
    """A 503 for a dependency out of reach: the same request will work once it is back."""
    return ApiError(
        503,
        "unavailable",
        f"{what} is briefly unavailable (its message bus or database cannot be reached); "
        f"try again in {RETRY_AFTER_S} seconds.",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


# Errors that mean NATS or PostgreSQL cannot be reached right now, not that the request is wrong.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    nats.errors.ConnectionClosedError,
    nats.errors.NoServersError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    ConnectionError,
    TimeoutError,
)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    409: "conflict",
    410: "gone",
    413: "too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    429: "too_many_requests",
}

_MESSAGES = {
    404: "There is nothing at this address. The API is under /v1 (see /schema for its document).",
    405: "This address does not take that method.",
    413: "The request body is larger than this address accepts.",
}


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response[ErrorBody]:
    return Response(
        ErrorBody(ErrorDetail(code=code, message=message)),
        status_code=status,
        media_type=MediaType.JSON,
        headers=dict(headers or {}),
    )


def api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[ErrorBody]:
    return error_response(exc.status, exc.code, exc.message, exc.headers)


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    """Litestar's own refusals in our shape; ``Allow`` stays on a 405."""
    status = exc.status_code
    if status >= 500:
        if exc.detail == "client disconnected prematurely":  # nobody is left to answer
            return error_response(400, "disconnected", "The client closed the connection before its body arrived.")
        return internal_error(request, exc)
    message = _MESSAGES.get(status) or str(exc.detail)
    if status == 400 and isinstance(exc.extra, list) and exc.extra:
        message = " ".join(_problem(item) for item in exc.extra)
    headers = dict(exc.headers or {})
    if status == 405 and (allow := headers.pop("allow", None) or headers.pop("Allow", None)):
        methods = sorted({*allow.replace(" ", "").split(","), *(["HEAD"] if "GET" in allow else [])})
        headers["Allow"] = ", ".join(methods)
        message = f"This address takes {', '.join(methods)}."
    return error_response(status, _CODES.get(status, "bad_request"), message, headers)


def _problem(item: Any) -> str:
    """One validation problem as a sentence: ``The query parameter format: Invalid enum value 'pdf'.``"""
    if not isinstance(item, Mapping):
        return str(item)
    source = item.get("source")
    where = {"query": "query parameter", "path": "path parameter", "header": "header", "cookie": "cookie"}.get(
        str(getattr(source, "value", source) or ""), "field"
    )
    key = item.get("key")
    text = str(item.get("message", "is not valid")).rstrip(".")
    return f"The {where} {key}: {text}." if key else f"{text}."


def dependency_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    """NATS or PostgreSQL out of reach mid-request: 503, try again."""
    logger.warning("dependency unavailable", extra={"path": request.url.path, "error": type(exc).__name__})
    return api_error(request, unavailable())


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    if isinstance(exc, UNAVAILABLE):
        return dependency_error(request, exc)
    logger.exception("request failed", extra={"path": request.url.path})
    return error_response(500, "internal", "The server failed to answer; try again later.")


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    ApiError: api_error,
    HTTPException: http_error,
    Exception: internal_error,
}

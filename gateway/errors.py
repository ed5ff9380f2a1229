"""One error shape for every 4xx and 5xx: ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """A refusal with its HTTP status, a stable code and a sentence for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "too_large",
}


def error_response(status: int, code: str, message: str) -> Response[dict[str, dict[str, str]]]:
    return Response({"error": {"code": code, "message": message}}, status_code=status, media_type=MediaType.JSON)


def api_error(request: Request, exc: ApiError) -> Response[dict[str, dict[str, str]]]:
    return error_response(exc.status, exc.code, exc.message)


def http_error(request: Request, exc: HTTPException) -> Response[dict[str, dict[str, str]]]:
    """Litestar's own refusals (validation, body too large, unknown route) in our shape."""
    status = exc.status_code
    message = str(exc.detail)
    if status == 413:
        message = "The upload is larger than this server accepts. Send a smaller file."
    extra = getattr(exc, "extra", None)
    if status == 400 and extra:
        message = f"{message}: {extra}"
    return error_response(status, _CODES.get(status, "error"), message)


def internal_error(request: Request, exc: Exception) -> Response[dict[str, dict[str, str]]]:
    logger.exception("request failed", extra={"path": request.url.path})
    return error_response(500, "internal", "The server failed to answer; try again later.")

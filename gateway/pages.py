"""The viewer page: ``/`` starts a job, ``/jobs/{id}?token=…`` shows one (the same page); ``/admin`` is the
operators' page of costs (an admin key with accounts).

Plain HTML, CSS and JavaScript modules from ``gateway/web``, served at ``/static/<name>``: the
files are read once into memory and looked up by name, so no request names a path on disk (no
traversal, no NUL bytes reaching the file system). Nothing is fetched from anywhere else (the
Content-Security-Policy says so to the browser too). The page itself needs no token or key: it
reads the job's token from its own address and shows it to the API, and with accounts it asks for
an API key once and keeps it in the browser (``web/auth.js``). Tokens sit in the page's address, so
no request the page makes carries a ``Referer``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated

from litestar import HttpMethod, MediaType, Response, route
from litestar.params import FromPath, HeaderParameter

from gateway.errors import ApiError

WEB = Path(__file__).with_name("web")

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; media-src 'self'; img-src 'self' data:; "
        "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
}


@dataclass(frozen=True)
class _Asset:
    body: bytes
    media_type: str
    etag: str


@cache
def _assets() -> dict[str, _Asset]:
    """Every file the page uses, by name, read once per process."""
    return {
        path.name: _Asset(
            path.read_bytes(), _TYPES[path.suffix], '"' + hashlib.sha256(path.read_bytes()).hexdigest()[:16] + '"'
        )
        for path in sorted(WEB.iterdir())
        if path.suffix in _TYPES
    }


@route(
    ["/", "/jobs/{job_id:str}"],
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    media_type=MediaType.HTML,
    include_in_schema=False,
    sync_to_thread=False,
)
def viewer_page() -> Response[bytes]:
    """The viewer (its script shows the start form at ``/`` and the job at ``/jobs/{id}``)."""
    page = _assets()["index.html"]
    return Response(page.body, media_type=page.media_type, headers=PAGE_HEADERS)


@route(
    "/admin",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    media_type=MediaType.HTML,
    include_in_schema=False,
    sync_to_thread=False,
)
def admin_page() -> Response[bytes]:
    """The operators' page: cost per day, today's projection, the costliest users and jobs (``web/admin.js``)."""
    page = _assets()["admin.html"]
    return Response(page.body, media_type=page.media_type, headers=PAGE_HEADERS)


@route(
    "/static/{name:str}",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    include_in_schema=False,
    sync_to_thread=False,
)
def static_file(
    name: FromPath[str],
    if_none_match: Annotated[str, HeaderParameter(name="If-None-Match", required=False)] = "",
) -> Response[bytes]:
    """The page's scripts and styles; revalidated on each load, so an upgrade shows at once."""
    asset = _assets().get(name)
    if asset is None or name.endswith(".html"):  # pages are served at their own addresses
        raise ApiError(404, "not_found", "There is no such file.")
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if if_none_match and asset.etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Response(b"", status_code=304, headers=headers, media_type=asset.media_type)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


ROUTES = [viewer_page, admin_page, static_file]

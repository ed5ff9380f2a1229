"""The viewer page: ``/`` starts a job, ``/jobs/{id}?token=…`` shows one (the same page).

Plain HTML, CSS and JavaScript modules from ``gateway/web``, served at ``/static``; nothing is
fetched from anywhere else (the Content-Security-Policy says so to the browser too). The page
itself needs no token: it reads the job's token from its own address and shows it to the API.
Tokens sit in the page's address, so no request the page makes carries a ``Referer``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from litestar import MediaType, Response, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

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


@cache
def _index() -> bytes:
    return (WEB / "index.html").read_bytes()  # read once per process, not on the event loop per request


@get(["/", "/jobs/{job_id:str}"], media_type=MediaType.HTML, include_in_schema=False, sync_to_thread=False)
def viewer_page() -> Response[bytes]:
    """The viewer (its script shows the start form at ``/`` and the job at ``/jobs/{id}``)."""
    return Response(_index(), media_type=MediaType.HTML, headers=PAGE_HEADERS)


def static_files() -> Router:
    """The page's scripts and styles; revalidated on each load, so an upgrade shows at once."""
    return create_static_files_router(
        path="/static", directories=[WEB], cache_control=CacheControlHeader(no_cache=True), name="viewer-static"
    )

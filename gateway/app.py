"""The HTTP gateway: submit jobs and read them over REST, follow them live over a websocket or SSE.

``POST /v1/jobs`` takes a link (JSON) or a file (multipart, stored in the uploads bucket) and
answers with the job's id and its token (:mod:`gateway.submit`); every per-job endpoint needs
that token (:mod:`gateway.access`, :mod:`gateway.jobs`, :mod:`gateway.audio`); the job's owner
corrects a line with ``PATCH`` (:mod:`gateway.corrections`). The live
transcript streams over a websocket and SSE (:mod:`gateway.stream`, one NATS subscription per
job per process: :mod:`gateway.feed`). Errors have one shape (:mod:`gateway.errors`); who may
call from where is :mod:`gateway.origins`; who is calling, with accounts, is :mod:`gateway.accounts`
and how often they may, :mod:`gateway.ratelimit`; what one client may hold is :mod:`gateway.limits`
and :mod:`gateway.server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

from litestar import HttpMethod, Litestar, MediaType, Response, route
from litestar.config.compression import CompressionConfig
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from core.process import Runtime, connected
from core.settings import Settings
from gateway import accounts, corrections, costs, jobs, openai_compat, origins, pages, purge, ratelimit
from gateway.alerts import AlertSender
from gateway.asyncapi import asyncapi_document
from gateway.audio import job_audio
from gateway.dictionary import dictionary_lookup
from gateway.errors import EXCEPTION_HANDLERS, UNAVAILABLE, dependency_error
from gateway.feed import Feeds
from gateway.kvstore import NatsStore
from gateway.limits import Limiter
from gateway.live import live_session
from gateway.openapi import config as openapi_config
from gateway.openapi import error_responses
from gateway.schemas import Readiness
from gateway.stream import Stalls, job_events, job_stream
from gateway.submit import submit_route
from gateway.webhooks import Notifier
from store.db import create_pool

# Every body but an upload's is small: a JSON submission is a few hundred bytes.
MAX_BODY_BYTES = 64 * 1024
# Not compressed: audio is compressed already (and served in byte ranges); event streams must not wait for a buffer.
_NOT_COMPRESSED = [r"^/v1/jobs/[^/]+/(audio|events|stream)$", r"^/v1/audio/transcriptions$"]


@route("/healthz", http_method=[HttpMethod.GET, HttpMethod.HEAD], media_type=MediaType.TEXT, sync_to_thread=False)
def healthz() -> str:
    """Alive: the process answers (no dependency is checked)."""
    return "ok"


@route(
    "/readyz",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    responses=error_responses(503),
)
async def readyz(state: State) -> Response[Readiness]:
    """Ready: NATS and PostgreSQL both answer (503 names what is down)."""
    rt: Runtime = state.rt
    nats_up = rt.nc.is_connected
    database_up = True
    try:
        async with asyncio.timeout(2):
            await rt.pool.fetchval("SELECT 1")
    except Exception:
        database_up = False
    checks = Readiness(nats="ok" if nats_up else "down", database="ok" if database_up else "down")
    headers = {} if nats_up and database_up else {"Retry-After": "5"}
    return Response(checks, status_code=200 if nats_up and database_up else 503, headers=headers)


def _allow_every_method(app: ASGIApp) -> ASGIApp:
    """``OPTIONS`` names every method of its path.

    Litestar makes a path's OPTIONS answer when the path's first handler is registered and does
    not update it for handlers registered later on the same path (``DELETE /v1/jobs/{id}`` after
    ``GET``), so its ``Allow`` would leave them out.
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "OPTIONS":
            await app(scope, receive, send)
            return
        methods: set[str] = set()
        for path in scope["route_handler"].paths:
            methods |= set(scope["litestar_app"].route_handler_method_map.get(path, {}))

        async def with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and methods:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message = {**message, "headers": [*headers, (b"allow", ", ".join(sorted(methods)).encode())]}
            await send(message)

        await app(scope, receive, with_allow)

    return middleware


def create_app(settings: Settings) -> Litestar:
    """The gateway on the NATS and PostgreSQL the settings name."""

    @contextlib.asynccontextmanager
    async def runtime(app: Litestar) -> AsyncIterator[None]:
        async with connected(settings, "gateway", create_pool, services=["webhooks", "cost-alerts"]) as rt:
            app.state.rt = rt
            app.stores.register(ratelimit.STORE, NatsStore(rt.js), allow_override=True)
            app.state.feeds = Feeds(rt.js, queue_size=settings.stream_queue_size, nc=rt.nc)
            purges = purge.PurgeListener(rt, app.state.feeds)
            await purges.start()
            app.state.stalls = Stalls(settings.gateway_send_timeout_s)
            watchdog = asyncio.create_task(app.state.stalls.watch(), name="stalled-sends")
            # The services stop and drain with the runtime.
            await rt.start({"webhooks": Notifier.open, "cost-alerts": AlertSender.open})
            await purge.sweep_cache(rt)
            # What start-up made (modules, the app, the connections: most of the heap) lives as long
            # as the process: kept out of the collector's full passes, which then took 100-200 ms and
            # stalled every viewer's stream at once (bench/gateway_load.py, 1,000 viewers).
            gc.collect()
            gc.freeze()
            try:
                yield
            finally:
                watchdog.cancel()
                await purges.stop()
                await app.state.feeds.close()

    cors = (
        CORSConfig(
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=list(origins.cors_headers()),
            expose_headers=[
                "Location",
                "ETag",
                "Content-Range",
                "Content-Disposition",
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "RateLimit-Policy",
            ],
            max_age=600,
        )
        if settings.cors_origins
        else None
    )
    handlers: dict[Any, Any] = {**EXCEPTION_HANDLERS, **{kind: dependency_error for kind in UNAVAILABLE}}
    # Who may call from where, then who is calling (their key), then how often they may.
    middleware: list[Any] = [origins.middleware(settings)]
    if settings.auth == "keys":
        middleware.append(accounts.middleware())
    if (limits := ratelimit.config(settings)) is not None:
        middleware.append(limits.middleware)
    middleware.append(_allow_every_method)
    return Litestar(
        route_handlers=[
            healthz,
            readyz,
            submit_route(settings),
            *jobs.ROUTES,
            *corrections.ROUTES,
            job_stream,
            job_events,
            live_session,
            job_audio,
            asyncapi_document,
            dictionary_lookup,
            accounts.me,
            *costs.ROUTES,
            *openai_compat.routes(settings),
            *pages.ROUTES,
        ],
        lifespan=[runtime],
        state=State({"limiter": Limiter(settings), "romanizer": corrections.LazyRomanizer()}),
        middleware=middleware,
        cors_config=cors,
        compression_config=CompressionConfig(
            backend="brotli", brotli_gzip_fallback=True, minimum_size=1024, exclude=_NOT_COMPRESSED
        ),
        openapi_config=openapi_config(),
        exception_handlers=handlers,
        request_max_body_size=MAX_BODY_BYTES,
        logging_config=None,  # the process set logging up (core.logs): level, format, no tokens
    )

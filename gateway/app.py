"""The HTTP gateway: submit jobs and read them over REST.

``POST /v1/jobs`` takes a link (JSON) or a file (multipart, stored in the uploads bucket) and
answers with the job's id and its token; every per-job endpoint needs that token
(:mod:`gateway.access`). Errors have one shape (:mod:`gateway.errors`). The live transcript
streams over a websocket and SSE (:mod:`gateway.stream`, one NATS subscription per job per
process: :mod:`gateway.feed`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from litestar import Litestar, MediaType, Request, Response, delete, get, post
from litestar.datastructures import State, UploadFile
from litestar.exceptions import HTTPException
from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromPath, FromQuery

from core import bus, uploads
from core.messages import ROMANIZATIONS, Cancelled, JobOptions, Romanization
from core.process import Runtime, connected
from core.settings import Settings
from core.topology import AUDIO_BUCKET
from gateway.access import authorize, job_token, token_secret
from gateway.audio import job_audio
from gateway.errors import ApiError, api_error, http_error, internal_error
from gateway.feed import Feeds
from gateway.pages import static_files, viewer_page
from gateway.stream import job_events, job_stream
from scribe import client
from scribe.formats import FORMATS, render
from store import repo
from store.db import create_pool
from streamer.errors import InputError
from streamer.source import check_link

FORMAT_MEDIA = {
    "json": "application/json",
    "srt": "application/x-subrip",
    "vtt": "text/vtt",
    "txt": "text/plain; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
}
# Multipart framing and the form fields besides the file.
_FORM_OVERHEAD = 64 * 1024


class LinkSubmission(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/jobs`` with a JSON body."""

    url: str
    romanization: Romanization = "both"


_ROMANIZATION_SCHEMA = Schema(
    type=OpenAPIType.STRING, enum=list(ROMANIZATIONS), default="both", description="The readings to add."
)


@dataclass
class SubmitOperation(Operation):
    """The submit's body in the OpenAPI document: it is read by hand (JSON or a multipart form),
    so Litestar cannot describe it from the handler's signature."""

    def __post_init__(self) -> None:
        link = Schema(
            type=OpenAPIType.OBJECT,
            required=["url"],
            properties={
                "url": Schema(type=OpenAPIType.STRING, description="An http(s) link to audio or video."),
                "romanization": _ROMANIZATION_SCHEMA,
            },
        )
        upload = Schema(
            type=OpenAPIType.OBJECT,
            required=["file"],
            properties={
                "file": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY, description="The audio file."),
                "romanization": _ROMANIZATION_SCHEMA,
            },
        )
        self.request_body = RequestBody(
            required=True,
            description="A link as JSON, or a file as a multipart form (up to SCRIBE_MAX_UPLOAD_BYTES).",
            content={
                "application/json": OpenAPIMediaType(schema=link),
                "multipart/form-data": OpenAPIMediaType(schema=upload),
            },
        )


@get("/healthz", media_type=MediaType.TEXT)
async def healthz() -> str:
    """Alive: the process answers (no dependency is checked)."""
    return "ok"


@get("/readyz")
async def readyz(state: State) -> Response[dict[str, str]]:
    """Ready: NATS and PostgreSQL both answer."""
    rt: Runtime = state.rt
    checks = {"nats": "ok" if rt.nc.is_connected else "down", "database": "ok"}
    try:
        async with asyncio.timeout(2):
            await rt.pool.fetchval("SELECT 1")
    except Exception:
        checks["database"] = "down"
    ready = all(value == "ok" for value in checks.values())
    return Response(checks, status_code=200 if ready else 503)


@post("/v1/jobs", status_code=202, operation_class=SubmitOperation)
async def submit_job(request: Request, state: State) -> dict[str, Any]:
    """Submit a link (JSON ``{"url", "romanization"}``) or a file (multipart field ``file``).

    An ``Idempotency-Key`` header makes a retried submit answer with the first job.
    """
    rt: Runtime = state.rt
    key = request.headers.get("idempotency-key")
    if key and (first := await repo.idempotent_job(rt.pool, key)) is not None:
        return await _accepted(request, first)
    source, romanization = await _read_submission(request, rt)
    job_id = uuid.uuid4().hex
    options = JobOptions(romanization=romanization)
    async with rt.pool.acquire() as conn, conn.transaction():
        if key and (owner := await repo.claim_idempotency_key(conn, key, job_id)) != job_id:
            return await _accepted(request, owner)  # a concurrent retry won the key
        await repo.create_job(conn, job_id, source, user_id=None, options=options)
        await client.submit(rt.js, source, options=options, job_id=job_id)
    return await _accepted(request, job_id)


async def _read_submission(request: Request, rt: Runtime) -> tuple[str, Romanization]:
    content_type, _ = request.content_type
    if content_type == "multipart/form-data":
        return await _read_upload(request, rt)
    if content_type != "application/json":
        raise ApiError(
            400, "bad_request", 'Send JSON {"url": …, "romanization": …} or a multipart form with the field "file".'
        )
    try:
        link = msgspec.json.decode(await request.body(), type=LinkSubmission)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "bad_request", f"The JSON body is not a submission: {exc}.") from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, "bad_request", "The body is not valid JSON.") from exc
    try:  # a link only: nothing a caller sends makes the gateway look at its own files
        await asyncio.to_thread(check_link, link.url, allow_private=rt.settings.allow_private_urls)
    except InputError as exc:
        raise ApiError(400, "bad_input", exc.reason) from exc
    return link.url, link.romanization


async def _read_upload(request: Request, rt: Runtime) -> tuple[str, Romanization]:
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ApiError(400, "bad_request", 'The form has no file in the field "file".')
    romanization = str(form.get("romanization") or "both")
    if romanization not in ROMANIZATIONS:
        raise ApiError(400, "bad_request", f"romanization must be one of {', '.join(ROMANIZATIONS)}.")
    size = await asyncio.to_thread(upload.file.seek, 0, os.SEEK_END)
    await asyncio.to_thread(upload.file.seek, 0)
    if size > rt.settings.max_upload_bytes:
        raise ApiError(413, "too_large", f"The file is larger than the {rt.settings.max_upload_bytes:,} byte limit.")
    if size == 0:
        raise ApiError(400, "bad_input", "The uploaded file is empty.")
    source = await client.upload(rt.js, upload.file)  # type: ignore[arg-type]
    return source, romanization  # type: ignore[return-value]


async def _accepted(request: Request, job_id: str) -> dict[str, Any]:
    token = job_token(await token_secret(request), job_id)
    base = f"/v1/jobs/{job_id}"
    return {
        "job_id": job_id,
        "token": token,
        "links": {
            "status": base,
            "transcript": f"{base}/transcript",
            "stream": f"{base}/stream",
            "events": f"{base}/events",
            "audio": f"{base}/audio",
            "page": f"/jobs/{job_id}?token={token}",
        },
    }


@get("/v1/jobs")
async def list_jobs(state: State, limit: FromQuery[int] = 20, cursor: FromQuery[str | None] = None) -> dict[str, Any]:
    """Recent jobs, newest first: ids and states only (a job's source and transcript need its token)."""
    if not 1 <= limit <= 100:
        raise ApiError(400, "bad_request", "limit must be between 1 and 100.")
    before = _decode_cursor(cursor) if cursor else None
    jobs = await repo.recent_jobs(state.rt.pool, limit=limit, before=before)
    next_cursor = _encode_cursor(jobs[-1]) if len(jobs) == limit else None
    return {
        "jobs": [
            {
                "job_id": job.id,
                "status": job.status,
                "duration": job.duration,
                "created_at": job.created_at,
                "finished_at": job.finished_at,
            }
            for job in jobs
        ],
        "next_cursor": next_cursor,
    }


def _encode_cursor(job: repo.JobRow) -> str:
    assert job.created_at is not None
    return base64.urlsafe_b64encode(f"{job.created_at.isoformat()}|{job.id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, _, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(created), job_id
    except ValueError as exc:
        raise ApiError(400, "bad_request", "cursor is not one this server gave out; start without it.") from exc


@get("/v1/jobs/{job_id:str}")
async def job_status(request: Request, state: State, job_id: FromPath[str]) -> dict[str, Any]:
    job = await authorize(request, job_id)
    usage = await repo.job_usage(state.rt.pool, job_id)
    return {
        "job_id": job.id,
        "status": job.status,
        "reason": job.reason,
        "warnings": job.warnings,
        "progress": {"seconds_decoded": job.seconds_decoded, "duration": job.duration},
        "chunks_done": job.next_chunk,
        "total_chunks": job.total_chunks,
        "timings": {"created_at": job.created_at, "finished_at": job.finished_at},
        "usage": msgspec.to_builtins(usage),
    }


@delete("/v1/jobs/{job_id:str}", status_code=200)
async def cancel_or_purge(
    request: Request, state: State, job_id: FromPath[str], purge: FromQuery[bool] = False
) -> dict[str, Any]:
    """Cancel a job (the download stops, queued chunks are dropped; chunks already billed stay
    billed), or with ``?purge=true`` delete a finished job's transcript and uploaded audio."""
    rt: Runtime = state.rt
    job = await authorize(request, job_id)
    if purge:
        if not job.finished:
            raise ApiError(409, "running", "The job is still running: cancel it first, then purge it.")
        await repo.purge_job(rt.pool, job_id)
        if uploads.is_upload(job.source):
            await uploads.delete(rt.js, job.source)
        await uploads.delete(rt.js, job_id, bucket=AUDIO_BUCKET)
        (rt.settings.data_dir / "gateway-audio" / f"{job_id}.ogg").unlink(missing_ok=True)
        return {"job_id": job_id, "status": job.status, "purged": True}
    if not await repo.cancel_job(rt.pool, job_id):
        raise ApiError(409, "finished", f"The job has already ended ({job.status}); nothing to cancel.")
    await bus.publish_event(rt.js, Cancelled(job_id=job_id))
    return {"job_id": job_id, "status": "cancelled", "purged": False}


@get("/v1/jobs/{job_id:str}/transcript")
async def job_transcript(
    request: Request,
    state: State,
    job_id: FromPath[str],
    format: FromQuery[str] = "json",
    romanization: FromQuery[str] = "both",
) -> Response[str]:
    """The transcript in a download format; while the job runs, the lines so far (``"partial": true``)."""
    if format not in FORMATS:
        raise ApiError(400, "bad_request", f"format must be one of {', '.join(FORMATS)}.")
    if romanization not in ROMANIZATIONS:
        raise ApiError(400, "bad_request", f"romanization must be one of {', '.join(ROMANIZATIONS)}.")
    job = await authorize(request, job_id)
    if job.purged_at is not None:
        raise ApiError(410, "purged", "This job's transcript and audio were deleted on request.")
    transcript = await repo.transcript(state.rt.pool, job_id, partial=True)
    if transcript is None:
        raise ApiError(409, job.status, f"The job has no transcript ({job.status}): {job.reason}")
    return Response(render(transcript, format, romanization), media_type=FORMAT_MEDIA[format])


def create_app(settings: Settings) -> Litestar:
    """The gateway on the NATS and PostgreSQL the settings name."""

    @contextlib.asynccontextmanager
    async def runtime(app: Litestar) -> AsyncIterator[None]:
        async with connected(settings, "gateway", create_pool, services=[]) as rt:
            app.state.rt = rt
            app.state.feeds = Feeds(rt.js, queue_size=settings.stream_queue_size)
            # What start-up made (modules, the app, the connections: most of the heap) lives as long
            # as the process: kept out of the collector's full passes, which then took 100-200 ms and
            # stalled every viewer's stream at once (bench/gateway_load.py, 1,000 viewers).
            gc.collect()
            gc.freeze()
            try:
                yield
            finally:
                await app.state.feeds.close()

    return Litestar(
        route_handlers=[
            healthz,
            readyz,
            submit_job,
            list_jobs,
            job_status,
            cancel_or_purge,
            job_transcript,
            job_stream,
            job_events,
            job_audio,
            viewer_page,
            static_files(),
        ],
        lifespan=[runtime],
        exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: internal_error},
        request_max_body_size=settings.max_upload_bytes + _FORM_OVERHEAD,
        logging_config=None,  # the process set logging up (core.logs): level, format, no tokens
    )

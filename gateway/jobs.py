"""A job over REST: list, status, transcript, cancel and purge.

Every per-job endpoint checks the job's token first (:func:`gateway.access.authorize`). A download
is named after the job's title and the reading lines it shows (:func:`content_disposition`).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from litestar import HttpMethod, Request, Response, delete, route
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, PathParameter, QueryParameter

from core import bus
from core.messages import Cancelled, Transcript
from core.process import Runtime
from core.text import ReadingLines
from gateway import purge
from gateway.access import authorize, job_token, purged, token_secret
from gateway.accounts import account_of
from gateway.errors import ApiError
from gateway.openapi import API_KEY, JOB_TOKEN, TranscriptOperation, error_responses
from gateway.schemas import Format, JobChanged, JobList, JobProgress, JobStatus, JobSummary, Timings, WebhookState
from scribe.formats import render
from store import repo
from store import webhooks as webhook_store

# Litestar adds "; charset=utf-8" to text/* types itself (a second one would confuse clients).
FORMAT_MEDIA = {
    "json": "application/json",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt",
    "txt": "text/plain",
    "csv": "text/csv",
}

_CURSOR = re.compile(r"^[0-9]{1,16}~[^~]{1,128}$")
_ENDED = {"done": "finished", "failed": "failed", "cancelled": "been stopped"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

JobId = Annotated[str, PathParameter(description="The job's id, from the submit's answer.", max_length=64)]


@route(
    "/v1/jobs",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    responses=error_responses(400, 503),
    security=API_KEY,
    summary="Recent jobs",
)
async def list_jobs(
    request: Request[Any, Any, Any],
    state: State,
    limit: Annotated[int, QueryParameter(ge=1, le=100, description="Jobs per page.")] = 20,
    cursor: Annotated[
        str | None, QueryParameter(description="`next_cursor` of the previous page.", pattern=_CURSOR.pattern)
    ] = None,
) -> JobList:
    """Recent jobs, newest first. With accounts: the key's own jobs (an admin's: everyone's), each with its
    title and its token (for its share link). Without: every job, ids and states only (a job's source and
    transcript need its token)."""
    before = _decode_cursor(cursor) if cursor else None
    account = account_of(request)
    user = None if account is None or account.admin else account.user
    jobs = await repo.recent_jobs(state.rt.pool, limit=limit, before=before, user=user)
    secret = await token_secret(request) if account is not None else None
    next_cursor = _encode_cursor(jobs[-1]) if len(jobs) == limit else None
    return JobList(
        jobs=[
            JobSummary(
                job_id=job.id,
                status=job.status,  # type: ignore[arg-type]
                duration=job.duration,
                created_at=job.created_at,
                finished_at=job.finished_at,
                title=job.title if account is not None else None,
                token=job_token(secret, job.id) if secret is not None else None,
            )
            for job in jobs
        ],
        next_cursor=next_cursor,
    )


def _encode_cursor(job: repo.JobRow) -> str:
    """Where the next page starts: the last job's creation (microseconds since 1970) and id."""
    assert job.created_at is not None
    micros = (job.created_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}~{job.id}"


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Any cursor of the documented form is a place in the list (a made-up one gives some page)."""
    micros, _, job_id = cursor.partition("~")
    try:
        return _EPOCH + timedelta(microseconds=int(micros)), job_id
    except (ValueError, OverflowError) as exc:
        raise ApiError(400, "bad_request", "cursor is not one this server gave out; start without it.") from exc


@route(
    "/v1/jobs/{job_id:str}",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    security=JOB_TOKEN,
    responses=error_responses(401, 404, 503),
    summary="A job's status",
)
async def job_status(request: Request[Any, Any, Any], state: State, job_id: JobId) -> JobStatus:
    """Where the job is, why it ended, what it cost."""
    job = await authorize(request, job_id)
    usage = await repo.job_usage(state.rt.pool, job_id)
    return JobStatus(
        job_id=job.id,
        status=job.status,  # type: ignore[arg-type]
        reason=job.reason,
        warnings=job.warnings,
        progress=JobProgress(seconds_decoded=job.seconds_decoded, duration=job.duration),
        chunks_done=job.next_chunk,
        total_chunks=job.total_chunks,
        timings=Timings(created_at=job.created_at, finished_at=job.finished_at),
        usage=usage,
        purged=job.purged_at is not None,
        webhook=_webhook_state(await webhook_store.delivery(state.rt.pool, job_id)),
        title=job.title,
    )


def _webhook_state(delivery: webhook_store.Delivery | None) -> WebhookState | None:
    if delivery is None:
        return None
    return WebhookState(delivery.state, delivery.attempts, delivery.last_status, delivery.last_error)


@delete(
    "/v1/jobs/{job_id:str}",
    status_code=200,
    security=JOB_TOKEN,
    responses=error_responses(401, 403, 404, 409, 503),
    summary="Cancel or purge a job",
)
async def cancel_or_purge(
    request: Request[Any, Any, Any],
    state: State,
    job_id: JobId,
    purge_: Annotated[
        bool,
        QueryParameter(
            name="purge",
            description="Delete an ended job's lines, audio, upload and events instead of cancelling it.",
        ),
    ] = False,
) -> JobChanged:
    """Cancel a job (the download stops, queued chunks are dropped; chunks already billed stay
    billed), or with ``?purge=true`` delete an ended job's transcript, audio, upload and events."""
    rt: Runtime = state.rt
    job = await authorize(request, job_id, change=True)
    if purge_:
        if not job.finished:
            raise ApiError(
                409,
                "running",
                "This transcript is still being made, so it cannot be deleted yet: stop it first, then delete it. "
                "(Cancel the job with DELETE without ?purge=true, then purge it.)",
            )
        await purge.purge_job(rt, job)
        return JobChanged(job_id=job_id, status=job.status, purged=True)  # type: ignore[arg-type]
    if not await repo.cancel_job(rt.pool, job_id):
        raise ApiError(
            409,
            "finished",
            f"This transcript has already {_ENDED.get(job.status, 'ended')}, so there is nothing to stop. "
            f"(The job has ended: {job.status}.)",
        )
    await bus.publish_event(rt.js, Cancelled(job_id=job_id))
    return JobChanged(job_id=job_id, status="cancelled", purged=False)


@route(
    "/v1/jobs/{job_id:str}/transcript",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    security=JOB_TOKEN,
    operation_class=TranscriptOperation,
    responses={
        200: ResponseSpec(Transcript, description="The transcript in the format asked for.", generate_examples=False),
        **error_responses(400, 401, 404, 409, 410, 503),
    },
    summary="A job's transcript",
)
async def job_transcript(
    request: Request[Any, Any, Any],
    state: State,
    job_id: JobId,
    format: Annotated[Format, QueryParameter(description="The download format.")] = "json",
    romanization: Annotated[
        ReadingLines,
        QueryParameter(
            description="The reading lines of txt, srt and vtt: Jyutping, Yale (tone marks), Yale with tone "
            "numbers, Jyutping and Yale, or none (json and csv carry every reading)."
        ),
    ] = "both",
    if_none_match: Annotated[
        str,
        HeaderParameter(name="If-None-Match", description="A finished transcript's ETag: 304 if it is unchanged."),
    ] = "",
) -> Response[str]:
    """The transcript in a download format; while the job runs, the lines so far (``"partial": true``).

    Corrected lines are downloaded as corrected. ``Content-Disposition`` names the file after the
    job's title and the reading lines (``council meeting (jyutping).srt``), or after the job's id.
    A finished transcript has an ``ETag``; a running one is not cached.
    """
    job = await authorize(request, job_id)
    if job.purged_at is not None:
        raise purged()
    transcript = await repo.transcript(state.rt.pool, job_id, partial=True)
    if transcript is None:
        raise ApiError(409, job.status, _no_transcript(job))
    body = render(transcript, format, romanization)
    disposition = "inline" if format == "json" else "attachment"
    headers = {"Content-Disposition": content_disposition(disposition, job.title, job_id, format, romanization)}
    if transcript.partial:
        headers["Cache-Control"] = "no-store"
        return Response(body, media_type=FORMAT_MEDIA[format], headers=headers)
    etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'
    headers["ETag"] = etag
    headers["Cache-Control"] = "private, no-cache"
    if if_none_match and etag in {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}:
        return Response("", status_code=304, headers=headers, media_type=FORMAT_MEDIA[format])
    return Response(body, media_type=FORMAT_MEDIA[format], headers=headers)


def _no_transcript(job: repo.JobRow) -> str:
    if job.status == "failed":
        return f"This transcript could not be made: {job.reason or 'the job failed.'}"
    return (
        "This transcript was stopped before it was finished, so there is nothing to download. "
        f"(The job was {job.status}: {job.reason or 'no reason given.'})"
    )


# How a file name says which reading lines it shows; json and csv carry every reading and say none.
_READING_NAMES = {
    "jyutping": "jyutping",
    "yale": "yale",
    "yale_numeric": "yale numbers",
    "both": "jyutping and yale",
    "none": "characters",
}
_UNSAFE_IN_NAME = re.compile(r'[\x00-\x1f\x7f"*/:<>?\\|]+')
MAX_NAME_CHARS = 100  # of the title in a file name: 300 bytes of UTF-8 at most, under every file system's limit


def content_disposition(disposition: str, title: str | None, job_id: str, fmt: str, romanization: str) -> str:
    """``Content-Disposition`` naming the download after the job's title and its reading lines (RFC 6266):
    an ASCII ``filename`` for old clients, and the UTF-8 name as ``filename*`` (RFC 5987).

    Args:
        disposition: ``attachment`` or ``inline``.
        title: The job's title; the job's id names the file without one, and in the ASCII name of a
            title that is not ASCII once accents are dropped (``Café`` is ``Cafe``, ``會議`` the id).
        job_id: The job's id.
        fmt: The format, the file's extension.
        romanization: The reading lines shown (not named for json and csv, which carry every reading).
    """
    stem = _UNSAFE_IN_NAME.sub("_", unicodedata.normalize("NFC", title or "")).strip(" ._")[:MAX_NAME_CHARS]
    stem = stem.strip() or job_id
    suffix = f" ({_READING_NAMES[romanization]}).{fmt}" if fmt not in ("json", "csv") else f".{fmt}"
    unaccented = "".join(char for char in unicodedata.normalize("NFKD", stem) if not unicodedata.combining(char))
    ascii_stem = _UNSAFE_IN_NAME.sub("_", unaccented).replace("%", "_")  # some clients decode %xx in filename
    if not ascii_stem.isascii():
        ascii_stem = job_id
    encoded = quote(stem + suffix, safe="!#$&-.^_`|~")  # "+" too: some decoders read it as a space
    return f"{disposition}; filename=\"{ascii_stem}{suffix}\"; filename*=UTF-8''{encoded}"


ROUTES = [list_jobs, job_status, cancel_or_purge, job_transcript]

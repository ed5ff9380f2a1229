"""The HTTP gateway. For now: health and REST reads of jobs and final transcripts.

Job submission over REST and the websocket stream come with the gateway issue; the CLI
and NATS integrations submit jobs today (``scribe.jobs.submitted``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, MediaType, Response, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, FromQuery

from core.messages import ROMANIZATIONS
from core.settings import Settings
from scribe.formats import FORMATS, render
from store import repo
from store.db import create_pool

FORMAT_MEDIA = {
    "json": "application/json",
    "srt": "application/x-subrip",
    "vtt": "text/vtt",
    "txt": "text/plain; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
}


@get("/healthz", media_type=MediaType.TEXT)
async def healthz(state: State) -> str:
    async with state.pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
    return "ok"


@get("/v1/jobs/{job_id:str}")
async def job_status(state: State, job_id: FromPath[str]) -> dict[str, object]:
    job = await repo.get_job(state.pool, job_id)
    if job is None:
        raise NotFoundException(f"no job {job_id}")
    return {
        "job_id": job.id,
        "status": job.status,
        "reason": job.reason,
        "warnings": job.warnings,
        "duration": job.duration,
        "chunks_done": job.next_chunk,
        "total_chunks": job.total_chunks,
    }


@get("/v1/jobs/{job_id:str}/transcript")
async def job_transcript(
    state: State, job_id: FromPath[str], format: FromQuery[str] = "json", romanization: FromQuery[str] = "both"
) -> Response[str]:
    if format not in FORMATS:
        raise ValidationException(f"format must be one of {', '.join(FORMATS)}")
    if romanization not in ROMANIZATIONS:
        raise ValidationException(f"romanization must be one of {', '.join(ROMANIZATIONS)}")
    transcript = await repo.transcript(state.pool, job_id)
    if transcript is None:
        raise NotFoundException(f"job {job_id} has no finished transcript (unknown, running or failed)")
    return Response(render(transcript, format, romanization), media_type=FORMAT_MEDIA[format])


def create_app(settings: Settings) -> Litestar:
    @asynccontextmanager
    async def database(app: Litestar) -> AsyncIterator[None]:
        app.state.pool = await create_pool(settings.database_url)
        try:
            yield
        finally:
            await app.state.pool.close()

    return Litestar(route_handlers=[healthz, job_status, job_transcript], lifespan=[database])

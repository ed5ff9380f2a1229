"""``GET /v1/jobs/{id}/audio``: the job's audio for playback, with HTTP range requests.

The streamer stores the whole timeline (silences included, so line times match) as Ogg/Opus in
the ``scribe-audio`` bucket once the input is decoded. A gateway copies it once into a cache
folder of its own and serves byte ranges from there, so a browser can seek (Litestar has no
range support: ``Range: bytes=a-b``, ``a-`` and ``-n`` are handled here; one range per request;
``If-Range`` with the audio's ``ETag`` or ``Last-Modified`` date). Its ETag is its content's
hash, the same from every gateway process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

from litestar import HttpMethod, Request, Response, route
from litestar.datastructures import ETag, State
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, HeaderParameter
from litestar.response import File

from core import uploads
from core.process import Runtime
from core.topology import AUDIO_BUCKET
from gateway.access import authorize
from gateway.errors import ApiError, ErrorBody, ErrorDetail
from gateway.openapi import JOB_TOKEN, AudioOperation, error_responses
from gateway.purge import audio_cache

MEDIA_TYPE = "audio/ogg"
_RANGE = re.compile(r"bytes=(\d{0,18})-(\d{0,18})")  # 18 digits: every size an int64 can say
_etags: dict[Path, tuple[float, str]] = {}  # path -> (mtime, ETag): a file is hashed once


async def cached_audio(rt: Runtime, job_id: str, *, finished: bool) -> Path:
    """The job's audio in this gateway's cache folder, fetched from the bucket the first time.

    Raises:
        ApiError: 404 while the audio is not stored yet; 410 when the job has ended and it is
            not stored (it expired, or the input never decoded).
    """
    folder = audio_cache(rt)
    path = folder / f"{job_id}.ogg"
    if path.exists():
        return path
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=folder, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as into:
            await uploads.fetch(rt.js, job_id, into, max_bytes=rt.settings.max_download_bytes, bucket=AUDIO_BUCKET)
        os.replace(partial, path)  # whole or not at all, also for a concurrent request
    except uploads.UploadMissing:
        if finished:
            days = rt.settings.audio_retention_s / 86_400
            raise ApiError(
                410,
                "audio_gone",
                f"This job's audio is no longer stored: audio is kept for {days:g} days after a job, and a job "
                "whose input could not be decoded has none. The transcript is still available.",
            ) from None
        raise ApiError(
            404,
            "audio_not_ready",
            "The audio is stored once the input is fully decoded: try again when the job is further along.",
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
    return path


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """``(first, last)`` of a ``Range`` header over ``size`` bytes; None when it asks for none of them.

    Raises:
        ApiError: A header that is not a single byte range.
    """
    match = _RANGE.fullmatch(header.strip())
    if match is None or not (match[1] or match[2]):
        raise ApiError(400, "bad_request", "Range must be one byte range, such as bytes=0-1023.")
    if match[1]:
        first = int(match[1])
        last = min(int(match[2]), size - 1) if match[2] else size - 1
    else:
        first, last = max(0, size - int(match[2])), size - 1
    if first >= size or first > last:
        return None
    return first, last


def _etag(path: Path) -> str:
    mtime = path.stat().st_mtime
    known = _etags.get(path)
    if known is not None and known[0] == mtime:
        return known[1]
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    etag = digest.hexdigest()[:32]
    _etags[path] = (mtime, etag)
    return etag


@route(
    "/v1/jobs/{job_id:str}/audio",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    security=JOB_TOKEN,
    operation_class=AudioOperation,
    responses={
        200: ResponseSpec(bytes, description="The whole audio (Ogg/Opus).", generate_examples=False),
        206: ResponseSpec(bytes, description="The byte range asked for.", generate_examples=False),
        **error_responses(400, 401, 404, 410, 416, 503),
    },
    summary="A job's audio",
)
async def job_audio(
    request: Request[Any, Any, Any],
    state: State,
    job_id: FromPath[str],
    range_: Annotated[
        str,
        HeaderParameter(
            name="Range", description="One byte range: bytes=a-b, bytes=a- or bytes=-n.", pattern=r"^(bytes=\d*-\d*)?$"
        ),
    ] = "",
    if_range: Annotated[
        str,
        HeaderParameter(name="If-Range", description="Honour Range only if the audio still has this ETag."),
    ] = "",
) -> Response[Any]:
    """The job's audio; ``Range`` gives 206 with that part, or 416 past the end."""
    job = await authorize(request, job_id)
    if job.purged_at is not None:
        raise ApiError(410, "purged", "This job's transcript and audio were deleted on request.")
    path = await cached_audio(state.rt, job_id, finished=job.finished)
    size = path.stat().st_size
    etag = await asyncio.to_thread(_etag, path)
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600"}
    if range_ and if_range and if_range.strip() != f'"{etag}"':
        range_ = ""  # the client's copy is of other audio (or dated): send the whole
    if range_ and _reversed(range_):
        range_ = ""  # bytes=9-3 is not a valid range: RFC 9110 has the header ignored
    if not range_:
        return File(
            path,
            media_type=MEDIA_TYPE,
            content_disposition_type="inline",
            filename=f"{job_id}.ogg",
            headers=headers,
            etag=ETag(value=etag),
        )
    headers |= {"ETag": f'"{etag}"', "Content-Disposition": f'inline; filename="{job_id}.ogg"'}
    wanted = byte_range(range_, size)
    if wanted is None:
        body = ErrorBody(
            ErrorDetail(
                code="range_not_satisfiable",
                message=f"The range starts past the end of the audio, which is {size:,} bytes long.",
            )
        )
        return Response(body, status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    first, last = wanted
    data = await asyncio.to_thread(_read, path, first, last - first + 1)
    return Response(
        data,
        status_code=206,
        media_type=MEDIA_TYPE,
        headers={**headers, "Content-Range": f"bytes {first}-{last}/{size}"},
    )


def _reversed(header: str) -> bool:
    match = _RANGE.fullmatch(header.strip())
    return bool(match and match[1] and match[2] and int(match[2]) < int(match[1]))


def _read(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as file:
        file.seek(offset)
        return file.read(size)

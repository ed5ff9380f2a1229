"""``GET /v1/jobs/{id}/audio``: the job's audio for playback, with HTTP range requests.

The streamer stores the whole timeline (silences included, so line times match) as Ogg/Opus in
the ``scribe-audio`` bucket once the input is decoded. A gateway copies it once into a cache
folder of its own and serves byte ranges from there, so a browser can seek (Litestar has no
range support: ``Range: bytes=a-b``, ``a-`` and ``-n`` are handled here; one range per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from pathlib import Path

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import File

from core import uploads
from core.process import Runtime
from core.topology import AUDIO_BUCKET
from gateway.access import authorize
from gateway.errors import ApiError

MEDIA_TYPE = "audio/ogg"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


async def cached_audio(rt: Runtime, job_id: str) -> Path:
    """The job's audio in this gateway's cache folder, fetched from the bucket the first time."""
    folder = rt.settings.data_dir / "gateway-audio"
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
        raise ApiError(
            404,
            "audio_not_ready",
            "The audio is stored once the input is fully decoded, and kept for a limited time: "
            "try again when the job is further along.",
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


@get("/v1/jobs/{job_id:str}/audio")
async def job_audio(request: Request, state: State, job_id: FromPath[str]) -> Response[bytes] | File:
    """The job's audio; ``Range`` gives 206 with that part, or 416 past the end."""
    job = await authorize(request, job_id)
    if job.purged_at is not None:
        raise ApiError(410, "purged", "This job's transcript and audio were deleted on request.")
    path = await cached_audio(state.rt, job_id)
    size = path.stat().st_size
    header = request.headers.get("range")
    if header is None:
        return File(path, media_type=MEDIA_TYPE, content_disposition_type="inline", headers={"Accept-Ranges": "bytes"})
    wanted = byte_range(header, size)
    if wanted is None:
        return Response(b"", status_code=416, headers={"Content-Range": f"bytes */{size}"}, media_type=MEDIA_TYPE)
    first, last = wanted
    body = await asyncio.to_thread(_read, path, first, last - first + 1)
    return Response(
        body,
        status_code=206,
        media_type=MEDIA_TYPE,
        headers={"Content-Range": f"bytes {first}-{last}/{size}", "Accept-Ranges": "bytes"},
    )


def _read(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as file:
        file.seek(offset)
        return file.read(size)

"""The source cache: an input transcribed before is replayed, not fetched and transcribed again.

A job's source key covers its input and everything that changes its transcript:

- the input: a video's ``extractor:id`` on a site yt-dlp knows, or a file's SHA-256 (an upload or
  the ``scribe`` command's file). A direct link to a file has no key: what it names may change
  behind the same URL (the chunk cache still answers its chunks without a call);
- the configured backend and model (and the API's address), the deployment's prompt and the job's,
  the decoding settings, how the audio is cut into chunks, and the length limit the job runs under.
  Romanization is not in it: the romanizer romanizes a replay as it does any job.

A job with a key that a finished job has (the newest one whose every call the configured model
made) replays that job's transcript at once: its chunks' segments go out on
``scribe.segments.<job>`` as the transcriber's would, with usage rows billed 0 and marked as cache
hits, then the end of input; its audio is copied for playback. Viewers and integrators see the job
arrive as any other. A job submitted with ``fresh`` is transcribed again, and becomes the newest
origin. A replayed job is never an origin itself: purging the job that was transcribed removes
the transcript from the cache.
"""

from __future__ import annotations

import hashlib
import tempfile
from typing import BinaryIO, cast

import asyncpg
import msgspec
from nats.js import JetStreamContext

from core import bus, subjects, uploads
from core.messages import ChunkTranscribed, InputEnded, JobSubmitted, Usage
from core.settings import Settings
from core.topology import AUDIO_BUCKET
from store import repo, sources
from store.sources import Origin


def file_identity(path: str) -> str:
    """``sha256:<hex>`` of a file's bytes (blocking: about a second per gigabyte)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def configured_model(settings: Settings) -> tuple[str, str | None]:
    """The backend chunks go to, and its API model (None for the local one, whose model is in the key)."""
    if settings.asr_backend == "openai":
        return "openai", settings.openai_model
    return "local", None


def source_key(identity: str, job: JobSubmitted, settings: Settings, max_seconds: float | None) -> bytes:
    """The key of a job's input with everything that changes its transcript (see the module's docstring).

    Args:
        identity: The input's identity (``extractor:id`` or ``sha256:<hex>``).
        job: The job.
        settings: The deployment's settings (every service of a deployment shares them).
        max_seconds: The plan's length limit, when it is under the deployment's.
    """
    openai = settings.asr_backend == "openai"
    answer = {
        "input": identity,
        "backend": settings.asr_backend,
        "model": settings.openai_model if openai else settings.asr_model,
        "api": settings.openai_base_url if openai else "",
        "prompts": [settings.asr_prompt, job.options.prompt],
        "decoding": [settings.asr_beam_size, settings.asr_word_times, settings.asr_suppress_written],
        "chunks": [*settings.chunk_lengths, settings.chunk_first_max_s, settings.silence_dbfs, settings.bus_codec],
        "vad": settings.vad,
        "limit": min(max_seconds or settings.max_duration_s, settings.max_duration_s),
    }
    return hashlib.sha256(b"source\0" + msgspec.json.encode(answer)).digest()


async def origin_for(pool: asyncpg.Pool, job: JobSubmitted, key: bytes, settings: Settings) -> Origin | None:
    """The finished job whose transcript this job may replay, or None (also for a ``fresh`` job)."""
    if job.options.fresh:
        return None
    backend, model = configured_model(settings)
    return await sources.find(pool, key, backend=backend, model=model, exclude=job.job_id)


async def replay(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    job: JobSubmitted,
    origin: Origin,
    *,
    max_bytes: int,
    playback: bool = True,
) -> bool:
    """Publish ``origin``'s transcript as ``job``'s; False (nothing published) when its audio is gone
    and ``playback`` needs it.

    Safe to repeat (a redelivered job): each chunk's message and usage row are written once.
    """
    with tempfile.TemporaryFile(prefix="scribe-replay-") as audio:
        try:
            source = uploads.PREFIX + origin.job_id
            await uploads.fetch(js, source, cast(BinaryIO, audio), max_bytes=max_bytes, bucket=AUDIO_BUCKET)
        except uploads.UploadError:
            if playback:
                return False  # expired (SCRIBE_AUDIO_RETENTION_S): the job is transcribed as any other
        else:
            audio.seek(0)
            await uploads.put(js, cast(BinaryIO, audio), bucket=AUDIO_BUCKET, name=job.job_id)
    await repo.set_title(pool, job.job_id, origin.title)
    usage = Usage(backend=origin.backend, model=origin.model, billed_seconds=0.0, cost_usd=0.0, cache_hit=True)
    for chunk in origin.chunks:
        await repo.record_usage(
            pool,
            usage,
            job_id=job.job_id,
            chunk_seq=chunk.seq,
            user_id=job.user_id,
            cache_hit=True,
            saved_usd=chunk.worth_usd,
        )
        done = ChunkTranscribed(
            job_id=job.job_id,
            seq=chunk.seq,
            offset=chunk.offset,
            duration=chunk.duration,
            segments=chunk.segments,
            usage=usage,
        )
        await bus.publish(js, subjects.segments(job.job_id), done, msg_id=f"{job.job_id}:{chunk.seq}")
    ended = InputEnded(
        job_id=job.job_id, total_chunks=len(origin.chunks), duration=origin.duration, warnings=origin.warnings
    )
    await bus.publish(js, subjects.segments(job.job_id), ended, msg_id=f"{job.job_id}:end")
    return True

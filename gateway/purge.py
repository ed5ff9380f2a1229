"""Purging an ended job: nothing of its transcript or audio stays readable anywhere.

- PostgreSQL: its lines and raw ASR text (the row and its usage stay, for the ledger).
- JetStream: its events (``scribe.events.<job>``, which would otherwise replay every line to a
  stream or a NATS subscriber for a week) and any transcribed chunks still queued for it.
- The object stores: its upload and its audio.
- Every gateway process: its cached copy of the audio and its feed of the job. The purging
  process announces the purge on ``scribe.purged.<job>`` (core NATS); each process drops what it
  holds. A process that was down then finds out on its next start (:func:`sweep_cache`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from core import subjects, uploads
from core.process import Runtime
from core.topology import AUDIO_BUCKET, EVENTS, SEGMENTS
from gateway.feed import Feeds
from store import repo, webhooks

logger = logging.getLogger(__name__)


def audio_cache(rt: Runtime) -> Path:
    """This gateway's folder of cached audio (one ``<job_id>.ogg`` per job played)."""
    return rt.settings.data_dir / "gateway-audio"


async def purge_job(rt: Runtime, job: repo.JobRow) -> None:
    """Delete what the job's transcript and audio consist of, everywhere, and tell every gateway."""
    await repo.purge_job(rt.pool, job.id)
    await webhooks.abandon(rt.pool, job.id, "The job was purged before its webhook was delivered.")
    for stream, subject in ((EVENTS.name, subjects.events(job.id)), (SEGMENTS.name, subjects.segments(job.id))):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await rt.js.purge_stream(stream, subject=subject)
    if uploads.is_upload(job.source):
        await uploads.delete(rt.js, job.source)
    await uploads.delete(rt.js, job.id, bucket=AUDIO_BUCKET)
    await asyncio.to_thread(_forget_audio, audio_cache(rt), job.id)
    await rt.nc.publish(subjects.purged(job.id), b"")
    logger.info("job purged", extra={"job_id": job.id})


def _forget_audio(folder: Path, job_id: str) -> None:
    (folder / f"{job_id}.ogg").unlink(missing_ok=True)


class PurgeListener:
    """Hears every purge, from any gateway process, and drops this process's copies."""

    def __init__(self, rt: Runtime, feeds: Feeds) -> None:
        self.rt = rt
        self.feeds = feeds
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self.rt.nc.subscribe(f"{subjects.PURGED_PREFIX}.*", cb=self._on_purged)

    async def _on_purged(self, msg: Msg) -> None:
        job_id = msg.subject.rpartition(".")[2]
        await asyncio.to_thread(_forget_audio, audio_cache(self.rt), job_id)
        await self.feeds.purged(job_id)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()
            self._sub = None


async def sweep_cache(rt: Runtime) -> int:
    """Delete cached audio of jobs purged (or gone) while this process was not listening; how many."""
    folder = audio_cache(rt)
    cached = await asyncio.to_thread(lambda: [path.stem for path in folder.glob("*.ogg")] if folder.is_dir() else [])
    if not cached:
        return 0
    keep = await repo.unpurged_jobs(rt.pool, cached)
    stale = [job_id for job_id in cached if job_id not in keep]
    for job_id in stale:
        await asyncio.to_thread(_forget_audio, folder, job_id)
    if stale:
        logger.info("purged audio removed from the cache", extra={"jobs": len(stale)})
    return len(stale)

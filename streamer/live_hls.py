"""A live HLS link as a live session: the stream read through the guard, decoded, and sent to a transcriber.

A submitted link that is a live HLS playlist (no ``#EXT-X-ENDLIST``), or a page yt-dlp resolves to
one (``streamer.source.LiveLink``), is transcribed as ``WS /v1/live`` audio is, with the same policy:

1. The job is offered to the transcribers (``streamer.sessions.offer``): one must take it within
   ``SCRIBE_LIVE_CLAIM_S``, or the job fails as busy. Its limit is the plan's, under ``SCRIBE_LIVE_MAX_S``.
2. The stream is read from its live edge by ``streamer.hls.LiveHls``: the playlist and every segment are
   fetched in Python through the SSRF guard, never by FFmpeg. Each segment is decoded from its bytes
   alone (the container, MPEG-TS, ADTS or fMP4, is found from them) to 16 kHz mono, in a thread, and
   goes to the transcriber (``streamer.sessions.SessionAudio``).
3. The playlist's ``#EXT-X-ENDLIST`` (or a playlist that stops changing), the limit (with a warning), a
   cancel, or the streamer's shutdown ends the session: its audio is stored for playback and the
   transcriber finishes the transcript. A stream that breaks off keeps what was heard, with a warning;
   one that gave no audio at all fails the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import math
import tempfile
from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np

from core import bus
from core.messages import JobSubmitted, LiveStarted
from core.process import Runtime
from core.settings import Settings
from store import repo
from streamer.chunker import SAMPLE_RATE
from streamer.errors import CorruptMedia, InputError, human_duration
from streamer.hls import LiveHls
from streamer.media import open_media
from streamer.sessions import SessionAudio, offer
from streamer.source import LiveLink

logger = logging.getLogger(__name__)

MAX_SEGMENT_BYTES = 64 * 1024 * 1024  # a segment lasts seconds: even a video one at a high bit rate is under it
MAX_BAD_SEGMENTS = 3  # segments in a row that do not decode before the stream counts as broken
PROGRESS_S = 5.0  # how often the seconds read are written to the job (quotas count them as they pass)

NO_AUDIO = (
    "The live stream ended before any audio could be read from it: its playlist ended or stopped changing. "
    "Check that the stream is on air, then submit the link again."
)
NOT_AUDIO = (
    f"The live stream's segments could not be decoded as audio ({MAX_BAD_SEGMENTS} in a row). Check that the "
    "link is an audio or video stream."
)
INTERRUPTED = (
    "Reading the live stream was interrupted (the streamer restarted): the transcript stops there. "
    "Submit the link again to go on."
)


def decode_segment(data: bytes, *, max_duration_s: float) -> np.ndarray:
    """One segment's audio as 16 kHz mono float32, decoded from its bytes alone (blocking).

    ``open_media`` finds the container from the bytes and lets the demuxer open nothing else.

    Raises:
        InputError: The bytes are not audio, or none of it decodes.
    """
    with open_media(io.BytesIO(data), max_duration_s=max_duration_s) as reader:
        blocks = list(reader.samples())
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


class HlsAudio:
    """A live HLS stream's audio, one block per segment, cut at the limit and kept for playback (blocking).

    Args:
        link: The stream.
        settings: The guard's setting and the duration limit.
        limit_s: Seconds of audio to read at most.
        keep: Writes samples for playback (``SessionAudio.keep``), in the reading thread.
    """

    def __init__(self, link: LiveLink, settings: Settings, limit_s: float, keep: Callable[[np.ndarray], None]) -> None:
        self.hls = LiveHls(
            link.playlist,
            headers=link.headers,
            allow_private=settings.allow_private_urls,
            max_segment_bytes=MAX_SEGMENT_BYTES,
            max_seconds=limit_s,
        )
        self.max_duration_s = settings.max_duration_s
        self.limit = round(limit_s * SAMPLE_RATE)
        self.keep = keep
        self.samples = 0
        self.at_limit = False

    @property
    def ended_by(self) -> str | None:
        """``"endlist"``, ``"stale"`` or ``"limit"``, once the stream has ended."""
        return "limit" if self.at_limit else self.hls.ended_by

    def blocks(self) -> Generator[np.ndarray]:
        """Each new segment's samples, from the live edge; a segment that does not decode is skipped.

        Raises:
            InputError: The playlist or a segment cannot be fetched, or ``MAX_BAD_SEGMENTS`` in a row do not decode.
        """
        bad = 0
        for data in self.hls.segments():
            try:
                samples = decode_segment(data, max_duration_s=self.max_duration_s)
            except InputError as exc:
                bad += 1
                logger.info("skipped undecodable live segment", extra={"bad": bad, "reason": exc.reason})
                if bad >= MAX_BAD_SEGMENTS:
                    raise CorruptMedia(NOT_AUDIO) from exc
                continue
            bad = 0
            samples = samples[: self.limit - self.samples]
            self.samples += len(samples)
            self.keep(samples)
            yield samples
            if self.samples >= self.limit:
                self.at_limit = True
                return


async def stream_live(rt: Runtime, job: JobSubmitted, link: LiveLink, stop: asyncio.Event) -> None:
    """Transcribe a live HLS link as a live session, until the stream ends, the limit, a cancel or ``stop``.

    The stream's own failures end the job here (failed, or done with a warning); other errors are raised,
    once the session is ended.
    """
    log = {"job_id": job.job_id}
    row = await repo.get_job(rt.pool, job.job_id)
    if row is not None and row.status == "running":
        # Delivered again: the streamer that read the stream stopped; its session cannot be resumed.
        logger.warning("live stream delivered again: its session ends", extra=log)
        await repo.add_warning(rt.pool, job.job_id, INTERRUPTED)
        with tempfile.TemporaryDirectory(prefix="scribe-live-") as folder:
            await SessionAudio(rt, job.job_id, Path(folder)).end()
        return
    await repo.set_title(rt.pool, job.job_id, link.title)
    limit_s = min(job.max_seconds or math.inf, rt.settings.live_max_s)
    started = LiveStarted(job_id=job.job_id, user_id=job.user_id, options=job.options, max_seconds=limit_s)
    if not await offer(rt, started):  # the job failed: every transcriber is busy
        return
    logger.info("live stream taken", extra={**log, "limit_s": limit_s})
    with tempfile.TemporaryDirectory(prefix="scribe-live-") as folder:
        audio = SessionAudio(rt, job.job_id, Path(folder))
        reader = HlsAudio(link, rt.settings, limit_s, audio.keep)
        problem: str | None = None
        try:
            ended_by = await _read(rt, job.job_id, reader, audio, stop)
        except InputError as exc:
            ended_by, problem = "broken", exc.reason
        except BaseException:
            with contextlib.suppress(Exception):  # the transcriber ends with what it heard, not after its idle wait
                await audio.end()
            raise
        # Before the end marker: the transcriber's own failure for a session without audio must not win.
        await _outcome(rt, job.job_id, audio.seconds, ended_by, problem, limit_s)
        await audio.end()
    logger.info("live stream ended", extra={**log, "by": ended_by, "seconds": round(audio.seconds, 1)})


async def _read(rt: Runtime, job_id: str, reader: HlsAudio, audio: SessionAudio, stop: asyncio.Event) -> str:
    """Publish the stream's audio as it comes; how it ended."""
    blocks = reader.blocks()
    loop = asyncio.get_running_loop()
    stored_at = loop.time()
    try:
        # One segment at a time in a thread: fetching, decoding and writing it block (the poll's wait too).
        while (samples := await asyncio.to_thread(next, blocks, None)) is not None:
            await audio.add(samples)
            if await repo.is_cancelled(rt.pool, job_id):
                return "cancelled"
            if stop.is_set():
                return "stopped"
            if loop.time() - stored_at >= PROGRESS_S:
                stored_at = loop.time()
                await repo.set_progress(rt.pool, job_id, round(audio.seconds, 3))
        return reader.ended_by or "endlist"
    finally:
        with contextlib.suppress(ValueError):  # still running in its thread (this task was cancelled)
            await asyncio.to_thread(blocks.close)


async def _outcome(
    rt: Runtime, job_id: str, seconds: float, ended_by: str, problem: str | None, limit_s: float
) -> None:
    """Fail a session that read no audio; say why one with audio ended early."""
    if seconds == 0 and ended_by != "cancelled":
        await repo.fail_job(rt.pool, job_id, problem or NO_AUDIO, publish=functools.partial(bus.publish_event, rt.js))
        return
    await repo.set_progress(rt.pool, job_id, round(seconds, 3))
    warning = None
    if problem is not None:
        warning = f"The live stream broke off after {human_duration(seconds)}; what came before was transcribed. "
        warning += problem
    elif ended_by == "limit":
        warning = (
            f"The live stream stopped at its limit of {human_duration(limit_s)}: the audio after it was not "
            "transcribed. Submit the link again to go on."
        )
    elif ended_by == "stopped":
        warning = INTERRUPTED
    if warning is not None:
        await repo.add_warning(rt.pool, job_id, warning)

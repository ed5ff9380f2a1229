"""A live session's sending side, shared by ``WS /v1/live`` (the gateway) and live HLS links (the streamer).

The sender offers the session to the transcribers (:func:`offer`) and, once one took it, puts its
audio on ``scribe.live.audio.<job>`` (:class:`SessionAudio`): 16 kHz mono s16le in half-second
messages numbered by their first sample, then, at the end, the playback file into the audio bucket
and the end marker. The transcriber's side is :mod:`transcriber.sessions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from core import bus, subjects
from core.messages import (
    AUDIO_END_HEADER,
    AUDIO_SAMPLE_HEADER,
    LIVE_SAMPLE_RATE,
    Failed,
    LiveClaimed,
    LiveStarted,
    live_notice_decoder,
)
from core.process import Runtime
from core.topology import AUDIO_BUCKET
from core.uploads import put
from store import live as live_store
from streamer.playback import PlaybackWriter

logger = logging.getLogger(__name__)

BATCH_SAMPLES = LIVE_SAMPLE_RATE // 2  # audio goes on the bus in messages of about half a second
BUSY = (
    "Every transcriber is busy with other live sessions; try again in a minute. (An operator adds "
    "transcribers, or raises SCRIBE_LIVE_SESSIONS where the machine has room.)"
)


class SessionAudio:
    """A session's audio on its way: kept for playback, and published in half-second messages."""

    def __init__(self, rt: Runtime, job_id: str, folder: Path) -> None:
        self.rt = rt
        self.job_id = job_id
        self.playback = PlaybackWriter(folder / "audio.ogg")
        self.pending: list[np.ndarray] = []
        self.held = 0  # samples pending
        self.published = 0  # samples on the bus

    @property
    def seconds(self) -> float:
        """Seconds of audio received so far."""
        return (self.published + self.held) / LIVE_SAMPLE_RATE

    def keep(self, samples: np.ndarray) -> None:
        """Write 16 kHz mono float32 samples for playback (blocking: call it in the decoding thread)."""
        self.playback.write(samples)

    async def add(self, samples: np.ndarray) -> None:
        """Queue samples already kept for playback; publish when half a second is due."""
        if len(samples):
            self.pending.append(samples)
            self.held += len(samples)
        if self.held >= BATCH_SAMPLES:
            await self.flush()

    async def flush(self) -> None:
        if not self.held:
            return
        samples = np.concatenate(self.pending)
        self.pending, self.held = [], 0
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        first = self.published
        self.published += len(samples)
        await self.rt.js.publish(
            subjects.live_audio(self.job_id),
            pcm,
            headers={AUDIO_SAMPLE_HEADER: str(first), "Nats-Msg-Id": f"{self.job_id}:audio:{first}"},
        )

    async def end(self) -> None:
        """The rest of the audio, the playback file into the audio bucket, then the end marker."""
        await self.flush()
        try:
            await asyncio.to_thread(self.playback.close)
            if self.published:
                file = await asyncio.to_thread(self.playback.path.open, "rb")
                try:
                    await put(self.rt.js, file, bucket=AUDIO_BUCKET, name=self.job_id)
                finally:
                    file.close()
        except Exception:  # the transcript matters more than its playback
            logger.warning("live audio not stored for playback", extra={"job_id": self.job_id}, exc_info=True)
        await self.rt.js.publish(
            subjects.live_audio(self.job_id),
            b"",
            headers={AUDIO_END_HEADER: str(self.published), "Nats-Msg-Id": f"{self.job_id}:audio:end"},
        )


async def offer(rt: Runtime, started: LiveStarted) -> bool:
    """Offer the session to the transcribers and wait for one to take it; False (the job failed) if none does."""
    job_id = started.job_id
    claimed = asyncio.Event()

    async def on_notice(msg: Any) -> None:
        with contextlib.suppress(ValueError):
            if isinstance(live_notice_decoder.decode(msg.data), LiveClaimed):
                claimed.set()

    sub = await rt.nc.subscribe(subjects.live_updates(job_id), cb=on_notice)
    try:
        await bus.publish(rt.js, subjects.LIVE_SESSIONS, started, msg_id=job_id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(rt.settings.live_claim_s):
                await claimed.wait()
        if claimed.is_set():
            return True
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    if await live_store.refuse(rt.pool, job_id, BUSY):
        await bus.publish_event(rt.js, Failed(job_id=job_id, reason=BUSY))
        logger.warning("live session refused: no transcriber took it", extra={"job_id": job_id})
        return False
    return True  # taken as the wait ran out: the claim won in the database

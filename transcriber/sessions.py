"""Live sessions in the transcriber: one ``LiveStarted`` held for a session's whole length.

The gateway publishes a session on ``scribe.live.sessions`` and its audio on
``scribe.live.audio.<job>``. A transcriber takes at most ``SCRIBE_LIVE_SESSIONS`` at once (its own
consumer, so a session never waits behind 60 s file chunks), claims the job in PostgreSQL, tells
the gateway (``LiveClaimed``), and runs the live policy over the audio as it comes:
LocalAgreement-2 for the local model, utterance mode for a paid API (:mod:`transcriber.live`,
:mod:`transcriber.utterances`).

- A committed line goes to the romanizer as ``ChunkTranscribed(seq=n)`` with the message id
  ``<job>:<n>``: it numbers, stores and publishes lines as for files. Where the session stands is
  then written to PostgreSQL (:mod:`store.live`).
- An interim goes on core NATS to the romanizer, which passes it on romanized: never stored.
- A transcriber that dies stops heartbeating; JetStream gives the message to another, which reads
  the audio again from the last committed time. A committed line repeated by it has a message
  id JetStream has seen, so nothing is repeated, and nothing after the last commit is lost.
- The end marker (close_stream, idle, disconnect, limit) finishes the policy: the rest is
  committed, ``InputEnded`` follows and the session's audio leaves the bus (the gateway has
  stored it for playback).
- A shutting-down transcriber hands its sessions back at once (nak), rather than end them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import time
import wave
from typing import Protocol

import asyncpg
import numpy as np
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api as js_api

from core import bus, subjects
from core.messages import (
    AUDIO_END_HEADER,
    AUDIO_SAMPLE_HEADER,
    LIVE_SAMPLE_RATE,
    ChunkTranscribed,
    InputEnded,
    Lagging,
    LiveClaimed,
    LiveInterim,
    LiveStarted,
    Progress,
    RawSegment,
    Usage,
    encoder,
    live_started_decoder,
)
from core.settings import Settings
from core.topology import LIVE_AUDIO, Consumer
from core.worker import consume, heartbeat, jittered
from store import live as live_store
from store import repo
from transcriber.alerts import CostWatch
from transcriber.asr import AsrBackend, usage_for
from transcriber.errors import TransientAsrError
from transcriber.fallback import Router
from transcriber.live import Line, LiveStart, LiveUpdate, LocalAgreement, local_decoder
from transcriber.local import LocalBackend
from transcriber.utterances import Utterances

logger = logging.getLogger(__name__)

LAGGING_S = 5.0  # a transcript this far behind its audio is reported (once every LAGGING_S at most)
PROGRESS_S = 5.0  # how often the session's progress is published and stored
CANCEL_CHECK_S = PROGRESS_S  # how often a session asks whether its job was cancelled
IDLE_MARGIN_S = 5.0  # beyond SCRIBE_LIVE_IDLE_S: audio this long absent means the gateway is gone
SEND_TRIES = 4  # a paid call's transient failures before the session fails
NO_AUDIO = (
    "The live session ended before any audio arrived. Check that the microphone works (and that the page may "
    "use it), or that the program sends audio as binary messages in the declared encoding."
)


class Policy(Protocol):
    """What LocalAgreement and Utterances share."""

    def feed(self, samples: np.ndarray) -> None: ...

    @property
    def ready(self) -> bool: ...

    @property
    def heard_until(self) -> float: ...

    @property
    def state(self) -> LiveStart: ...

    async def step(self) -> LiveUpdate: ...

    async def finish(self) -> LiveUpdate: ...


class LiveSessions:
    """Consumes ``scribe.live.sessions``: each message a session held until its end."""

    def __init__(
        self,
        settings: Settings,
        nc: NATS,
        pool: asyncpg.Pool,
        consumer: Consumer,
        backend: AsrBackend,
        router: Router,
        alerts: CostWatch,
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.js = nc.jetstream()
        self.pool = pool
        self.consumer = consumer
        self.backend = backend
        self.router = router
        self.alerts = alerts
        self.stop = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        self.stop = stop
        await consume(
            self.nc,
            self.consumer,
            handler=self.handle,
            stop=stop,
            concurrency=self.settings.live_sessions,
            on_exhausted=self.exhausted,
        )

    async def exhausted(self, data: bytes, deliveries: int) -> None:
        started = live_started_decoder.decode(data)
        reason = (
            f"The transcriber taking this live session stopped {deliveries} times; the lines so far are kept. "
            "Start a new session."
        )
        await repo.fail_job(self.pool, started.job_id, reason, publish=functools.partial(bus.publish_event, self.js))

    async def handle(self, msg: Msg) -> None:
        started = live_started_decoder.decode(msg.data)
        takeover = (msg.metadata.num_delivered or 1) > 1
        log = {"job_id": started.job_id, "delivery": msg.metadata.num_delivered}
        async with heartbeat(msg, every=self.consumer.heartbeat_s):
            resume = await live_store.claim(self.pool, started.job_id, takeover=takeover)
            if resume is None:  # the gateway gave up waiting, or the session ended meanwhile
                logger.info("live session not there to take", extra=log)
                await msg.ack()
                return
            await self.nc.publish(
                subjects.live_updates(started.job_id), encoder.encode(LiveClaimed(job_id=started.job_id))
            )
            logger.info("live session taken", extra={**log, "from_s": resume.committed_until})
            start = LiveStart(committed_until=resume.committed_until, next_line=resume.next_line, tail=resume.tail)
            session = Session(self, started, start)
            try:
                ended = await session.run()
            except Exception:
                logger.exception("live session failed", extra=log)
                await repo.fail_job(
                    self.pool,
                    started.job_id,
                    "The live session could not be transcribed because of an internal error; the lines so far "
                    "are kept. Start a new session.",
                    publish=functools.partial(bus.publish_event, self.js),
                )
                ended = True
        if ended:
            await msg.ack()
        else:  # shutting down: another transcriber takes it over now, not after ack_wait
            await msg.nak()

    def policy(self, started: LiveStarted, start: LiveStart) -> Policy:
        """LocalAgreement-2 for the local model; utterance mode for a backend that bills each call."""
        if isinstance(self.backend, LocalBackend):
            return LocalAgreement(local_decoder(self.backend), start=start, context=started.options.prompt)
        return Utterances(functools.partial(self.send, started), start=start)

    async def send(self, started: LiveStarted, samples: np.ndarray, at: float) -> list[RawSegment]:
        """One utterance to the paid API (through the budget guard and the circuit breaker), billed once."""
        audio = await asyncio.to_thread(wav_bytes, samples)
        duration = round(len(samples) / LIVE_SAMPLE_RATE, 3)
        for attempt in range(1, SEND_TRIES + 1):
            choice = await self.router.choose()
            call = functools.partial(
                choice.backend.transcribe,
                audio,
                duration=duration,
                filename=f"{started.job_id}-{int(at * 1000)}.wav",
                prompt=started.options.prompt,
            )
            try:
                result = await self.router.call(choice, call)
                break
            except TransientAsrError as exc:
                if attempt == SEND_TRIES:
                    raise
                await asyncio.sleep(jittered(exc.retry_after) if exc.retry_after is not None else attempt)
        usage = usage_for(result, self.settings)
        # Keyed by the utterance's start (ms): a session taken over sends it again and it is billed once.
        await repo.record_usage(
            self.pool, usage, job_id=started.job_id, chunk_seq=int(at * 1000), user_id=started.user_id
        )
        await self.alerts.after_usage(usage.cost_usd)
        return result.segments


class Session:
    """One session on this transcriber, from its start (or takeover) to its end marker."""

    def __init__(self, owner: LiveSessions, started: LiveStarted, start: LiveStart) -> None:
        self.owner = owner
        self.started = started
        self.job_id = started.job_id
        self.start = start
        self.policy = owner.policy(started, start)
        self.audio: asyncio.Queue[Msg] = asyncio.Queue()
        self.first_sample = round(start.committed_until * LIVE_SAMPLE_RATE)
        self.fed = 0  # session samples received (including those skipped before first_sample)
        self.interims = 0
        self.newest_audio_at = 0.0  # when the newest audio fed was published (Unix seconds)
        self.lag_told_at = 0.0
        self.progress_at = 0.0
        self.cancel_checked_at = 0.0

    async def run(self) -> bool:
        """Transcribe until the end marker (True) or the transcriber's shutdown (False: hand it back)."""
        sub = await self.owner.js.subscribe(
            subjects.live_audio(self.job_id),
            cb=self.audio.put,
            ordered_consumer=True,
            deliver_policy=js_api.DeliverPolicy.ALL,
        )
        idle_s = self.owner.settings.live_idle_s + IDLE_MARGIN_S
        loop = asyncio.get_running_loop()
        heard_at = loop.time()
        try:
            while not self.owner.stop.is_set():
                arrived = [self.audio.get_nowait() for _ in range(self.audio.qsize())]  # while the last step ran
                if not arrived and not self.policy.ready:
                    try:
                        async with asyncio.timeout(0.5):
                            arrived.append(await self.audio.get())
                    except TimeoutError:
                        if loop.time() - heard_at > idle_s:  # the gateway is gone without its end marker
                            logger.warning("live audio stopped without an end; ending the session", extra=self.log)
                            await self.finish(self.fed, reason="The connection to the live session was lost.")
                            return True
                        if await self.cancelled():
                            await self.drop_audio()
                            return True
                        continue
                for msg in arrived:
                    heard_at = loop.time()
                    if (end := self.take(msg)) is not None:
                        await self.finish(end)
                        return True
                if self.policy.ready:
                    await self.publish(await self.policy.step())
                    if not await self.tick():
                        await self.drop_audio()
                        return True
            return False
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    @property
    def log(self) -> dict[str, object]:
        return {"job_id": self.job_id}

    def take(self, msg: Msg) -> int | None:
        """Feed one audio message's samples (those after the resume point); its end in samples if it is the end."""
        headers = msg.headers or {}
        if AUDIO_END_HEADER in headers:
            return int(headers[AUDIO_END_HEADER])
        first = int(headers.get(AUDIO_SAMPLE_HEADER, self.fed))
        samples = np.frombuffer(msg.data, dtype="<i2")
        self.fed = first + len(samples)
        skip = max(0, self.first_sample - first)
        if skip < len(samples):
            self.policy.feed(samples[skip:].astype(np.float32) / 32768.0)
        with contextlib.suppress(Exception):
            self.newest_audio_at = msg.metadata.timestamp.timestamp()
        return None

    async def publish(self, update: LiveUpdate) -> None:
        """Commit the update's lines (then record where the session stands) and pass its interim on."""
        js = self.owner.js
        for line in update.lines:
            await bus.publish(
                js, subjects.segments(self.job_id), self.chunk(line), msg_id=f"{self.job_id}:{line.index}"
            )
        if update.lines:
            state = self.policy.state
            await live_store.save(
                self.owner.pool, self.job_id, live_store.Resume(state.committed_until, state.next_line, state.tail)
            )
        if update.interim is not None:
            # Numbered by the clock: a transcriber taking the session over numbers after this one.
            self.interims = max(self.interims + 1, int(time.time() * 1000))
            interim = LiveInterim(
                job_id=self.job_id, number=self.interims, next_chunk=self.policy.state.next_line, interim=update.interim
            )
            await self.owner.nc.publish(subjects.live_interim(self.job_id), encoder.encode(interim))

    def chunk(self, line: Line) -> ChunkTranscribed:
        segment = line.segment
        # A line is not a call: what the session's calls cost is in the ledger (one row per utterance sent).
        usage = Usage(backend=self.owner.backend.name, model=self.owner.backend.model, billed_seconds=0.0, cost_usd=0.0)
        return ChunkTranscribed(
            job_id=self.job_id,
            seq=line.index,
            offset=segment.start,
            duration=round(segment.end - segment.start, 3),
            segments=[segment],
            usage=usage,
        )

    async def tick(self) -> bool:
        """After a step: tell the viewers when the transcript lags, and publish progress now and then;
        False when the job was cancelled meanwhile."""
        now = time.time()
        delay = now - self.newest_audio_at if self.newest_audio_at else 0.0
        if delay > LAGGING_S and now - self.lag_told_at > LAGGING_S:
            self.lag_told_at = now
            lagging = Lagging(job_id=self.job_id, delay_s=round(delay, 1))
            await self.owner.nc.publish(subjects.live_updates(self.job_id), encoder.encode(lagging))
            logger.warning("live session lagging", extra={**self.log, "delay_s": round(delay, 1)})
        if await self.cancelled():
            return False
        if now - self.progress_at >= PROGRESS_S:
            self.progress_at = now
            await self.progress()
        return True

    async def cancelled(self) -> bool:
        """Whether the job was cancelled, asked of PostgreSQL at most every :data:`CANCEL_CHECK_S`."""
        now = time.monotonic()
        if now - self.cancel_checked_at < CANCEL_CHECK_S:
            return False
        self.cancel_checked_at = now
        return await repo.is_cancelled(self.owner.pool, self.job_id)

    async def progress(self, *, ended: bool = False) -> None:
        heard = round(self.fed / LIVE_SAMPLE_RATE, 3)
        await repo.set_progress(self.owner.pool, self.job_id, heard)
        event = Progress(
            job_id=self.job_id,
            chunks_published=self.policy.state.next_line,
            seconds_decoded=heard,
            duration=heard if ended else None,
            input_ended=ended,
        )
        await bus.publish_event(self.owner.js, event)

    async def finish(self, end: int, *, reason: str | None = None) -> None:
        """The sender is done: commit the rest, record the local model's use, end the input, drop the audio."""
        await self.publish(await self.policy.finish())
        duration = round(max(end, self.fed) / LIVE_SAMPLE_RATE, 3)
        lines = self.policy.state.next_line
        pool = self.owner.pool
        if reason is not None:
            await repo.add_warning(pool, self.job_id, reason)
        if isinstance(self.owner.backend, LocalBackend):  # one ledger row for the session (chunk -1), cost 0
            usage = Usage(
                backend=self.owner.backend.name, model=self.owner.backend.model, billed_seconds=duration, cost_usd=0.0
            )
            await repo.record_usage(pool, usage, job_id=self.job_id, chunk_seq=-1, user_id=self.started.user_id)
        self.fed = max(end, self.fed)
        if not self.fed:
            await repo.fail_job(
                pool, self.job_id, NO_AUDIO, publish=functools.partial(bus.publish_event, self.owner.js)
            )
            await self.drop_audio()
            return
        await self.progress(ended=True)
        ended = InputEnded(job_id=self.job_id, total_chunks=lines, duration=duration)
        await bus.publish(self.owner.js, subjects.segments(self.job_id), ended, msg_id=f"{self.job_id}:end")
        await self.drop_audio()
        logger.info("live session ended", extra={**self.log, "lines": lines, "seconds": duration})

    async def drop_audio(self) -> None:
        """The session's audio leaves the bus (the gateway stored it for playback)."""
        with contextlib.suppress(Exception):
            await self.owner.js.purge_stream(LIVE_AUDIO.name, subject=subjects.live_audio(self.job_id))


def wav_bytes(samples: np.ndarray) -> bytes:
    """16 kHz mono float32 samples as a 16-bit WAV file (what a paid API is sent for one utterance)."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(LIVE_SAMPLE_RATE)
        file.writeframes(pcm)
    return out.getvalue()

"""The transcriber: audio chunks from the work queue in, timed segments out.

Errors map to acks: a transient ASR error naks with backoff (or the server's
Retry-After), a permanent one terms the message and fails the job, and the last allowed
delivery of anything fails the job too, so a job never waits forever.
"""

from __future__ import annotations

import asyncio
import functools
import logging

import asyncpg
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from core import bus, subjects
from core.messages import AudioChunk, ChunkTranscribed, audio_chunk_decoder
from core.process import Runtime
from core.settings import Settings
from core.topology import Consumer
from core.worker import backoff, consume, heartbeat
from store import repo
from transcriber.asr import AsrBackend, filename_for_codec, shifted, usage_for
from transcriber.backends import create_backend
from transcriber.errors import PermanentAsrError, TransientAsrError

logger = logging.getLogger(__name__)


class Transcriber:
    """Consumes ``scribe.chunks`` with several chunks in flight; publishes ``scribe.segments.<job>``."""

    def __init__(
        self, settings: Settings, nc: NATS, pool: asyncpg.Pool, consumer: Consumer, backend: AsrBackend
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.js = nc.jetstream()
        self.pool = pool
        self.consumer = consumer
        self.backend = backend

    @classmethod
    async def open(cls, rt: Runtime) -> Transcriber:
        """The transcriber on a process's connections; loads the ASR model (in a thread) first."""
        backend = await asyncio.to_thread(create_backend, rt.settings)
        return cls(rt.settings, rt.nc, rt.pool, rt.topology.transcriber, backend)

    async def run(self, stop: asyncio.Event) -> None:
        await consume(
            self.nc,
            self.consumer,
            handler=self.handle,
            stop=stop,
            concurrency=self.settings.in_flight,
            on_exhausted=self.exhausted,
        )

    async def close(self) -> None:
        """Release the ASR backend (the model's memory, the API client)."""
        await self.backend.close()

    async def exhausted(self, data: bytes, deliveries: int) -> None:
        """A chunk JetStream gave up on: every worker that took it died or hung."""
        chunk = audio_chunk_decoder.decode(data)
        reason = f"the transcriber stopped responding on this part of the audio {deliveries} times; try again later"
        await self.report_failed(chunk, reason, deliveries=deliveries, subject=subjects.CHUNKS)

    async def handle(self, msg: Msg) -> None:
        chunk = audio_chunk_decoder.decode(msg.data)
        attempt = msg.metadata.num_delivered or 1
        log = {"job_id": chunk.job_id, "chunk_seq": chunk.seq, "delivery": attempt}
        job = await repo.get_job(self.pool, chunk.job_id)
        if job is None or job.finished:
            logger.info("chunk of a finished or unknown job skipped", extra=log)
            await msg.ack()
            return
        try:
            async with heartbeat(msg, every=self.consumer.heartbeat_s):
                filename = filename_for_codec(chunk.codec, f"{chunk.job_id}-{chunk.seq}")
                result = await self.backend.transcribe(
                    chunk.audio, duration=chunk.duration, filename=filename, prompt=job.options.prompt
                )
        except TransientAsrError as exc:
            if attempt >= self.consumer.max_deliver:
                await self.give_up(msg, chunk, f"{exc.reason} (gave up after {attempt} attempts)")
                return
            delay = exc.retry_after if exc.retry_after is not None else backoff(attempt)
            logger.warning("transient ASR error; retrying", extra={**log, "reason": exc.reason, "delay": delay})
            await msg.nak(delay=delay)
            return
        except PermanentAsrError as exc:
            await self.give_up(msg, chunk, exc.reason)
            return
        except Exception:
            if attempt < self.consumer.max_deliver:
                raise  # nak'ed with backoff by the consumer loop
            logger.exception("chunk failed on its last delivery", extra=log)
            await self.give_up(msg, chunk, "The transcriber failed on this part of the audio; try again later.")
            return

        usage = usage_for(result, self.settings)
        await repo.record_usage(self.pool, usage, job_id=chunk.job_id, chunk_seq=chunk.seq, user_id=job.user_id)
        segments = [shifted(s, chunk.offset) for s in result.segments]
        done = ChunkTranscribed(
            job_id=chunk.job_id,
            seq=chunk.seq,
            offset=chunk.offset,
            duration=chunk.duration,
            segments=segments,
            usage=usage,
        )
        await bus.publish(self.js, subjects.segments(chunk.job_id), done, msg_id=f"{chunk.job_id}:{chunk.seq}")
        await msg.ack()
        logger.info("chunk transcribed", extra={**log, "segments": len(segments)})

    async def give_up(self, msg: Msg, chunk: AudioChunk, reason: str) -> None:
        await self.report_failed(chunk, reason, deliveries=msg.metadata.num_delivered or 1, subject=msg.subject)
        await msg.term()

    async def report_failed(self, chunk: AudioChunk, reason: str, *, deliveries: int, subject: str) -> None:
        """Fail the chunk's job, keeping a dead-letter row for the chunk."""
        logger.warning("chunk given up", extra={"job_id": chunk.job_id, "chunk_seq": chunk.seq, "reason": reason})
        await repo.fail_job(
            self.pool,
            chunk.job_id,
            f"Part of the audio (chunk {chunk.seq}) could not be transcribed: {reason}",
            publish=functools.partial(bus.publish_event, self.js),
            dead_letter=repo.DeadLetter(subject, chunk.seq, deliveries, reason),
        )

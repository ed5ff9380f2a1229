"""The transcriber: audio chunks from the work queue in, timed segments out.

Errors map to acks: a transient ASR error naks with backoff (or the server's
Retry-After and a jitter, never less), a permanent one terms the message and fails the job, and the last
allowed delivery of anything fails the job too, so a job never waits forever.

Cost: a chunk heard before is answered from the chunk cache (:mod:`transcriber.cache`), billed 0
and marked a hit; past the daily budget, or while the paid API keeps failing, chunks go to the
fallback (:mod:`transcriber.fallback`). The ledger has one row per chunk, backend and model, so
a redelivered chunk is billed once.
"""

from __future__ import annotations

import asyncio
import functools
import logging

import asyncpg
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from core import bus, subjects
from core.messages import AudioChunk, ChunkTranscribed, Usage, audio_chunk_decoder
from core.process import Runtime
from core.settings import Settings
from core.topology import LIVE_CONSUMER, Consumer
from core.worker import backoff, consume, heartbeat, jittered
from store import cache as chunk_cache
from store import repo
from transcriber.alerts import CostWatch
from transcriber.asr import AsrBackend, AsrResult, filename_for_codec, on_timeline, sent_seconds, usage_for
from transcriber.backends import create_backend
from transcriber.cache import audio_digest, chunk_key
from transcriber.errors import PermanentAsrError, TransientAsrError
from transcriber.fallback import Choice, Router
from transcriber.sessions import LiveSessions

logger = logging.getLogger(__name__)


class Transcriber:
    """Consumes ``scribe.chunks`` with several chunks in flight; publishes ``scribe.segments.<job>``."""

    def __init__(
        self,
        settings: Settings,
        nc: NATS,
        pool: asyncpg.Pool,
        consumer: Consumer,
        backend: AsrBackend,
        *,
        router: Router | None = None,
        live: Consumer = LIVE_CONSUMER,
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.js = nc.jetstream()
        self.pool = pool
        self.consumer = consumer
        self.backend = backend
        self.router = router or Router(settings, pool, backend)
        self.alerts = CostWatch(pool, self.js, settings)
        self.live = LiveSessions(settings, nc, pool, live, backend, self.router, self.alerts)

    @classmethod
    async def open(cls, rt: Runtime) -> Transcriber:
        """The transcriber on a process's connections; loads the ASR model (in a thread) first."""
        backend = await asyncio.to_thread(create_backend, rt.settings)
        return cls(rt.settings, rt.nc, rt.pool, rt.topology.transcriber, backend, live=rt.topology.live)

    async def run(self, stop: asyncio.Event) -> None:
        """File chunks and live sessions, each on its own consumer."""
        chunks = consume(
            self.nc,
            self.consumer,
            handler=self.handle,
            stop=stop,
            concurrency=self.settings.in_flight,
            on_exhausted=self.exhausted,
        )
        await asyncio.gather(chunks, self.live.run(stop))

    async def close(self) -> None:
        """Release the ASR backends (the model's memory, the API clients)."""
        await self.router.close()
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
                choice = await self.router.choose()
                result, hit, key = await self.answer(chunk, job.options.prompt, choice, fresh=job.options.fresh)
        except TransientAsrError as exc:
            if attempt >= self.consumer.max_deliver:
                await self.give_up(msg, chunk, f"{exc.reason} (gave up after {attempt} attempts)")
                return
            delay = jittered(exc.retry_after) if exc.retry_after is not None else backoff(attempt)
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

        if choice.warning and (result.backend, result.model) == (choice.backend.name, choice.backend.model):
            await repo.add_warning(self.pool, chunk.job_id, choice.warning)  # before Final can be built
        priced = usage_for(result, self.settings)  # a hit: what the call it stands for was billed
        if hit:
            usage = Usage(backend=result.backend, model=result.model, billed_seconds=0.0, cost_usd=0.0, cache_hit=True)
        else:
            usage = priced
            await chunk_cache.put(self.pool, key, _cached(result), job_id=chunk.job_id, chunk_seq=chunk.seq)
        await repo.record_usage(
            self.pool,
            usage,
            job_id=chunk.job_id,
            chunk_seq=chunk.seq,
            user_id=job.user_id,
            cache_hit=hit,
            saved_usd=priced.cost_usd if hit else 0.0,
        )
        await self.alerts.after_usage(usage.cost_usd)
        segments = [on_timeline(s, chunk.offset, chunk.speech) for s in result.segments]
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

    async def answer(
        self, chunk: AudioChunk, prompt: str | None, choice: Choice, *, fresh: bool = False
    ) -> tuple[AsrResult, bool, bytes]:
        """The chunk's transcript: ``(result, cache_hit, key)``, from the cache or from the chosen backend.

        The configured backend's stored answer is taken before the fallback's: it costs nothing either.
        The key is where a fresh result is to be stored. A job submitted with ``fresh`` (or with the
        cache off) has keys of its own: only its own redelivered chunks are answered from them.
        """
        digest = await asyncio.to_thread(audio_digest, chunk.codec, chunk.audio)
        scope = None if self.settings.chunk_cache and not fresh else chunk.job_id
        backends = [self.backend, choice.backend] if choice.backend is not self.backend else [self.backend]
        keys = [chunk_key(digest, backend, prompt, job_id=scope) for backend in backends]
        if (cached := await chunk_cache.take(self.pool, keys)) is not None:
            return AsrResult(cached.segments, cached.billed_seconds, cached.backend, cached.model), True, keys[-1]
        send = functools.partial(
            choice.backend.transcribe,
            chunk.audio,
            duration=sent_seconds(chunk.duration, chunk.speech),
            filename=filename_for_codec(chunk.codec, f"{chunk.job_id}-{chunk.seq}"),
            prompt=prompt,
        )
        return await self.router.call(choice, send), False, keys[-1]

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


def _cached(result: AsrResult) -> chunk_cache.CachedChunk:
    return chunk_cache.CachedChunk(result.backend, result.model, result.segments, result.billed_seconds)

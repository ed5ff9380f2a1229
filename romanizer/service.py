"""The romanizer: transcribed chunks in any order in, romanized lines in chunk order out.

State lives in PostgreSQL, not in memory: each message is handled in one transaction
holding the job's row lock, so several romanizers can run and a redelivery changes
nothing. Partial events are published before the commit with message ids, so a crash
between the two is repaired by the redelivery and JetStream drops the repeated events;
the final event goes out after the commit (readers of it find the job done) and again on
any redelivery that finds the job done.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from romanizer.cleanup import collapse_loops, drop_hallucinations
from romanizer.romanize import Romanizer
from scribe import bus, subjects
from scribe.messages import (
    ChunkFailed,
    ChunkTranscribed,
    Failed,
    Final,
    InputEnded,
    Partial,
    RawSegment,
    Segment,
    SegmentsEvent,
    segments_event_decoder,
)
from scribe.worker import consume
from store import repo

logger = logging.getLogger(__name__)


def romanize_chunk(
    romanizer: Romanizer, raw: list[RawSegment], *, chunk_seq: int, first_seq: int, previous: list[str]
) -> list[Segment]:
    """Clean and romanize one chunk's segments, numbering lines from ``first_seq``."""
    normalised = [collapse_loops(romanizer.normalise(s.text)) for s in raw]
    keep = drop_hallucinations(normalised, previous)
    out: list[Segment] = []
    for segment, text, kept in zip(raw, normalised, keep, strict=True):
        if not kept or not text.strip():
            continue
        text, words, jyutping, yale = romanizer.line(text)
        out.append(
            Segment(
                seq=first_seq + len(out),
                chunk_seq=chunk_seq,
                start=segment.start,
                end=segment.end,
                text=text,
                jyutping=jyutping,
                yale=yale,
                words=words,
            )
        )
    return out


class RomanizerService:
    """Consumes ``scribe.segments.>`` and publishes ``scribe.events.<job>``."""

    def __init__(self, nc: NATS, pool: asyncpg.Pool, romanizer: Romanizer | None = None) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.pool = pool
        self.romanizer = romanizer or Romanizer()

    async def run(self, stop: asyncio.Event) -> None:
        await consume(
            self.nc,
            stream=subjects.STREAM_SEGMENTS,
            durable=subjects.CONSUMER_ROMANIZER,
            handler=self.handle,
            stop=stop,
            concurrency=2,
            on_exhausted=self.exhausted,
        )

    async def exhausted(self, data: bytes, deliveries: int) -> None:
        """A message this service failed on every time: fail its job rather than leave it waiting."""
        event = segments_event_decoder.decode(data)
        reason = "The transcript could not be put together because of an internal error; try again later."
        await repo.record_dead_letter(
            self.pool,
            subject=subjects.segments(event.job_id),
            job_id=event.job_id,
            seq=getattr(event, "seq", None),
            deliveries=deliveries,
            reason="romanizer failed on every delivery",
        )
        await repo.fail_job(self.pool, event.job_id, reason)
        failed = Failed(job_id=event.job_id, reason=reason)
        await bus.publish(self.js, subjects.events(event.job_id), failed, msg_id=f"{event.job_id}:failed")

    async def handle(self, msg: Msg) -> None:
        event = segments_event_decoder.decode(msg.data)
        async with self.pool.acquire() as conn, conn.transaction():
            job = await repo.get_job(conn, event.job_id, for_update=True)
            if job is None or job.status == "failed":
                final = None
            elif job.status == "done":
                # A redelivery after the commit: the final event may not have gone out.
                final = await self.final_event(conn, event.job_id)
            else:
                final = await self.apply(conn, event)
        # After the commit, so whoever reacts to it reads the finished transcript.
        if final is not None:
            await bus.publish(self.js, subjects.events(final.job_id), final, msg_id=f"{final.job_id}:final")
        await msg.ack()

    async def apply(self, conn: asyncpg.Connection, event: SegmentsEvent) -> Final | None:
        match event:
            case ChunkTranscribed():
                await repo.save_chunk_result(
                    conn, event.job_id, event.seq, offset=event.offset, duration=event.duration, segments=event.segments
                )
            case InputEnded():
                await repo.set_input_ended(conn, event.job_id, total_chunks=event.total_chunks, duration=event.duration)
            case ChunkFailed():
                reason = f"Part of the audio (chunk {event.seq}) could not be transcribed: {event.reason}"
                await repo.fail_job(conn, event.job_id, reason)
                failed = Failed(job_id=event.job_id, reason=reason)
                await bus.publish(self.js, subjects.events(event.job_id), failed, msg_id=f"{event.job_id}:failed")
                return None
        return await self.emit_ready(conn, event.job_id)

    async def emit_ready(self, conn: asyncpg.Connection, job_id: str) -> Final | None:
        """Emit every chunk that is next in order; finish the job and return its final event when all are in."""
        job = await repo.get_job(conn, job_id)
        assert job is not None
        next_chunk, next_segment = job.next_chunk, job.next_segment
        previous = await repo.last_segment_texts(conn, job_id)
        while (raw := await repo.chunk_result(conn, job_id, next_chunk)) is not None:
            lines = romanize_chunk(self.romanizer, raw, chunk_seq=next_chunk, first_seq=next_segment, previous=previous)
            await repo.insert_segments(conn, job_id, lines)
            next_chunk += 1
            next_segment += len(lines)
            previous = (previous + [s.text for s in lines])[-3:]
            partial = Partial(
                job_id=job_id,
                chunk_seq=next_chunk - 1,
                segments=lines,
                chunks_done=next_chunk,
                total_chunks=job.total_chunks,
            )
            await bus.publish(self.js, subjects.events(job_id), partial, msg_id=f"{job_id}:partial:{next_chunk - 1}")
        if (next_chunk, next_segment) != (job.next_chunk, job.next_segment):
            await repo.advance(conn, job_id, next_chunk=next_chunk, next_segment=next_segment)
        if job.total_chunks is None or next_chunk < job.total_chunks:
            return None
        await repo.finish_job(conn, job_id)
        logger.info("job done", extra={"job_id": job_id, "segments": next_segment})
        return await self.final_event(conn, job_id)

    async def final_event(self, conn: asyncpg.Connection, job_id: str) -> Final:
        job = await repo.get_job(conn, job_id)
        assert job is not None
        usage = await repo.job_usage(conn, job_id)
        return Final(job_id=job_id, duration=job.duration or 0.0, segment_count=job.next_segment, usage=usage)

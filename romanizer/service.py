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
import functools
import logging

import asyncpg
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from core import bus, subjects
from core.messages import (
    ChunkFailed,
    ChunkTranscribed,
    Final,
    InputEnded,
    Partial,
    RawSegment,
    Segment,
    SegmentsEvent,
    segments_event_decoder,
)
from core.process import Runtime
from core.topology import Consumer
from core.worker import consume
from romanizer.cleanup import collapse_loops, drop_hallucinations
from romanizer.romanize import Romanizer
from store import repo

logger = logging.getLogger(__name__)

NOTHING_HEARD = (
    "No words could be made out: the audio has sound where speech was expected, but the speech "
    "model heard no words in it (noise, music, or very unclear speech). Check that the recording "
    "has someone speaking clearly."
)


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
        line = romanizer.read(text)
        out.append(
            Segment(
                seq=first_seq + len(out),
                chunk_seq=chunk_seq,
                start=segment.start,
                end=segment.end,
                text=line.text,
                jyutping=line.jyutping,
                yale=line.yale,
                words=line.words,
                chars=line.chars,
            )
        )
    return out


class RomanizerService:
    """Consumes ``scribe.segments.>`` and publishes ``scribe.events.<job>``."""

    def __init__(self, nc: NATS, pool: asyncpg.Pool, consumer: Consumer, romanizer: Romanizer | None = None) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.pool = pool
        self.consumer = consumer
        self.romanizer = romanizer or Romanizer()

    @classmethod
    async def open(cls, rt: Runtime) -> RomanizerService:
        """The romanizer on a process's connections; loads its dictionaries (in a thread) first."""
        return cls(rt.nc, rt.pool, rt.topology.romanizer, await asyncio.to_thread(Romanizer))

    async def run(self, stop: asyncio.Event) -> None:
        await consume(
            self.nc, self.consumer, handler=self.handle, stop=stop, concurrency=2, on_exhausted=self.exhausted
        )

    async def close(self) -> None:
        """Nothing to release: the connections belong to the process."""

    async def exhausted(self, data: bytes, deliveries: int) -> None:
        """A message this service failed on every time: fail its job rather than leave it waiting."""
        event = segments_event_decoder.decode(data)
        await self.fail(
            self.pool,
            event.job_id,
            "The transcript could not be put together because of an internal error; try again later.",
            dead_letter=repo.DeadLetter(
                subjects.segments(event.job_id),
                getattr(event, "seq", None),
                deliveries,
                "romanizer failed on every delivery",
            ),
        )

    async def fail(
        self, db: repo.Executor, job_id: str, reason: str, *, dead_letter: repo.DeadLetter | None = None
    ) -> None:
        """Fail the job unless it has finished (the first outcome wins) and tell its subscribers why."""
        publish = functools.partial(bus.publish_event, self.js)
        await repo.fail_job(db, job_id, reason, publish=publish, dead_letter=dead_letter)

    async def handle(self, msg: Msg) -> None:
        event = segments_event_decoder.decode(msg.data)
        async with self.pool.acquire() as conn, conn.transaction():
            job = await repo.get_job(conn, event.job_id, for_update=True)
            if job is None or job.status in ("failed", "cancelled"):
                final = None
            elif job.status == "done":
                # A redelivery after the commit: the final event may not have gone out.
                final = await self.final_event(conn, event.job_id)
            else:
                final = await self.apply(conn, event)
        # After the commit, so whoever reacts to it reads the finished transcript.
        if final is not None:
            await bus.publish_event(self.js, final)
        await msg.ack()

    async def apply(self, conn: asyncpg.Connection, event: SegmentsEvent) -> Final | None:
        match event:
            case ChunkTranscribed():
                await repo.save_chunk_result(
                    conn, event.job_id, event.seq, offset=event.offset, duration=event.duration, segments=event.segments
                )
            case InputEnded():
                await repo.set_input_ended(
                    conn,
                    event.job_id,
                    total_chunks=event.total_chunks,
                    duration=event.duration,
                    warnings=event.warnings,
                )
            case ChunkFailed():  # from a transcriber of an integrator's: ours fail the job themselves
                reason = f"Part of the audio (chunk {event.seq}) could not be transcribed: {event.reason}"
                await self.fail(conn, event.job_id, reason)
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
            await bus.publish_event(self.js, partial)
        if (next_chunk, next_segment) != (job.next_chunk, job.next_segment):
            await repo.advance(conn, job_id, next_chunk=next_chunk, next_segment=next_segment)
        if job.total_chunks is None or next_chunk < job.total_chunks:
            return None
        if next_segment == 0:  # every chunk came back empty: an empty transcript is no success
            await self.fail(conn, job_id, " ".join([NOTHING_HEARD, *job.warnings]))
            return None
        await repo.finish_job(conn, job_id)
        logger.info("job done", extra={"job_id": job_id, "segments": next_segment})
        return await self.final_event(conn, job_id)

    async def final_event(self, conn: asyncpg.Connection, job_id: str) -> Final:
        job = await repo.get_job(conn, job_id)
        assert job is not None
        usage = await repo.job_usage(conn, job_id)
        return Final(
            job_id=job_id,
            duration=job.duration or 0.0,
            segment_count=job.next_segment,
            usage=usage,
            warnings=job.warnings,
        )

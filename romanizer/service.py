"""The romanizer: transcribed chunks in any order in, romanized lines in chunk order out.

State lives in PostgreSQL, not in memory: each message is handled in one transaction
holding the job's row lock, so several romanizers can run and a redelivery changes
nothing. Events go out only after that transaction commits, so no viewer sees a line the
store then rolls back. The job row is the outbox that keeps a crash between the commit and
the publish from losing an event: ``next_chunk`` counts the chunks whose lines are stored,
``published_chunks`` those whose ``Partial`` is on the bus. After every message, a
redelivery included, the romanizer publishes the chunks in between in chunk order (the
lines it has just built, or the stored ones) and then moves the mark; the events' message
ids make JetStream drop any it published before a crash came ahead of the mark. Then the
job's terminal event: ``Final`` when it is done, ``Failed`` (kept aside while the
transaction ran) when it failed, again on any redelivery that finds it so.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass

import asyncpg
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from core import bus, subjects
from core.messages import (
    ChunkFailed,
    ChunkTranscribed,
    Failed,
    Final,
    InputEnded,
    InterimLine,
    LiveInterim,
    Partial,
    RawSegment,
    Segment,
    SegmentsEvent,
    encoder,
    live_interim_decoder,
    segments_event_decoder,
)
from core.process import Runtime
from core.topology import Consumer
from core.worker import consume
from romanizer.cleanup import collapse_loops, drop_hallucinations
from romanizer.lines import char_timings, cut, whole
from romanizer.romanize import Romanizer
from store import repo

logger = logging.getLogger(__name__)

# The lines before a chunk that its first segment is compared with (a repeat of the last segment
# is a hallucination): a segment of Whisper's 30 s window is cut into at most about 8 lines.
PREVIOUS_LINES = 8

NOTHING_HEARD = (
    "No words could be made out: the audio has sound where speech was expected, but the speech "
    "model heard no words in it (noise, music, or very unclear speech). Check that the recording "
    "has someone speaking clearly."
)
NOTHING_HEARD_LIVE = (
    "No words were heard in this live session. Check that the microphone is not muted and is the one "
    "you speak into (the level meter moves when you speak), then start a new session."
)


def romanize_interim(romanizer: Romanizer, live: LiveInterim) -> InterimLine:
    """A live session's line in progress, read as a committed line is (no clean-up: it may still change)."""
    interim = live.interim
    stable = romanizer.normalise(interim.stable)
    text = romanizer.normalise(interim.stable + interim.tentative)
    if not text.startswith(stable):  # normalising the whole moved a mark at the join: the stable part stands
        text = stable + romanizer.normalise(interim.tentative)
    raw = RawSegment(start=interim.start, end=interim.end, text=text, words=interim.words)
    piece = whole(romanizer.read(text), char_timings(raw, text, romanizer.traditional), interim.start, interim.end)
    return InterimLine(
        job_id=live.job_id,
        number=live.number,
        next_chunk=live.next_chunk,
        start=interim.start,
        end=interim.end,
        stable=stable,
        tentative=text[len(stable) :],
        chars=piece.chars,
    )


def romanize_chunk(
    romanizer: Romanizer, raw: list[RawSegment], *, chunk_seq: int, first_seq: int, previous: list[str]
) -> list[Segment]:
    """Clean and romanize one chunk's segments, cut into lines (:mod:`romanizer.lines`) numbered from ``first_seq``."""
    normalised = [collapse_loops(romanizer.normalise(s.text)) for s in raw]
    keep = drop_hallucinations(normalised, previous)
    out: list[Segment] = []
    for segment, text, kept in zip(raw, normalised, keep, strict=True):
        if not kept or not text.strip():
            continue
        timings = char_timings(segment, text, romanizer.traditional)
        for piece in cut(romanizer.read(text), timings, segment.start, segment.end):
            out.append(
                Segment(
                    seq=first_seq + len(out),
                    chunk_seq=chunk_seq,
                    start=piece.start,
                    end=piece.end,
                    text=piece.text,
                    jyutping=piece.jyutping,
                    yale=piece.yale,
                    words=piece.words,
                    chars=piece.chars,
                )
            )
    return out


@dataclass(frozen=True)
class Outcome:
    """What a handled message leaves to publish once its transaction has committed.

    Attributes:
        job: The job as the transaction left it.
        partials: The Partials of the chunks that transaction emitted, in order.
        terminal: The job's ``Final`` or ``Failed`` event, when it has ended so.
    """

    job: repo.JobRow
    partials: list[Partial]
    terminal: Final | Failed | None


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
        """Transcribed chunks from their stream; live sessions' interim lines from core NATS (one romanizer each)."""
        interims = await self.nc.subscribe(f"{subjects.LIVE_INTERIM_PREFIX}.*", queue="romanizer", cb=self.interim)
        try:
            await consume(
                self.nc, self.consumer, handler=self.handle, stop=stop, concurrency=2, on_exhausted=self.exhausted
            )
        finally:
            with contextlib.suppress(Exception):
                await interims.unsubscribe()

    async def interim(self, msg: Msg) -> None:
        """Romanize a live session's line in progress and pass it on to the gateways (never stored)."""
        try:
            live = live_interim_decoder.decode(msg.data)
            line = romanize_interim(self.romanizer, live)
            await self.nc.publish(subjects.live_updates(live.job_id), encoder.encode(line))
        except Exception:  # an interim is replaced within a second: losing one is harmless
            logger.warning("interim line dropped", exc_info=True)

    async def close(self) -> None:
        """Nothing to release: the connections belong to the process."""

    async def exhausted(self, data: bytes, deliveries: int) -> None:
        """A message this service failed on every time: fail its job rather than leave it waiting.

        Lines stored but not yet published go out first if they can, so viewers get them before the failure.
        """
        event = segments_event_decoder.decode(data)
        job = await repo.get_job(self.pool, event.job_id)
        if job is not None and job.status in ("queued", "running"):
            try:
                await self.flush(job, [])
            except Exception:  # failing the job matters more than the events of its last lines
                logger.warning("stored lines left unpublished", extra={"job_id": job.id}, exc_info=True)
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
        self,
        db: repo.Executor,
        job_id: str,
        reason: str,
        *,
        publish: repo.PublishFailed | None = None,
        dead_letter: repo.DeadLetter | None = None,
    ) -> None:
        """Fail the job unless it has finished (the first outcome wins) and tell its subscribers why.

        ``publish`` replaces publishing the ``Failed`` event at once: inside a transaction it is
        kept, to go out after the commit.
        """
        publish = publish or functools.partial(bus.publish_event, self.js)
        await repo.fail_job(db, job_id, reason, publish=publish, dead_letter=dead_letter)

    async def handle(self, msg: Msg) -> None:
        event = segments_event_decoder.decode(msg.data)
        async with self.pool.acquire() as conn, conn.transaction():
            outcome = await self.settle(conn, event)
        # Only after the commit: what a rollback takes back was never seen.
        if outcome is not None:
            await self.flush(outcome.job, outcome.partials)
            if outcome.terminal is not None:
                await bus.publish_event(self.js, outcome.terminal)
        await msg.ack()

    async def settle(self, conn: asyncpg.Connection, event: SegmentsEvent) -> Outcome | None:
        """Apply the event under the job's row lock; what there is to publish once it commits."""
        job = await repo.get_job(conn, event.job_id, for_update=True)
        if job is None or job.status == "cancelled":
            return None  # its viewers were told no more lines come
        failures: list[Failed] = []
        partials: list[Partial] = []
        if job.status in ("queued", "running"):

            async def keep(failed: Failed) -> object:
                failures.append(failed)
                return None

            partials = await self.apply(conn, event, keep)
            job = await repo.get_job(conn, event.job_id)
            assert job is not None
        terminal: Final | Failed | None = None
        if job.status == "done":
            terminal = await self.final_event(conn, job)
        elif job.status == "failed":  # now, or before: a redelivery repeats the event (JetStream drops it)
            terminal = failures[-1] if failures else Failed(job_id=job.id, reason=job.reason or "The job failed.")
        return Outcome(job, partials, terminal)

    async def apply(
        self, conn: asyncpg.Connection, event: SegmentsEvent, publish_failed: repo.PublishFailed
    ) -> list[Partial]:
        """Store the event and emit what it makes ready; the Partials of the chunks emitted."""
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
                await self.fail(conn, event.job_id, reason, publish=publish_failed)
                return []
        return await self.emit_ready(conn, event.job_id, publish_failed)

    async def emit_ready(
        self, conn: asyncpg.Connection, job_id: str, publish_failed: repo.PublishFailed
    ) -> list[Partial]:
        """Emit every chunk that is next in order, and finish the job when all are in.

        Returns:
            The Partial event of each chunk emitted, in order, to publish after the commit.
        """
        job = await repo.get_job(conn, job_id)
        assert job is not None
        next_chunk, next_segment = job.next_chunk, job.next_segment
        previous = await repo.last_segment_texts(conn, job_id, PREVIOUS_LINES)
        partials: list[Partial] = []
        while (raw := await repo.chunk_result(conn, job_id, next_chunk)) is not None:
            lines = romanize_chunk(self.romanizer, raw, chunk_seq=next_chunk, first_seq=next_segment, previous=previous)
            await repo.insert_segments(conn, job_id, lines)
            next_chunk += 1
            next_segment += len(lines)
            previous = (previous + [s.text for s in lines])[-PREVIOUS_LINES:]
            partials.append(
                Partial(
                    job_id=job_id,
                    chunk_seq=next_chunk - 1,
                    segments=lines,
                    chunks_done=next_chunk,
                    total_chunks=job.total_chunks,
                )
            )
        if (next_chunk, next_segment) != (job.next_chunk, job.next_segment):
            await repo.advance(conn, job_id, next_chunk=next_chunk, next_segment=next_segment)
        if job.total_chunks is None or next_chunk < job.total_chunks:
            return partials
        if next_segment == 0:  # every chunk came back empty: an empty transcript is no success
            said = NOTHING_HEARD_LIVE if job.source.startswith("live:") else NOTHING_HEARD
            await self.fail(conn, job_id, " ".join([said, *job.warnings]), publish=publish_failed)
            return partials
        await repo.finish_job(conn, job_id)
        logger.info("job done", extra={"job_id": job_id, "segments": next_segment})
        return partials

    async def flush(self, seen: repo.JobRow, built: list[Partial]) -> None:
        """Publish the Partial of every chunk stored but not yet published, in chunk order; then move the mark.

        Runs under the job's row lock: flushes of one job take turns (the later one finds
        nothing left), and a cancellation waits for the one under way, so no line goes out
        after the ``Cancelled`` event.

        Args:
            seen: The job as the message's transaction left it.
            built: The Partials that transaction built; the others come from the store.
        """
        if seen.published_chunks >= seen.next_chunk:
            return  # chunks stored after this message's commit are their own messages' to publish
        async with self.pool.acquire() as conn, conn.transaction():
            job = await repo.get_job(conn, seen.id, for_update=True)
            if job is None or job.status == "cancelled" or job.published_chunks >= job.next_chunk:
                return
            ready = {partial.chunk_seq: partial for partial in built}
            missing = [c for c in range(job.published_chunks, job.next_chunk) if c not in ready]
            stored = await repo.segments_of_chunks(conn, job.id, missing[0], missing[-1] + 1) if missing else {}
            for chunk_seq in range(job.published_chunks, job.next_chunk):
                partial = ready.get(chunk_seq) or Partial(
                    job_id=job.id,
                    chunk_seq=chunk_seq,
                    segments=stored.get(chunk_seq, []),
                    chunks_done=chunk_seq + 1,
                    total_chunks=job.total_chunks,
                )
                await bus.publish_event(self.js, partial)
            await repo.mark_published(conn, job.id, job.next_chunk)

    async def final_event(self, conn: asyncpg.Connection, job: repo.JobRow) -> Final:
        usage = await repo.job_usage(conn, job.id)
        return Final(
            job_id=job.id,
            duration=job.duration or 0.0,
            segment_count=job.next_segment,
            usage=usage,
            warnings=job.warnings,
        )

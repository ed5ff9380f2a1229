"""Reads and writes of jobs, chunks, segments, transcripts and usage.

Every write a redelivered message can repeat is idempotent (``ON CONFLICT``), so
at-least-once delivery on the bus gives exactly-once effect here. The usage ledger is the
exception on purpose: a redelivered chunk calls the ASR again, and that call is billed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg
import msgspec

from scribe.messages import JobOptions, RawSegment, Segment, Transcript, Usage, Word

# Either works: a pool for one statement, a connection inside a transaction.
Executor: TypeAlias = "asyncpg.Connection[Any] | asyncpg.Pool[Any]"

_raw_segments = msgspec.json.Decoder(list[RawSegment])
_words = msgspec.json.Decoder(list[Word])
_json = msgspec.json.Encoder()


@dataclass(frozen=True)
class JobRow:
    id: str
    user_id: str | None
    source: str
    status: str
    reason: str | None
    options: JobOptions
    duration: float | None
    total_chunks: int | None
    next_chunk: int
    next_segment: int

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> JobRow:
        return cls(
            id=r["id"],
            user_id=r["user_id"],
            source=r["source"],
            status=r["status"],
            reason=r["reason"],
            options=msgspec.json.decode(r["options"], type=JobOptions),
            duration=r["duration"],
            total_chunks=r["total_chunks"],
            next_chunk=r["next_chunk"],
            next_segment=r["next_segment"],
        )

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")


async def create_job(db: Executor, job_id: str, source: str, *, user_id: str | None, options: JobOptions) -> None:
    await db.execute(
        "INSERT INTO jobs (id, source, user_id, options) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
        job_id,
        source,
        user_id,
        _json.encode(options).decode(),
    )


async def get_job(db: Executor, job_id: str, *, for_update: bool = False) -> JobRow | None:
    sql = "SELECT * FROM jobs WHERE id = $1" + (" FOR UPDATE" if for_update else "")
    record = await db.fetchrow(sql, job_id)
    return JobRow.from_record(record) if record else None


async def mark_running(db: Executor, job_id: str) -> None:
    await db.execute(
        "UPDATE jobs SET status = 'running', updated_at = now() WHERE id = $1 AND status IN ('queued', 'running')",
        job_id,
    )


async def fail_job(db: Executor, job_id: str, reason: str) -> bool:
    """Mark a job failed; False when it had already finished (the first outcome wins)."""
    status = await db.fetchval(
        "UPDATE jobs SET status = 'failed', reason = $2, updated_at = now(), finished_at = now()"
        " WHERE id = $1 AND status IN ('queued', 'running') RETURNING status",
        job_id,
        reason,
    )
    return status is not None


async def set_input_ended(db: Executor, job_id: str, *, total_chunks: int, duration: float) -> None:
    await db.execute(
        "UPDATE jobs SET total_chunks = $2, duration = $3, updated_at = now() WHERE id = $1",
        job_id,
        total_chunks,
        duration,
    )


async def save_chunk_result(
    db: Executor, job_id: str, seq: int, *, offset: float, duration: float, segments: list[RawSegment]
) -> None:
    """Keep the first transcription of a chunk; a redelivered one changes nothing."""
    await db.execute(
        "INSERT INTO chunks (job_id, seq, offset_s, duration_s, raw_segments, transcribed_at)"
        " VALUES ($1, $2, $3, $4, $5, now())"
        " ON CONFLICT (job_id, seq) DO UPDATE SET raw_segments = COALESCE(chunks.raw_segments, EXCLUDED.raw_segments),"
        " transcribed_at = COALESCE(chunks.transcribed_at, EXCLUDED.transcribed_at)",
        job_id,
        seq,
        offset,
        duration,
        _json.encode(segments).decode(),
    )


async def chunk_result(db: Executor, job_id: str, seq: int) -> list[RawSegment] | None:
    raw = await db.fetchval(
        "SELECT raw_segments FROM chunks WHERE job_id = $1 AND seq = $2 AND raw_segments IS NOT NULL", job_id, seq
    )
    return _raw_segments.decode(raw) if raw is not None else None


async def last_segment_texts(db: Executor, job_id: str, limit: int = 3) -> list[str]:
    rows = await db.fetch("SELECT text FROM segments WHERE job_id = $1 ORDER BY seq DESC LIMIT $2", job_id, limit)
    return [r["text"] for r in reversed(rows)]


async def insert_segments(db: Executor, job_id: str, segments: list[Segment]) -> None:
    await db.executemany(
        "INSERT INTO segments (job_id, seq, chunk_seq, start_s, end_s, text, jyutping, yale, words)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (job_id, seq) DO NOTHING",
        [
            (job_id, s.seq, s.chunk_seq, s.start, s.end, s.text, s.jyutping, s.yale, _json.encode(s.words).decode())
            for s in segments
        ],
    )


async def advance(db: Executor, job_id: str, *, next_chunk: int, next_segment: int) -> None:
    await db.execute(
        "UPDATE jobs SET next_chunk = $2, next_segment = $3, updated_at = now() WHERE id = $1",
        job_id,
        next_chunk,
        next_segment,
    )


async def finish_job(db: Executor, job_id: str) -> int:
    """Write the transcript row and mark the job done; returns the segment count."""
    count, text = await db.fetchrow(
        "SELECT count(*), COALESCE(string_agg(text, E'\\n' ORDER BY seq), '') FROM segments WHERE job_id = $1", job_id
    )
    await db.execute(
        "INSERT INTO transcripts (job_id, segment_count, duration, text)"
        " SELECT id, $2, COALESCE(duration, 0), $3 FROM jobs WHERE id = $1 ON CONFLICT (job_id) DO NOTHING",
        job_id,
        count,
        text,
    )
    await db.execute(
        "UPDATE jobs SET status = 'done', updated_at = now(), finished_at = now()"
        " WHERE id = $1 AND status IN ('queued', 'running')",
        job_id,
    )
    return int(count)


async def record_usage(
    db: Executor, usage: Usage, *, job_id: str, chunk_seq: int | None, user_id: str | None, cache_hit: bool = False
) -> None:
    await db.execute(
        "INSERT INTO usage (job_id, user_id, chunk_seq, backend, model, billed_seconds, cost_usd, cache_hit)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        job_id,
        user_id,
        chunk_seq,
        usage.backend,
        usage.model,
        usage.billed_seconds,
        usage.cost_usd,
        cache_hit,
    )


async def job_usage(db: Executor, job_id: str) -> Usage:
    """The job's total from the ledger; backend and model name the most used ones."""
    row = await db.fetchrow(
        "SELECT COALESCE(sum(billed_seconds), 0) AS seconds, COALESCE(sum(cost_usd), 0) AS cost,"
        " mode() WITHIN GROUP (ORDER BY backend) AS backend, mode() WITHIN GROUP (ORDER BY model) AS model"
        " FROM usage WHERE job_id = $1",
        job_id,
    )
    return Usage(
        backend=row["backend"] or "none",
        model=row["model"] or "none",
        billed_seconds=round(float(row["seconds"]), 3),
        cost_usd=round(float(row["cost"]), 6),
    )


async def record_dead_letter(
    db: Executor, *, subject: str, job_id: str | None, seq: int | None, deliveries: int, reason: str
) -> None:
    await db.execute(
        "INSERT INTO dead_letters (subject, job_id, seq, deliveries, reason) VALUES ($1, $2, $3, $4, $5)",
        subject,
        job_id,
        seq,
        deliveries,
        reason,
    )


async def segments(db: Executor, job_id: str) -> list[Segment]:
    rows = await db.fetch("SELECT * FROM segments WHERE job_id = $1 ORDER BY seq", job_id)
    return [_segment(r) for r in rows]


def _segment(r: Any) -> Segment:
    return Segment(
        seq=r["seq"],
        chunk_seq=r["chunk_seq"],
        start=r["start_s"],
        end=r["end_s"],
        text=r["text"],
        jyutping=r["jyutping"],
        yale=r["yale"],
        words=_words.decode(r["words"]),
    )


async def transcript(db: Executor, job_id: str) -> Transcript | None:
    """The finished transcript of a job, or None while it is not done."""
    job = await get_job(db, job_id)
    if job is None or job.status != "done":
        return None
    return Transcript(
        job_id=job.id,
        source=job.source,
        duration=job.duration or 0.0,
        segments=await segments(db, job_id),
        usage=await job_usage(db, job_id),
    )

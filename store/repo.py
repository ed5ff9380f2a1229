"""Reads and writes of jobs, chunks, segments and usage, and the one way a job fails.

Every write a redelivered message can repeat is idempotent (``ON CONFLICT``), so
at-least-once delivery on the bus gives exactly-once effect here. The usage ledger too: one row
per chunk, backend and model, so a redelivered chunk is billed once (and, answered from the chunk
cache its first call filled, not called again either).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
import msgspec

from core.messages import Char, Failed, JobOptions, RawSegment, Segment, Transcript, Usage, Word

# Either works: a pool for one statement, a connection inside a transaction.
Executor: TypeAlias = "asyncpg.Connection[Any] | asyncpg.Pool[Any]"

_raw_segments = msgspec.json.Decoder(list[RawSegment])
_words = msgspec.json.Decoder(list[Word])
_chars = msgspec.json.Decoder(list[Char])
_warnings = msgspec.json.Decoder(list[str])
_json = msgspec.json.Encoder()

logger = logging.getLogger(__name__)


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
    warnings: list[str]
    seconds_decoded: float = 0.0
    created_at: datetime | None = None
    finished_at: datetime | None = None
    purged_at: datetime | None = None
    # The romanizer's outbox mark: chunks below it have had their Partial published.
    published_chunks: int = 0
    # For people: an upload's file name, a link's video title (None until known).
    title: str | None = None

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
            warnings=_warnings.decode(r["warnings"]),
            seconds_decoded=r["seconds_decoded"],
            created_at=r["created_at"],
            finished_at=r["finished_at"],
            purged_at=r["purged_at"],
            published_chunks=r["published_chunks"],
            title=r["title"],
        )

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "cancelled")


async def create_job(
    db: Executor, job_id: str, source: str, *, user_id: str | None, options: JobOptions, title: str | None = None
) -> None:
    await db.execute(
        "INSERT INTO jobs (id, source, user_id, options, title) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (id) DO NOTHING",
        job_id,
        source,
        user_id,
        _json.encode(options).decode(),
        clean_title(title),
    )


MAX_TITLE_CHARS = 200


def clean_title(title: str | None) -> str | None:
    """A title as kept: printable characters, single spaces, at most :data:`MAX_TITLE_CHARS`; None if empty."""
    words = "".join(char for char in title or "" if char.isprintable() or char.isspace()).split()
    return " ".join(words)[:MAX_TITLE_CHARS].strip() or None


async def set_title(db: Executor, job_id: str, title: str | None) -> None:
    """Give the job a title unless it has one (an upload's file name stays); an empty title changes nothing."""
    if (kept := clean_title(title)) is not None:
        await db.execute("UPDATE jobs SET title = $2 WHERE id = $1 AND title IS NULL", job_id, kept)


async def get_job(db: Executor, job_id: str, *, for_update: bool = False) -> JobRow | None:
    sql = "SELECT * FROM jobs WHERE id = $1" + (" FOR UPDATE" if for_update else "")
    record = await db.fetchrow(sql, job_id)
    return JobRow.from_record(record) if record else None


async def mark_running(db: Executor, job_id: str) -> None:
    await db.execute(
        "UPDATE jobs SET status = 'running', updated_at = now() WHERE id = $1 AND status IN ('queued', 'running')",
        job_id,
    )


@dataclass(frozen=True)
class DeadLetter:
    """A message given up on, kept for operators.

    Attributes:
        subject: Where it was published.
        seq: The chunk's number, when it was a chunk.
        deliveries: How many times it was delivered.
        reason: Why it was given up on.
    """

    subject: str
    seq: int | None
    deliveries: int
    reason: str


PublishFailed = Callable[[Failed], Awaitable[object]]
"""Publishes a ``Failed`` event on the bus (``core.bus.publish_event`` bound to a JetStream context)."""


async def fail_job(
    db: Executor, job_id: str, reason: str, *, publish: PublishFailed, dead_letter: DeadLetter | None = None
) -> str | None:
    """Fail a job: the one way every service does it.

    Keeps the dead letter, if any; marks the job failed unless it has already finished (the
    first outcome wins: an earlier failure keeps its reason, a done job stays done); then, if
    the job is failed, publishes its ``Failed`` event with the reason that won. Publishing again
    for a job already failed is safe, and repairs a crash between the two steps: the event's
    message id makes JetStream drop a repeat.

    Args:
        db: A pool, or a connection (inside the caller's transaction, if it holds one).
        job_id: The job.
        reason: What happened and what to do, for the user.
        publish: Publishes the ``Failed`` event.
        dead_letter: The message given up on, when there is one.

    Returns:
        The job's status afterwards: ``"failed"`` (now or before), ``"done"`` or ``"cancelled"``
        (the failure came too late and changed nothing), or ``None`` for a job the store does not know.
    """
    if dead_letter is not None:
        await record_dead_letter(
            db,
            subject=dead_letter.subject,
            job_id=job_id,
            seq=dead_letter.seq,
            deliveries=dead_letter.deliveries,
            reason=dead_letter.reason,
        )
    row = await db.fetchrow(
        "UPDATE jobs SET status = 'failed', reason = $2, updated_at = now(), finished_at = now()"
        " WHERE id = $1 AND status IN ('queued', 'running') RETURNING status, reason",
        job_id,
        reason,
    )
    if row is None:  # finished already, or unknown: a new statement sees what others committed
        row = await db.fetchrow("SELECT status, reason FROM jobs WHERE id = $1", job_id)
    if row is None:
        logger.warning("failure of an unknown job not recorded", extra={"job_id": job_id, "reason": reason})
        return None
    if row["status"] == "failed":
        await publish(Failed(job_id=job_id, reason=row["reason"] or reason))
    else:
        logger.info("late failure ignored", extra={"job_id": job_id, "status": row["status"], "reason": reason})
    return str(row["status"])


async def set_input_ended(
    db: Executor, job_id: str, *, total_chunks: int, duration: float, warnings: list[str] | None = None
) -> None:
    """Record how many chunks the job has, how long it is, and what its damaged input lost.

    The input's warnings come first; those added already (:func:`add_warning`) stay after them.
    """
    await db.execute(
        "UPDATE jobs SET total_chunks = $2, duration = $3, warnings = $4::jsonb || COALESCE((SELECT jsonb_agg(w)"
        " FROM jsonb_array_elements(jobs.warnings) AS w WHERE NOT $4::jsonb @> jsonb_build_array(w)), '[]'),"
        " updated_at = now() WHERE id = $1",
        job_id,
        total_chunks,
        duration,
        _json.encode(warnings or []).decode(),
    )


async def add_warning(db: Executor, job_id: str, warning: str) -> None:
    """Add a warning to the job's (``Final.warnings``, the status) unless it has it already."""
    await db.execute(
        "UPDATE jobs SET warnings = warnings || jsonb_build_array($2::text), updated_at = now()"
        " WHERE id = $1 AND NOT warnings @> jsonb_build_array($2::text)",
        job_id,
        warning,
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
    """The speech model's text of the job's last lines (what it wrote, not a correction of it)."""
    rows = await db.fetch(
        "SELECT COALESCE(original_text, text) AS text FROM segments WHERE job_id = $1 ORDER BY seq DESC LIMIT $2",
        job_id,
        limit,
    )
    return [r["text"] for r in reversed(rows)]


async def insert_segments(db: Executor, job_id: str, segments: list[Segment]) -> None:
    await db.executemany(
        "INSERT INTO segments"
        " (job_id, seq, chunk_seq, start_s, end_s, text, jyutping, yale, words, chars, original_text, revision)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (job_id, seq) DO NOTHING",
        [
            (
                job_id,
                s.seq,
                s.chunk_seq,
                s.start,
                s.end,
                s.text,
                s.jyutping,
                s.yale,
                _json.encode(s.words).decode(),
                _json.encode(s.chars).decode(),
                s.original_text,
                s.revision,
            )
            for s in segments
        ],
    )


async def segment(db: Executor, job_id: str, seq: int) -> Segment | None:
    """One stored line of the job, or None."""
    row = await db.fetchrow("SELECT * FROM segments WHERE job_id = $1 AND seq = $2", job_id, seq)
    return _segment(row) if row is not None else None


async def revise_segment(db: Executor, job_id: str, line: Segment) -> None:
    """Store a corrected line in place of the line with its ``seq``: text, readings, original and revision."""
    await db.execute(
        "UPDATE segments SET text = $3, jyutping = $4, yale = $5, words = $6, chars = $7, original_text = $8,"
        " revision = $9 WHERE job_id = $1 AND seq = $2",
        job_id,
        line.seq,
        line.text,
        line.jyutping,
        line.yale,
        _json.encode(line.words).decode(),
        _json.encode(line.chars).decode(),
        line.original_text,
        line.revision,
    )


async def advance(db: Executor, job_id: str, *, next_chunk: int, next_segment: int) -> None:
    await db.execute(
        "UPDATE jobs SET next_chunk = $2, next_segment = $3, updated_at = now() WHERE id = $1",
        job_id,
        next_chunk,
        next_segment,
    )


async def segments_of_chunks(db: Executor, job_id: str, first: int, end: int) -> dict[int, list[Segment]]:
    """The stored lines of chunks ``first`` up to (not including) ``end``, by chunk, each in line order.

    A chunk that has no lines has no key.
    """
    rows = await db.fetch(
        "SELECT * FROM segments WHERE job_id = $1 AND chunk_seq >= $2 AND chunk_seq < $3 ORDER BY seq",
        job_id,
        first,
        end,
    )
    lines: dict[int, list[Segment]] = {}
    for r in rows:
        lines.setdefault(r["chunk_seq"], []).append(_segment(r))
    return lines


async def mark_published(db: Executor, job_id: str, chunks: int) -> None:
    """Record that the Partials of the job's first ``chunks`` chunks are on the bus; the mark never moves back."""
    await db.execute("UPDATE jobs SET published_chunks = GREATEST(published_chunks, $2) WHERE id = $1", job_id, chunks)


async def finish_job(db: Executor, job_id: str) -> None:
    """Mark the job done, unless it has already finished (the first outcome wins)."""
    await db.execute(
        "UPDATE jobs SET status = 'done', updated_at = now(), finished_at = now()"
        " WHERE id = $1 AND status IN ('queued', 'running')",
        job_id,
    )


async def record_usage(
    db: Executor,
    usage: Usage,
    *,
    job_id: str,
    chunk_seq: int | None,
    user_id: str | None,
    cache_hit: bool = False,
    saved_usd: float = 0.0,
) -> None:
    """One ASR call in the ledger; a chunk's call with the same backend and model is recorded once. A cache
    hit records what the call it replaced cost (``saved_usd``)."""
    await db.execute(
        "INSERT INTO usage (job_id, user_id, chunk_seq, backend, model, billed_seconds, cost_usd, cache_hit,"
        " saved_usd) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (job_id, chunk_seq, backend, model) WHERE chunk_seq IS NOT NULL DO NOTHING",
        job_id,
        user_id,
        chunk_seq,
        usage.backend,
        usage.model,
        usage.billed_seconds,
        usage.cost_usd,
        cache_hit,
        saved_usd,
    )


async def job_usage(db: Executor, job_id: str) -> Usage:
    """The job's total from the ledger; backend and model name the most used ones, ``cache_hit`` says
    every call was answered from a cache."""
    row = await db.fetchrow(
        "SELECT COALESCE(sum(billed_seconds), 0) AS seconds, COALESCE(sum(cost_usd), 0) AS cost,"
        " mode() WITHIN GROUP (ORDER BY backend) AS backend, mode() WITHIN GROUP (ORDER BY model) AS model,"
        " COALESCE(bool_and(cache_hit), false) AS cache_hit FROM usage WHERE job_id = $1",
        job_id,
    )
    return Usage(
        backend=row["backend"] or "none",
        model=row["model"] or "none",
        billed_seconds=round(float(row["seconds"]), 3),
        cost_usd=round(float(row["cost"]), 6),
        cache_hit=row["cache_hit"],
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
        chars=_chars.decode(r["chars"]),
        original_text=r["original_text"],
        revision=r["revision"],
    )


async def transcript(db: Executor, job_id: str, *, partial: bool = False) -> Transcript | None:
    """The finished transcript of a job, or None while it is not done.

    With ``partial``, a job still running gives the lines so far (``Transcript.partial``).
    """
    job = await get_job(db, job_id)
    if job is None or (job.status != "done" and not (partial and job.status in ("queued", "running"))):
        return None
    return Transcript(
        partial=job.status != "done",
        job_id=job.id,
        source=job.source,
        duration=job.duration or 0.0,
        segments=await segments(db, job_id),
        usage=await job_usage(db, job_id),
        warnings=job.warnings,
    )


async def set_progress(db: Executor, job_id: str, seconds_decoded: float) -> None:
    """How far the streamer has decoded the job's input."""
    await db.execute(
        "UPDATE jobs SET seconds_decoded = $2, updated_at = now() WHERE id = $1 AND seconds_decoded < $2",
        job_id,
        seconds_decoded,
    )


async def secret(db: Executor, name: str) -> bytes:
    """A 32-byte secret shared by every process of the deployment, made on first use."""
    await db.execute(
        "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", name, secrets.token_bytes(32)
    )
    return bytes(await db.fetchval("SELECT value FROM secrets WHERE name = $1", name))


async def claim_idempotency_key(db: Executor, key: str, job_id: str, fingerprint: str) -> tuple[str, str | None]:
    """Bind ``key`` to ``job_id`` and the request's ``fingerprint`` unless it is bound already.

    Returns:
        The job the key belongs to and the fingerprint it was bound with (``None`` for keys bound
        before fingerprints were kept: those match no request).
    """
    claimed = await db.fetchval(
        "INSERT INTO idempotency_keys (key, job_id, request_hash) VALUES ($1, $2, $3)"
        " ON CONFLICT (key) DO NOTHING RETURNING job_id",
        key,
        job_id,
        fingerprint,
    )
    if claimed is not None:
        return str(claimed), fingerprint
    row = await db.fetchrow("SELECT job_id, request_hash FROM idempotency_keys WHERE key = $1", key)
    return str(row["job_id"]), row["request_hash"]


async def idempotent_job(db: Executor, key: str) -> tuple[str, str | None] | None:
    """The job an Idempotency-Key was first used for and the fingerprint of that request, if any."""
    row = await db.fetchrow("SELECT job_id, request_hash FROM idempotency_keys WHERE key = $1", key)
    return (str(row["job_id"]), row["request_hash"]) if row is not None else None


async def recent_jobs(
    db: Executor, *, limit: int, before: tuple[datetime, str] | None = None, user: str | None = None
) -> list[JobRow]:
    """Jobs newest first (``user``'s only, if given), at most ``limit``, strictly before the
    ``(created_at, id)`` cursor if given."""
    records = await db.fetch(
        "SELECT * FROM jobs WHERE ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::text))"
        " AND ($4::text IS NULL OR user_id = $4) ORDER BY created_at DESC, id DESC LIMIT $1",
        limit,
        None if before is None else before[0],
        None if before is None else before[1],
        user,
    )
    return [JobRow.from_record(r) for r in records]


async def cancel_job(db: Executor, job_id: str) -> bool:
    """Cancel a job that has not finished (the first outcome wins); whether this call cancelled it."""
    cancelled = await db.fetchval(
        "UPDATE jobs SET status = 'cancelled', reason = 'Cancelled on request.', updated_at = now(),"
        " finished_at = now() WHERE id = $1 AND status IN ('queued', 'running') RETURNING id",
        job_id,
    )
    return cancelled is not None


async def purge_job(db: Executor, job_id: str) -> None:
    """Delete a finished job's lines, raw ASR text, chunk cache entries and source key (it is never
    replayed again); its row and usage stay for the ledger."""
    await db.execute("DELETE FROM segments WHERE job_id = $1", job_id)
    await db.execute("DELETE FROM chunk_cache WHERE job_id = $1", job_id)
    await db.execute("UPDATE chunks SET raw_segments = NULL WHERE job_id = $1", job_id)
    await db.execute("UPDATE jobs SET purged_at = now(), updated_at = now(), source_key = NULL WHERE id = $1", job_id)


async def is_cancelled(db: Executor, job_id: str) -> bool:
    return bool(await db.fetchval("SELECT status = 'cancelled' FROM jobs WHERE id = $1", job_id))


async def unpurged_jobs(db: Executor, job_ids: list[str]) -> set[str]:
    """Which of ``job_ids`` exist and have not been purged."""
    rows = await db.fetch("SELECT id FROM jobs WHERE id = ANY($1::text[]) AND purged_at IS NULL", job_ids)
    return {row["id"] for row in rows}

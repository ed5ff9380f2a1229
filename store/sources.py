"""The source cache in PostgreSQL: finished jobs found by the key of their input.

A job's ``source_key`` (made by ``streamer.replay``) covers its input (a video's extractor and id,
or a file's SHA-256) and everything that changes its transcript. The transcript replayed is the
transcriber's own (``chunks.raw_segments``), never a user's corrections. Purging a job clears its
key (:func:`store.repo.purge_job`).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from core.messages import RawSegment
from store.repo import Executor

_segments = msgspec.json.Decoder(list[RawSegment])
_warnings = msgspec.json.Decoder(list[str])


@dataclass(frozen=True)
class StoredChunk:
    """One transcribed chunk of a finished job: times on the job's timeline, and what its calls cost
    (or, answered from the chunk cache, saved): what replaying it saves."""

    seq: int
    offset: float
    duration: float
    segments: list[RawSegment]
    worth_usd: float = 0.0


@dataclass(frozen=True)
class Origin:
    """A finished job whose transcript a new job with the same key may replay."""

    job_id: str
    duration: float
    title: str | None
    warnings: list[str]
    backend: str
    model: str
    chunks: list[StoredChunk]


async def remember(db: Executor, job_id: str, key: bytes) -> None:
    """Give the job its source key: once it is done, a job with the same key may replay it."""
    await db.execute("UPDATE jobs SET source_key = $2 WHERE id = $1", job_id, key)


async def find(db: Executor, key: bytes, *, backend: str, model: str | None, exclude: str) -> Origin | None:
    """The newest finished job with ``key`` whose every call was made by ``backend`` (and ``model``).

    A job any of whose chunks went to a fallback (the budget guard, the circuit breaker) is passed
    over: its transcript is not what the configured model would write. So is a job missing a chunk's
    transcript (purged while the lookup ran).

    Args:
        db: A pool or connection.
        key: The source key.
        backend: The configured backend's name.
        model: The configured API model; None to accept any model of ``backend`` (the local one).
        exclude: The job asking, never its own origin.
    """
    row = await db.fetchrow(
        "SELECT j.id, j.duration, j.title, j.warnings, j.total_chunks FROM jobs j"
        " WHERE j.source_key = $1 AND j.status = 'done' AND j.purged_at IS NULL AND j.id <> $4"
        " AND j.total_chunks IS NOT NULL AND j.duration IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM usage u WHERE u.job_id = j.id"
        "  AND (u.backend <> $2 OR ($3::text IS NOT NULL AND u.model <> $3::text)))"
        " ORDER BY j.finished_at DESC NULLS LAST LIMIT 1",
        key,
        backend,
        model,
        exclude,
    )
    if row is None:
        return None
    records = await db.fetch(
        "SELECT c.seq, c.offset_s, c.duration_s, c.raw_segments,"
        " (SELECT COALESCE(sum(u.cost_usd + u.saved_usd), 0) FROM usage u"
        "  WHERE u.job_id = c.job_id AND u.chunk_seq = c.seq) AS worth"
        " FROM chunks c WHERE c.job_id = $1 AND c.raw_segments IS NOT NULL ORDER BY c.seq",
        row["id"],
    )
    if len(records) != row["total_chunks"]:
        return None
    used = await db.fetchrow(
        "SELECT mode() WITHIN GROUP (ORDER BY model) AS model FROM usage WHERE job_id = $1", row["id"]
    )
    chunks = [
        StoredChunk(r["seq"], r["offset_s"], r["duration_s"], _segments.decode(r["raw_segments"]), float(r["worth"]))
        for r in records
    ]
    return Origin(
        job_id=row["id"],
        duration=row["duration"],
        title=row["title"],
        warnings=_warnings.decode(row["warnings"]),
        backend=backend,
        model=(used["model"] if used else None) or model or backend,
        chunks=chunks,
    )

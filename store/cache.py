"""The chunk cache in PostgreSQL: an ASR answer kept under the hash of what produced it.

The key (made by ``transcriber.cache``) covers the chunk's audio and everything that changes the
answer, so a hit is the answer the call would give. Each entry remembers the job whose call filled
it: purging that job deletes it (:func:`store.repo.purge_job`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from core.messages import RawSegment
from store.repo import Executor

_segments = msgspec.json.Decoder(list[RawSegment])
_json = msgspec.json.Encoder()


@dataclass(frozen=True)
class CachedChunk:
    """A stored answer.

    Attributes:
        backend: The backend that answered ("local" or "openai").
        model: Its model.
        segments: Times relative to the chunk's start, as the backend gave them.
        billed_seconds: What the call was billed (what a hit saves).
    """

    backend: str
    model: str
    segments: list[RawSegment]
    billed_seconds: float


async def take(db: Executor, keys: Sequence[bytes]) -> CachedChunk | None:
    """The answer stored under the first of ``keys`` that has one (counting the hit), or None."""
    if not keys:
        return None
    row = await db.fetchrow(
        "UPDATE chunk_cache SET hits = hits + 1, last_hit_at = now() WHERE key = ("
        " SELECT key FROM chunk_cache WHERE key = ANY($1::bytea[]) ORDER BY array_position($1::bytea[], key) LIMIT 1"
        ") RETURNING backend, model, raw_segments, billed_seconds",
        list(keys),
    )
    if row is None:
        return None
    return CachedChunk(row["backend"], row["model"], _segments.decode(row["raw_segments"]), row["billed_seconds"])


async def put(db: Executor, key: bytes, answer: CachedChunk, *, job_id: str, chunk_seq: int) -> None:
    """Keep an answer; the first one stored under a key stays (a concurrent call gave the same)."""
    await db.execute(
        "INSERT INTO chunk_cache (key, backend, model, raw_segments, billed_seconds, job_id, chunk_seq)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key) DO NOTHING",
        key,
        answer.backend,
        answer.model,
        _json.encode(answer.segments).decode(),
        answer.billed_seconds,
        job_id,
        chunk_seq,
    )


async def entries_of(db: Executor, job_id: str) -> int:
    """How many entries the job's calls filled."""
    return int(await db.fetchval("SELECT count(*) FROM chunk_cache WHERE job_id = $1", job_id))

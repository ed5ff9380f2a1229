"""Live sessions in PostgreSQL: who holds one, and where a transcriber taking it over resumes.

A live session is a job whose source is ``live:<encoding>``. The gateway creates it ``queued``; the
first transcriber to take it moves it to ``running`` (:func:`claim`); a gateway that waited in vain
fails it while it is still ``queued`` (:func:`refuse`), so exactly one of the two wins.
"""

from __future__ import annotations

from dataclasses import dataclass

from store.repo import Executor


@dataclass(frozen=True)
class Resume:
    """Where a session's transcription stands: seconds committed, the next line's number, the text's end."""

    committed_until: float = 0.0
    next_line: int = 0
    tail: str = ""


async def claim(db: Executor, job_id: str, *, takeover: bool) -> Resume | None:
    """Take the session: ``queued`` -> ``running``, or, with ``takeover``, one already ``running`` whose
    transcriber stopped. Where it stands, or None when it is not there to take (refused, ended)."""
    row = await db.fetchrow(
        "UPDATE jobs SET status = 'running', updated_at = now()"
        " WHERE id = $1 AND (status = 'queued' OR (status = 'running' AND $2)) RETURNING id",
        job_id,
        takeover,
    )
    if row is None:
        return None
    await db.execute("INSERT INTO live_sessions (job_id) VALUES ($1) ON CONFLICT (job_id) DO NOTHING", job_id)
    state = await db.fetchrow("SELECT committed_until, next_line, tail FROM live_sessions WHERE job_id = $1", job_id)
    return Resume(state["committed_until"], state["next_line"], state["tail"])


async def refuse(db: Executor, job_id: str, reason: str) -> bool:
    """Fail a session no transcriber took; False when one has (it won the race)."""
    row = await db.fetchrow(
        "UPDATE jobs SET status = 'failed', reason = $2, updated_at = now(), finished_at = now()"
        " WHERE id = $1 AND status = 'queued' RETURNING id",
        job_id,
        reason,
    )
    return row is not None


async def save(db: Executor, job_id: str, resume: Resume) -> None:
    """Record where the session stands, after its committed lines are on the bus."""
    await db.execute(
        "UPDATE live_sessions SET committed_until = $2, next_line = $3, tail = $4, updated_at = now()"
        " WHERE job_id = $1 AND next_line <= $3",
        job_id,
        resume.committed_until,
        resume.next_line,
        resume.tail,
    )

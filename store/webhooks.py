"""Completion webhooks in PostgreSQL: each job's URL, and how its delivery went.

Attempts are counted here, not by JetStream's delivery count: a gateway that dies mid-POST
gets the event redelivered, and the next attempt is still the right number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from store.repo import Executor

DeliveryState = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True)
class Delivery:
    """Where a job's webhook stands: ``pending`` until the POST is answered with a 2xx (or given up on)."""

    state: DeliveryState
    attempts: int
    last_status: int | None = None
    last_error: str | None = None


async def set_url(db: Executor, job_id: str, url: str) -> None:
    await db.execute("UPDATE jobs SET webhook_url = $2 WHERE id = $1", job_id, url)


async def url_of(db: Executor, job_id: str) -> str | None:
    url = await db.fetchval("SELECT webhook_url FROM jobs WHERE id = $1", job_id)
    return str(url) if url is not None else None


async def delivery(db: Executor, job_id: str) -> Delivery | None:
    """The job's webhook delivery; None when the job has no webhook."""
    row = await db.fetchrow(
        "SELECT j.webhook_url, d.state, d.attempts, d.last_status, d.last_error"
        " FROM jobs j LEFT JOIN webhook_deliveries d ON d.job_id = j.id WHERE j.id = $1",
        job_id,
    )
    if row is None or row["webhook_url"] is None:
        return None
    if row["state"] is None:
        return Delivery("pending", 0)
    return Delivery(row["state"], row["attempts"], row["last_status"], row["last_error"])


async def record_attempt(
    db: Executor, job_id: str, event: str, *, state: DeliveryState, status: int | None, error: str | None
) -> int:
    """Count one attempt and its outcome; the attempts made so far."""
    attempts = await db.fetchval(
        "INSERT INTO webhook_deliveries (job_id, event, attempts, state, last_status, last_error, delivered_at)"
        " VALUES ($1, $2, 1, $3, $4, $5, CASE WHEN $3 = 'delivered' THEN now() END)"
        " ON CONFLICT (job_id) DO UPDATE SET attempts = webhook_deliveries.attempts + 1, state = $3,"
        " last_status = $4, last_error = $5, updated_at = now(),"
        " delivered_at = CASE WHEN $3 = 'delivered' THEN now() ELSE webhook_deliveries.delivered_at END"
        " RETURNING attempts",
        job_id,
        event,
        state,
        status,
        error,
    )
    return int(attempts)

"""Completion webhooks in PostgreSQL: each job's URL, and how its delivery went.

A job has a webhook when ``jobs.webhook_url`` is set; its delivery gets a row in
``webhook_deliveries`` when its first terminal event is handled (:func:`claim`), and every
attempt is counted on that row (:func:`record_attempt`). Attempts are counted here, not by
JetStream's delivery count: a gateway that dies mid-POST gets the event redelivered, and the
next attempt still has the right number; a delivery that has ended is never reopened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from store.repo import Executor

DeliveryState = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True)
class Delivery:
    """Where a job's webhook stands, for the job's status.

    Attributes:
        state: ``pending`` until the POST is answered with a 2xx (``delivered``) or given up on
            (``failed``).
        attempts: POSTs tried so far.
        last_status: The receiver's HTTP status at the last attempt (None: no answer, or none yet).
        last_error: Why the last attempt failed, when it did (None otherwise).
    """

    state: DeliveryState
    attempts: int
    last_status: int | None = None
    last_error: str | None = None


async def set_url(db: Executor, job_id: str, url: str) -> None:
    """Give the job a webhook: its terminal event will be POSTed to ``url`` (checked by the caller)."""
    await db.execute("UPDATE jobs SET webhook_url = $2 WHERE id = $1", job_id, url)


async def url_of(db: Executor, job_id: str) -> str | None:
    """The job's webhook URL; None when it has none (or the job is unknown)."""
    url = await db.fetchval("SELECT webhook_url FROM jobs WHERE id = $1", job_id)
    return str(url) if url is not None else None


async def delivery(db: Executor, job_id: str) -> Delivery | None:
    """The job's webhook delivery; None when the job has no webhook (``pending``, 0 attempts, before it ends)."""
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


async def claim(db: Executor, job_id: str, event: str) -> Delivery | None:
    """Bind the job's delivery to its first terminal event, and say where it stands.

    The first ``final``, ``failed`` or ``cancelled`` handled for a job is the one sent; another
    one for the same job afterwards (which the store's first-outcome-wins rule should prevent)
    finds the delivery taken.

    Args:
        db: A pool or a connection.
        job_id: The job.
        event: The event's type.

    Returns:
        The delivery when it belongs to ``event`` (its state says whether to send), None when
        another event of the job has it.
    """
    await db.execute(
        "INSERT INTO webhook_deliveries (job_id, event, attempts, state) VALUES ($1, $2, 0, 'pending')"
        " ON CONFLICT (job_id) DO NOTHING",
        job_id,
        event,
    )
    row = await db.fetchrow(
        "SELECT event, state, attempts, last_status, last_error FROM webhook_deliveries WHERE job_id = $1", job_id
    )
    if row is None or row["event"] != event:
        return None
    return Delivery(row["state"], row["attempts"], row["last_status"], row["last_error"])


async def record_attempt(
    db: Executor, job_id: str, *, state: DeliveryState, status: int | None, error: str | None
) -> int | None:
    """Count one attempt and its outcome on a claimed, pending delivery.

    Args:
        db: A pool or a connection.
        job_id: The job.
        state: ``pending`` (to be retried), ``delivered`` or ``failed``.
        status: The receiver's HTTP status, if it answered.
        error: Why the attempt failed, if it did.

    Returns:
        The attempts made so far, or None when the delivery had already ended (a redelivered
        event handled twice at once): an ended delivery is never changed.
    """
    attempts = await db.fetchval(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, state = $2, last_status = $3, last_error = $4,"
        " updated_at = now(), delivered_at = CASE WHEN $2 = 'delivered' THEN now() END"
        " WHERE job_id = $1 AND state = 'pending' RETURNING attempts",
        job_id,
        state,
        status,
        error,
    )
    return int(attempts) if attempts is not None else None


async def abandon(db: Executor, job_id: str, reason: str) -> None:
    """End a delivery still pending (its job was purged: the event it would send is gone)."""
    await db.execute(
        "UPDATE webhook_deliveries SET state = 'failed', last_error = $2, updated_at = now()"
        " WHERE job_id = $1 AND state = 'pending'",
        job_id,
        reason,
    )

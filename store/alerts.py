"""Cost alerts in PostgreSQL: the day's cost from the ledger, the one row per threshold per day, its webhook.

The unique ``(day, threshold)`` of ``cost_alerts`` makes an alert once per threshold per UTC day (a
projected rise and the rise itself are one threshold, ``rise``; the daily amount is ``daily``):
:func:`claim` inserts it and says whether this caller was first, whatever number of
transcribers noticed it at once. A gateway counts the attempts of the alert's webhook on the
same row (:func:`claim_delivery`, :func:`record_attempt`), as :mod:`store.webhooks` does for jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, timedelta
from typing import Any

from core.messages import CostAlert
from store.costs import day_start
from store.repo import Executor
from store.webhooks import DeliveryState

_COLUMNS = "day, kind, cost_usd, projected_usd, previous_usd, threshold_usd, message, noticed_at"


async def day_costs(db: Executor, day: date) -> tuple[float, float]:
    """The ledger's totals for the UTC day before ``day`` and for ``day``, in USD (one index range scan).

    Args:
        db: A pool or a connection.
        day: The day.

    Returns:
        ``(previous_usd, day_usd)``.
    """
    start = day_start(day)
    row = await db.fetchrow(
        "SELECT COALESCE(sum(cost_usd) FILTER (WHERE created_at < $2), 0) AS previous,"
        " COALESCE(sum(cost_usd) FILTER (WHERE created_at >= $2), 0) AS today"
        " FROM usage WHERE created_at >= $1 AND created_at < $3",
        start - timedelta(days=1),
        start,
        start + timedelta(days=1),
    )
    return float(row["previous"]), float(row["today"])


def threshold_of(kind: str) -> str:
    """The threshold an alert's kind is about: ``rise`` or ``daily``, projected or not."""
    return kind.removeprefix("projected_")


async def claimed_thresholds(db: Executor, day: date) -> set[str]:
    """The thresholds with an alert stored for ``day`` already (by any process)."""
    return {row["threshold"] for row in await db.fetch("SELECT threshold FROM cost_alerts WHERE day = $1", day)}


async def claim(db: Executor, alert: CostAlert) -> bool:
    """Store the alert unless one for its threshold and day is stored already.

    Inside a transaction, a second caller waits for the first one's to end: it then finds the
    row (the first committed) or inserts it itself (the first rolled back).

    Returns:
        True when this call stored it: the caller is the one to publish it.
    """
    inserted = await db.fetchval(
        f"INSERT INTO cost_alerts ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (day, threshold) DO NOTHING RETURNING id",
        *_values(alert),
    )
    return inserted is not None


@dataclass(frozen=True)
class StoredAlert:
    """An alert as stored, with how its webhook went.

    Attributes:
        alert: The alert as published.
        webhook_state: ``pending``, ``delivered``, ``failed``, or None when no webhook URL was set.
        webhook_attempts: POSTs tried so far.
        webhook_last_status: The receiver's HTTP status at the last attempt.
        webhook_last_error: Why the last attempt failed, when it did.
    """

    alert: CostAlert
    webhook_state: DeliveryState | None = None
    webhook_attempts: int = 0
    webhook_last_status: int | None = None
    webhook_last_error: str | None = None


async def since(db: Executor, first_day: date) -> list[StoredAlert]:
    """The alerts of ``first_day`` and later, newest first (for an operator's page)."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS}, webhook_state, webhook_attempts, webhook_last_status, webhook_last_error"
        " FROM cost_alerts WHERE day >= $1 ORDER BY day DESC, created_at DESC",
        first_day,
    )
    return [_stored(row) for row in rows]


async def get(db: Executor, day: date, kind: str) -> StoredAlert | None:
    """One stored alert; None when that threshold was not crossed that day."""
    row = await db.fetchrow(
        f"SELECT {_COLUMNS}, webhook_state, webhook_attempts, webhook_last_status, webhook_last_error"
        " FROM cost_alerts WHERE day = $1 AND kind = $2",
        day,
        kind,
    )
    return _stored(row) if row is not None else None


async def claim_delivery(db: Executor, alert: CostAlert) -> StoredAlert:
    """Open the alert's webhook delivery (``pending``) unless it has one, and say where it stands.

    The alert is stored here too if its row is missing (a publisher whose claim rolled back after
    its publish), so the delivery always has a row to count its attempts on.
    """
    row = await db.fetchrow(
        f"INSERT INTO cost_alerts ({_COLUMNS}, webhook_state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending')"
        " ON CONFLICT (day, threshold) DO UPDATE SET webhook_state = COALESCE(cost_alerts.webhook_state, 'pending')"
        f" RETURNING {_COLUMNS}, webhook_state, webhook_attempts, webhook_last_status, webhook_last_error",
        *_values(alert),
    )
    return _stored(row)


async def record_attempt(
    db: Executor, day: date, kind: str, *, state: DeliveryState, status: int | None, error: str | None
) -> int | None:
    """Count one attempt of a pending alert webhook and its outcome.

    Returns:
        The attempts made so far, or None when the delivery had ended already (never changed then).
    """
    attempts = await db.fetchval(
        "UPDATE cost_alerts SET webhook_attempts = webhook_attempts + 1, webhook_state = $3,"
        " webhook_last_status = $4, webhook_last_error = $5, webhook_updated_at = now()"
        " WHERE day = $1 AND kind = $2 AND webhook_state = 'pending' RETURNING webhook_attempts",
        day,
        kind,
        state,
        status,
        error,
    )
    return int(attempts) if attempts is not None else None


def _values(alert: CostAlert) -> tuple[Any, ...]:
    return (
        alert.day,
        alert.kind,
        alert.cost_usd,
        alert.projected_usd,
        alert.previous_usd,
        alert.threshold_usd,
        alert.message,
        alert.at,
    )


def _stored(row: Any) -> StoredAlert:
    alert = CostAlert(
        day=row["day"],
        kind=row["kind"],
        cost_usd=float(row["cost_usd"]),
        projected_usd=float(row["projected_usd"]),
        previous_usd=float(row["previous_usd"]),
        threshold_usd=float(row["threshold_usd"]),
        message=row["message"],
        at=row["noticed_at"].astimezone(UTC),
    )
    return StoredAlert(
        alert, row["webhook_state"], row["webhook_attempts"], row["webhook_last_status"], row["webhook_last_error"]
    )

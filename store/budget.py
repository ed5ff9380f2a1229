"""The day's cost from the usage ledger, for the budget guard (``SCRIBE_DAILY_BUDGET_USD``).

Days are UTC days: a budget resets at midnight UTC.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from store.costs import day_start
from store.repo import Executor


def _bounds(day: date) -> tuple[datetime, datetime]:
    start = day_start(day)
    return start, start + timedelta(days=1)


async def day_cost(db: Executor, day: date) -> float:
    """The ledger's total for the UTC ``day``, in USD."""
    return float(
        await db.fetchval(
            "SELECT COALESCE(sum(cost_usd), 0) FROM usage WHERE created_at >= $1 AND created_at < $2", *_bounds(day)
        )
    )


async def reached_at(db: Executor, day: date, budget_usd: float) -> datetime | None:
    """When the UTC ``day``'s running cost first reached ``budget_usd``, or None if it has not.

    The same answer in every process, so the warning it goes into is the same text in each.
    """
    return await db.fetchval(
        "SELECT created_at FROM (SELECT created_at, sum(cost_usd) OVER (ORDER BY created_at, id) AS running"
        " FROM usage WHERE created_at >= $1 AND created_at < $2) AS day WHERE running >= $3"
        " ORDER BY created_at LIMIT 1",
        *_bounds(day),
        budget_usd,
    )

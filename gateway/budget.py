"""The daily budget with ``SCRIBE_FALLBACK=refuse``: new jobs are refused once the UTC day's cost reaches it.

503 with ``Retry-After`` (the seconds to midnight UTC) and the code ``budget_exceeded``: the
service, not the caller, is out of budget, and the same request will be taken after the reset.
Jobs already accepted finish (``transcriber.fallback``). The day's cost is one indexed sum over
the day's ledger rows, read on each submit while a budget is set: a submit writes more than that.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.process import Runtime
from gateway.errors import ApiError
from store import budget
from store.costs import day_start


async def refuse_when_spent(rt: Runtime) -> None:
    """Refuse a new job when the deployment refuses jobs past its daily budget and has reached it.

    Raises:
        ApiError: 503 ``budget_exceeded``, saying why and when it resets.
    """
    settings = rt.settings
    if settings.daily_budget_usd <= 0 or settings.fallback_kind != "refuse":
        return
    now = datetime.now(UTC)
    spent = await budget.day_cost(rt.pool, now.date())
    if spent < settings.daily_budget_usd:
        return
    midnight = day_start(now.date() + timedelta(days=1))
    amount = settings.daily_budget_usd
    budget_text = f"${amount:,.2f}" if round(amount, 2) == amount else f"${amount:g}"
    raise ApiError(
        503,
        "budget_exceeded",
        f"This service has spent its daily transcription budget ({budget_text}) and takes "
        "no new jobs until it resets at midnight UTC; jobs already accepted are finishing.",
        headers={"Retry-After": str(max(1, int((midnight - now).total_seconds())))},
    )

"""The usage ledger over REST: ``GET /v1/usage`` (the key's own) and ``GET /v1/admin/costs`` (everyone's).

Amounts are in USD, as billed, and in GBP at ``SCRIBE_GBP_PER_USD`` (a setting: no exchange rate is
fetched). With accounts, ``/v1/admin/costs`` needs an admin key; without (``SCRIBE_AUTH=none``) the one
user is the operator, and both endpoints show the whole deployment.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from litestar import HttpMethod, Request, route
from litestar.datastructures import State
from litestar.params import QueryParameter

from gateway.accounts import account_of
from gateway.errors import ApiError
from gateway.openapi import API_KEY, error_responses
from gateway.schemas import (
    AdminCosts,
    CostPerJob,
    CostTotals,
    DayCosts,
    DayProjection,
    JobCosts,
    ModelCosts,
    UsageReport,
    UserCosts,
)
from store import alerts as alert_store
from store import costs
from store.costs import Ledger, Totals

Days = Annotated[
    int, QueryParameter(ge=1, le=costs.MAX_DAYS, description="How many UTC days, the last one included so far.")
]
Until = Annotated[
    date | None,
    QueryParameter(description="The window's last UTC day (YYYY-MM-DD); default today."),
]


class Converter:
    """Ledger figures as the API answers them, with GBP at the configured rate."""

    def __init__(self, gbp_per_usd: float) -> None:
        self.rate = gbp_per_usd

    def gbp(self, usd: float) -> float:
        return round(usd * self.rate, 6)

    def fields(self, totals: Totals) -> dict[str, Any]:
        return {
            "calls": totals.calls,
            "cache_hits": totals.cache_hits,
            "billed_seconds": totals.billed_seconds,
            "cost_usd": totals.cost_usd,
            "cost_gbp": self.gbp(totals.cost_usd),
            "saved_usd": totals.saved_usd,
            "saved_gbp": self.gbp(totals.saved_usd),
        }

    def total(self, ledger: Ledger) -> CostTotals:
        return CostTotals(**self.fields(ledger.total))

    def days(self, ledger: Ledger) -> list[DayCosts]:
        return [DayCosts(d.day, **self.fields(d.totals)) for d in ledger.days]

    def models(self, ledger: Ledger) -> list[ModelCosts]:
        return [ModelCosts(m.model, m.backend, **self.fields(m.totals)) for m in ledger.models]

    def users(self, ledger: Ledger) -> list[UserCosts]:
        return [UserCosts(u.user, **self.fields(u.totals)) for u in ledger.users]

    def per_job(self, ledger: Ledger) -> CostPerJob:
        p = ledger.per_job
        return CostPerJob(
            p.jobs, p.mean_usd, p.p90_usd, p.max_usd, self.gbp(p.mean_usd), self.gbp(p.p90_usd), self.gbp(p.max_usd)
        )

    def today(self, ledger: Ledger) -> DayProjection:
        cost, projected = ledger.last_day_totals.cost_usd, round(ledger.projected_usd, 6)
        return DayProjection(
            ledger.window.last_day, ledger.window.now, cost, self.gbp(cost), projected, self.gbp(projected)
        )


def _window(days: int, until: date | None) -> costs.Window:
    try:
        return costs.window(days, until=until)
    except ValueError as exc:
        raise ApiError(400, "bad_request", f"The query parameter until: {exc}.") from exc


@route(
    "/v1/usage",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    security=API_KEY,
    responses=error_responses(401, 503),
    summary="Your usage and its cost",
)
async def usage(request: Request[Any, Any, Any], state: State, days: Days = 30, until: Until = None) -> UsageReport:
    """The key's user's calls to the speech model, audio billed and cost per UTC day and per model, and cost per
    job. Without accounts (``SCRIBE_AUTH=none``): the whole deployment's. An admin key sees its own user's here
    (everyone's: ``/v1/admin/costs``)."""
    account = account_of(request)
    user = account.user if account is not None else None
    ledger = await costs.ledger(state.rt.pool, _window(days, until), user=user, top=0)
    money = Converter(state.rt.settings.gbp_per_usd)
    return UsageReport(
        user=user,
        first_day=ledger.window.first_day,
        last_day=ledger.window.last_day,
        gbp_per_usd=money.rate,
        total=money.total(ledger),
        days=money.days(ledger),
        models=money.models(ledger),
        per_job=money.per_job(ledger),
    )


@route(
    "/v1/admin/costs",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    security=API_KEY,
    responses=error_responses(401, 403, 503),
    summary="What the service costs (admins)",
)
async def admin_costs(
    request: Request[Any, Any, Any], state: State, days: Days = 30, until: Until = None
) -> AdminCosts:
    """Every user's cost per UTC day, per model and per user, cost per job (mean, p90, max), the ten costliest
    jobs and users, the last day's cost so far and its projection to the end of the day, and the cost alerts
    raised in the window. Needs an admin key with accounts; without (``SCRIBE_AUTH=none``) the one user is the
    operator."""
    account = account_of(request)
    if account is not None and not account.admin:
        raise ApiError(
            403,
            "forbidden",
            "The service's costs are for operators: this needs an admin API key (`scribe keys create --admin`). "
            "Your own usage is at /v1/usage.",
        )
    ledger = await costs.ledger(state.rt.pool, _window(days, until))
    alerts = await alert_store.since(state.rt.pool, ledger.window.first_day)
    money = Converter(state.rt.settings.gbp_per_usd)
    users = money.users(ledger)
    return AdminCosts(
        first_day=ledger.window.first_day,
        last_day=ledger.window.last_day,
        gbp_per_usd=money.rate,
        total=money.total(ledger),
        today=money.today(ledger),
        days=money.days(ledger),
        models=money.models(ledger),
        users=users,
        per_job=money.per_job(ledger),
        top_jobs=[JobCosts(j.job_id, j.title, j.user, **money.fields(j.totals)) for j in ledger.top_jobs],
        top_users=users[: costs.TOP],
        alerts=[stored.alert for stored in alerts if stored.alert.day <= ledger.window.last_day],
    )


ROUTES = [usage, admin_costs]

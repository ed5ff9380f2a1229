"""The usage ledger read back: what the paid API cost per UTC day, model, user and job.

Every ASR call is one ``usage`` row (:func:`store.repo.record_usage`); a cache hit is a row that
cost nothing, counted apart (what it would have cost is not stored). A window is the last N UTC
days ending with its last day (today, unless asked for an earlier one), that day included as far
as it has gone. A job's cost is what the window holds of it. :func:`projection` is the day's cost
at its pace so far by the day's end, for the gateway, ``scribe costs`` and the cost alerts alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from store.repo import Executor

DAY_S = 86_400.0
# The projection counts at least this much of the day as elapsed, so a few calls after midnight
# do not project a fortune: in a day's first two hours it is at most 12 times the cost so far.
MIN_ELAPSED_S = 2 * 3600.0
MAX_DAYS = 366
TOP = 10


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime.combine(day, time(), tzinfo=UTC)


def projection(cost_usd: float, now: datetime) -> float:
    """The UTC day's cost by its end at the pace so far: cost so far x 86,400 / seconds elapsed.

    Args:
        cost_usd: The day's cost so far.
        now: An aware datetime in that day (its end for a day that is over: then the cost itself).
    """
    now = now.astimezone(UTC)
    elapsed = (now - day_start(now.date())).total_seconds()
    return cost_usd * DAY_S / max(elapsed, MIN_ELAPSED_S)


@dataclass(frozen=True)
class Window:
    """The last ``days`` UTC days up to ``now``, whose day is the last one."""

    days: int
    now: datetime

    @property
    def last_day(self) -> date:
        return self.now.astimezone(UTC).date()

    @property
    def first_day(self) -> date:
        return self.last_day - timedelta(days=self.days - 1)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, time(), tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The window's end (exclusive): midnight after its last day."""
        return self.start + timedelta(days=self.days)


def window(days: int, *, until: date | None = None, now: datetime | None = None) -> Window:
    """The window of the last ``days`` UTC days, today's included so far.

    Args:
        days: 1 to :data:`MAX_DAYS`.
        until: The window's last day instead of today (a later one is today).
        now: The clock (tests); default the current time.

    Raises:
        ValueError: ``days`` is outside 1 to :data:`MAX_DAYS`, or the window would start before the year 1.
    """
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be 1 to {MAX_DAYS}, not {days}")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if until is not None and until < now.date():
        if until.toordinal() < days:
            raise ValueError(f"{days} days up to {until} would start before the year 1")
        now = datetime.combine(until + timedelta(days=1), time(), tzinfo=UTC) - timedelta(microseconds=1)
    return Window(days, now)


@dataclass(frozen=True)
class Totals:
    """What a set of ledger rows adds up to."""

    calls: int = 0
    cache_hits: int = 0
    billed_seconds: float = 0.0
    cost_usd: float = 0.0
    saved_usd: float = 0.0  # what the cache hits would have cost


@dataclass(frozen=True)
class DayCost:
    day: date
    totals: Totals


@dataclass(frozen=True)
class ModelCost:
    model: str
    backend: str
    totals: Totals


@dataclass(frozen=True)
class UserCost:
    user: str | None  # None: jobs without an account (SCRIBE_AUTH=none)
    totals: Totals


@dataclass(frozen=True)
class PerJob:
    """Cost per job over the jobs with ledger rows in the window (0 when there are none)."""

    jobs: int = 0
    mean_usd: float = 0.0
    p90_usd: float = 0.0  # interpolated between jobs (percentile_cont)
    max_usd: float = 0.0


@dataclass(frozen=True)
class JobCost:
    job_id: str
    title: str | None
    user: str | None
    totals: Totals


@dataclass(frozen=True)
class Ledger:
    """The window's ledger, added up every way an operator reads a bill."""

    window: Window
    total: Totals
    days: list[DayCost]  # every day of the window, oldest first, days without rows included
    models: list[ModelCost]  # most costly first
    users: list[UserCost]  # most costly first
    per_job: PerJob
    top_jobs: list[JobCost] = field(default_factory=list)  # most costly first

    @property
    def last_day_totals(self) -> Totals:
        """The window's last day so far (today's, unless the window ends earlier)."""
        return self.days[-1].totals

    @property
    def projected_usd(self) -> float:
        """The last day's cost by its end at its pace so far (a day that is over: its cost)."""
        return projection(self.last_day_totals.cost_usd, self.window.now)

    @property
    def empty(self) -> bool:
        return self.total.calls == 0


# One scan of the window's rows, added up per day, per model, per user and in all (GROUPING SETS).
_GROUPS = """
WITH rows AS (
    SELECT (created_at AT TIME ZONE 'UTC')::date AS day, model, backend, user_id, billed_seconds, cost_usd, cache_hit,
           saved_usd
    FROM usage WHERE created_at >= $1 AND created_at < $2 AND ($3::text IS NULL OR user_id = $3)
)
SELECT GROUPING(day) = 0 AS by_day, GROUPING(model, backend) = 0 AS by_model, GROUPING(user_id) = 0 AS by_user,
       day, model, backend, user_id, count(*) AS calls, count(*) FILTER (WHERE cache_hit) AS cache_hits,
       COALESCE(sum(billed_seconds), 0) AS billed_seconds, COALESCE(sum(cost_usd), 0) AS cost_usd,
       COALESCE(sum(saved_usd), 0) AS saved_usd
FROM rows GROUP BY GROUPING SETS ((day), (model, backend), (user_id), ())
"""

_JOBS = """
SELECT job_id, count(*) AS calls, count(*) FILTER (WHERE cache_hit) AS cache_hits,
       sum(billed_seconds) AS billed_seconds, sum(cost_usd) AS cost_usd, sum(saved_usd) AS saved_usd
FROM usage WHERE created_at >= $1 AND created_at < $2 AND ($3::text IS NULL OR user_id = $3) AND job_id IS NOT NULL
GROUP BY job_id
"""

_PER_JOB = f"""
WITH per_job AS ({_JOBS})
SELECT count(*) AS jobs, COALESCE(avg(cost_usd), 0) AS mean, COALESCE(max(cost_usd), 0) AS max,
       COALESCE(percentile_cont(0.9) WITHIN GROUP (ORDER BY cost_usd), 0) AS p90
FROM per_job
"""

_TOP_JOBS = f"""
WITH per_job AS ({_JOBS})
SELECT p.*, j.title, j.user_id FROM per_job p LEFT JOIN jobs j ON j.id = p.job_id
ORDER BY p.cost_usd DESC, p.billed_seconds DESC, p.job_id LIMIT $4
"""


def _totals(row: Any) -> Totals:
    return Totals(
        calls=int(row["calls"]),
        cache_hits=int(row["cache_hits"]),
        billed_seconds=round(float(row["billed_seconds"]), 3),
        cost_usd=round(float(row["cost_usd"]), 6),
        saved_usd=round(float(row["saved_usd"]), 6),
    )


def _by_cost(totals: Totals) -> tuple[float, float]:
    return (-totals.cost_usd, -totals.billed_seconds)


async def ledger(db: Executor, span: Window, *, user: str | None = None, top: int = TOP) -> Ledger:
    """The ledger of ``span``: in all, per day, per model, per user, per job and its costliest jobs.

    Args:
        db: A pool or a connection.
        span: The window (:func:`window`).
        user: Only this user's rows; None: everyone's.
        top: How many of the costliest jobs to name (0: none, one query fewer).
    """
    bounds = (span.start, span.end, user)
    days = {span.first_day + timedelta(days=n): Totals() for n in range(span.days)}
    models: list[ModelCost] = []
    users: list[UserCost] = []
    total = Totals()
    for row in await db.fetch(_GROUPS, *bounds):
        totals = _totals(row)
        if row["by_day"]:
            days[row["day"]] = totals
        elif row["by_model"]:
            models.append(ModelCost(row["model"], row["backend"], totals))
        elif row["by_user"]:
            users.append(UserCost(row["user_id"], totals))
        else:
            total = totals
    per_job, top_jobs = PerJob(), []
    if total.calls:
        stats = await db.fetchrow(_PER_JOB, *bounds)
        per_job = PerJob(
            jobs=int(stats["jobs"]),
            mean_usd=round(float(stats["mean"]), 6),
            p90_usd=round(float(stats["p90"]), 6),
            max_usd=round(float(stats["max"]), 6),
        )
        if top > 0:
            top_jobs = [
                JobCost(row["job_id"], row["title"], row["user_id"], _totals(row))
                for row in await db.fetch(_TOP_JOBS, *bounds, top)
            ]
    return Ledger(
        window=span,
        total=total,
        days=[DayCost(day, totals) for day, totals in sorted(days.items())],
        models=sorted(models, key=lambda m: (*_by_cost(m.totals), m.model)),
        users=sorted(users, key=lambda u: (*_by_cost(u.totals), u.user or "")),
        per_job=per_job,
        top_jobs=top_jobs,
    )

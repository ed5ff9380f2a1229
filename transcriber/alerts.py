"""Cost alerts: after ledger rows, compare the day's cost with the previous day's and with a daily amount.

- **What is compared.** The UTC day's cost so far, and its projection to the end of the day at
  the pace so far (cost so far x 86,400 / seconds elapsed, the elapsed time counted as at least
  :data:`store.costs.MIN_ELAPSED_S`: in the first two hours of a day the projection is at most 12 times the
  cost so far, so a few calls after midnight do not project a fortune). A ``rise`` is the cost
  more than ``SCRIBE_ALERT_RISE`` above the previous day's whole cost, and only from
  ``SCRIBE_ALERT_MIN_USD`` up (a free day followed by a few cents is no news); ``daily`` is the
  cost at ``SCRIBE_ALERT_DAILY_USD``. Each has a ``projected_`` kind for when only the projection
  has crossed. :func:`assess` is the whole comparison, a pure function of the figures and the clock.
- **Once per threshold per day, by whichever process notices first.** A projected rise and the
  rise itself cross one threshold: the first noticed is the day's alert for it (usually the
  projection, hours earlier), and the cost catching up later sends nothing more. Each alert is
  inserted into ``cost_alerts``, unique on ``(day, threshold)``; the process whose insert wins publishes it on
  ``scribe.alerts.cost`` (the ``SCRIBE_ALERTS`` stream, kept a month) and logs it at WARNING. The
  insert and the publish share a transaction: a failed publish leaves nothing stored, so the next
  check tries again, and a publish repeated after a rolled-back claim carries the same
  ``Nats-Msg-Id``, which the stream drops. A gateway POSTs it to ``SCRIBE_ALERT_WEBHOOK_URL``
  (``gateway.alerts``).
- **Cheap.** :meth:`CostWatch.after_usage` runs after every ledger row; it queries the ledger at
  most every :data:`CHECK_EVERY_S` seconds per process, sooner when :data:`CHECK_NOW_USD` or more
  has been billed since the last check, never for a row that cost nothing (the local backend: a
  free row cannot raise today's cost, and the projection only falls as time passes), and not at
  all once every enabled threshold has fired today. A check is one index range scan of two days
  of the ledger. A row billed in the last few seconds before a quiet spell is checked with the
  next billed row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg
from nats.js import JetStreamContext

from core import bus, subjects
from core.messages import CostAlert, CostAlertKind
from core.settings import Settings
from store import alerts as store
from store.costs import projection

logger = logging.getLogger(__name__)

CHECK_EVERY_S = 5.0  # a process queries the ledger at most this often...
CHECK_NOW_USD = 1.0  # ...unless this much has been billed since its last check


@dataclass(frozen=True)
class Thresholds:
    """What raises an alert (``SCRIBE_ALERT_*``).

    Attributes:
        rise: The fraction above the previous day's cost (0.2: 20 %); 0 turns rise alerts off.
        daily_usd: The day's cost that raises an alert whatever the day before; 0 turns it off.
        min_usd: No rise alert while the figure compared is below this.
    """

    rise: float = 0.20
    daily_usd: float = 0.0
    min_usd: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(rise=settings.alert_rise, daily_usd=settings.alert_daily_usd, min_usd=settings.alert_min_usd)

    @property
    def enabled(self) -> frozenset[str]:
        """The thresholds that can raise an alert: ``rise``, ``daily``."""
        return frozenset({"rise"} if self.rise > 0 else set()) | frozenset({"daily"} if self.daily_usd > 0 else set())


def assess(cost_usd: float, previous_usd: float, now: datetime, thresholds: Thresholds) -> list[CostAlert]:
    """The alerts today's figures call for, whether or not they were sent already.

    Args:
        cost_usd: The UTC day's cost so far.
        previous_usd: The previous UTC day's cost.
        now: When (aware); its UTC day is the alert's.
        thresholds: The settings' thresholds.

    Returns:
        At most one alert per threshold: the plain kind when the cost so far crossed it, else the
        projected kind when the projection did.
    """
    now = now.astimezone(UTC)
    day, projected = now.date(), projection(cost_usd, now)
    found: list[CostAlert] = []

    def alert(kind: CostAlertKind, threshold: float, message: str) -> None:
        found.append(
            CostAlert(
                day=day,
                kind=kind,
                cost_usd=round(cost_usd, 6),
                projected_usd=round(projected, 6),
                previous_usd=round(previous_usd, 6),
                threshold_usd=round(threshold, 6),
                message=message,
                at=now,
            )
        )

    if thresholds.rise > 0:
        limit = previous_usd * (1 + thresholds.rise)
        before = f"the previous day's ${previous_usd:,.2f}" if previous_usd > 0 else "nothing the previous day"
        above = f"more than {thresholds.rise:.0%} above {before} (alert above ${limit:,.2f})"
        if cost_usd > limit and cost_usd >= thresholds.min_usd:
            alert("rise", limit, f"{_today(day)} cost ${cost_usd:,.2f} so far, {above}.")
        elif projected > limit and projected >= thresholds.min_usd:
            alert("projected_rise", limit, f"{_today(day)} {_pace(cost_usd, projected)}, {above}.")
    if thresholds.daily_usd > 0:
        daily = f"the daily alert amount of ${thresholds.daily_usd:,.2f} (SCRIBE_ALERT_DAILY_USD)"
        if cost_usd >= thresholds.daily_usd:
            alert("daily", thresholds.daily_usd, f"{_today(day)} cost ${cost_usd:,.2f} so far, reaching {daily}.")
        elif projected >= thresholds.daily_usd:
            alert("projected_daily", thresholds.daily_usd, f"{_today(day)} {_pace(cost_usd, projected)}, past {daily}.")
    return found


def _today(day: date) -> str:
    return f"Transcription on {day.isoformat()} (UTC)"


def _pace(cost_usd: float, projected: float) -> str:
    return f"is on pace to cost ${projected:,.2f} by the end of the day (${cost_usd:,.2f} so far)"


class CostWatch:
    """One process's cost alerts: checks the ledger after its rows, publishes what it is first to notice.

    Args:
        pool: The asyncpg pool (the ledger and ``cost_alerts``).
        js: JetStream, to publish on ``scribe.alerts.cost``.
        settings: The ``SCRIBE_ALERT_*`` thresholds.
        clock: The time of day (aware); tests pass a fixed one.
        monotonic: Seconds for spacing the checks.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.js = js
        self.thresholds = Thresholds.from_settings(settings)
        self.clock = clock
        self.monotonic = monotonic
        self.unchecked_usd = 0.0  # billed since the last check began
        self.last_check = -float("inf")
        self.checking = False
        self.day: date | None = None
        self.done: set[str] = set()  # kinds stored for self.day, by this process or another

    async def after_usage(self, cost_usd: float) -> None:
        """After a ledger row: check now if due (see the module). Never raises: the row is billed already."""
        if cost_usd <= 0 or not self.thresholds.enabled:
            return
        self.unchecked_usd += cost_usd
        since = self.monotonic() - self.last_check
        if self.checking or (since < CHECK_EVERY_S and self.unchecked_usd < CHECK_NOW_USD):
            return
        try:
            await self.check(self.clock())
        except Exception:  # the alert waits for the next check; the chunk must not fail for it
            logger.exception("cost alert check failed")

    async def check(self, now: datetime) -> list[CostAlert]:
        """Compare the ledger's figures for ``now``'s UTC day, store and publish what is new.

        Args:
            now: When (aware).

        Returns:
            The alerts this call published (none when another process was first).
        """
        self.checking, self.last_check, self.unchecked_usd = True, self.monotonic(), 0.0
        try:
            day = now.astimezone(UTC).date()
            if day != self.day:
                self.day, self.done = day, await store.claimed_thresholds(self.pool, day)
            if self.thresholds.enabled <= self.done:
                return []
            previous_usd, cost_usd = await store.day_costs(self.pool, day)
            published = []
            for alert in assess(cost_usd, previous_usd, now, self.thresholds):
                threshold = store.threshold_of(alert.kind)
                if threshold in self.done:
                    continue
                if await self.publish(alert):
                    published.append(alert)
                self.done.add(threshold)
            return published
        finally:
            self.checking = False

    async def publish(self, alert: CostAlert) -> bool:
        """Store, publish and log the alert if no process has; True when this one did."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await store.claim(conn, alert):
                return False
            msg_id = f"cost:{alert.day}:{store.threshold_of(alert.kind)}"
            await bus.publish(self.js, subjects.ALERTS_COST, alert, msg_id=msg_id)
        logger.warning(
            "cost alert: %s",
            alert.message,
            extra={
                "day": alert.day.isoformat(),
                "kind": alert.kind,
                "cost_usd": alert.cost_usd,
                "projected_usd": alert.projected_usd,
                "previous_usd": alert.previous_usd,
                "threshold_usd": alert.threshold_usd,
            },
        )
        return True

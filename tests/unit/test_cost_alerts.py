"""The cost alerts' comparison (``transcriber.alerts.assess``) and how often a process checks, on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.messages import CostAlert, cost_alert_decoder, encoder
from core.settings import Settings, SettingsError
from transcriber.alerts import CHECK_EVERY_S, CostWatch, Thresholds, assess, projection

DAY = datetime(2021, 3, 4, tzinfo=UTC)
RISE = Thresholds(rise=0.20, min_usd=1.0)


def at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


def kinds(alerts: list[CostAlert]) -> list[str]:
    return [alert.kind for alert in alerts]


def test_a_cost_more_than_20_percent_above_the_previous_day_alerts_and_one_below_does_not() -> None:
    assert kinds(assess(12.01, 10.0, at(23.9), RISE)) == ["rise"]
    assert kinds(assess(11.90, 10.0, at(23.9), RISE)) == []  # +19 %, and its projection +19.5 %
    [alert] = assess(15.0, 10.0, at(20), RISE)
    figures = (alert.day.isoformat(), alert.cost_usd, alert.previous_usd, alert.threshold_usd)
    assert figures == ("2021-03-04", 15, 10, 12)
    assert alert.projected_usd == pytest.approx(18.0)
    assert alert.message == (
        "Transcription on 2021-03-04 (UTC) cost $15.00 so far, more than 20% above the previous day's $10.00 "
        "(alert above $12.00)."
    )
    assert cost_alert_decoder.decode(encoder.encode(alert)) == alert


def test_the_projection_alerts_before_the_cost_itself_does() -> None:
    [alert] = assess(6.0, 10.0, at(6), RISE)  # a quarter of the day gone, on pace for $24
    assert (alert.kind, alert.projected_usd) == ("projected_rise", 24.0)
    assert "on pace to cost $24.00 by the end of the day ($6.00 so far)" in alert.message
    assert kinds(assess(2.0, 10.0, at(6), RISE)) == []  # on pace for $8


def test_the_first_hours_of_a_day_project_at_most_12_times_the_cost() -> None:
    assert projection(1.0, at(0.01)) == 12.0  # not 2,400 times after 36 seconds
    assert projection(1.0, at(2)) == 12.0
    assert projection(1.0, at(12)) == 2.0
    assert kinds(assess(0.9, 10.0, at(0.05), RISE)) == []  # $10.80 projected: under $12
    assert kinds(assess(1.1, 10.0, at(0.05), RISE)) == ["projected_rise"]


def test_a_free_or_nearly_free_previous_day_needs_the_minimum_to_alert() -> None:
    assert kinds(assess(0.30, 0.05, at(12), RISE)) == []  # 6 times the day before, and 60 cents projected
    assert kinds(assess(0.45, 0.0, at(12), RISE)) == []
    assert kinds(assess(0.60, 0.0, at(12), RISE)) == ["projected_rise"]  # $1.20 projected
    [alert] = assess(1.50, 0.0, at(12), RISE)
    assert alert.kind == "rise" and "more than 20% above nothing the previous day" in alert.message
    assert kinds(assess(1.50, 0.0, at(12), Thresholds(rise=0.2, min_usd=5.0))) == []


def test_the_daily_amount_alerts_on_the_cost_or_its_projection_and_zero_is_off() -> None:
    daily = Thresholds(rise=0.0, daily_usd=50.0)
    assert kinds(assess(50.0, 100.0, at(23), daily)) == ["daily"]
    assert kinds(assess(30.0, 100.0, at(12), daily)) == ["projected_daily"]
    assert kinds(assess(20.0, 100.0, at(12), daily)) == []
    assert kinds(assess(1000.0, 1.0, at(12), Thresholds(rise=0.0, daily_usd=0.0))) == []
    assert kinds(assess(60.0, 10.0, at(23), Thresholds(rise=0.2, daily_usd=50.0))) == ["rise", "daily"]
    assert Thresholds(rise=0.0).enabled == frozenset()
    assert Thresholds(rise=0.2, daily_usd=5.0).enabled == {"rise", "daily"}


def test_the_alert_settings_are_checked_at_start() -> None:
    settings = Settings.from_env({"SCRIBE_ALERT_RISE": "0.5", "SCRIBE_ALERT_DAILY_USD": "20"})
    assert Thresholds.from_settings(settings) == Thresholds(rise=0.5, daily_usd=20.0, min_usd=1.0)
    with pytest.raises(SettingsError, match="SCRIBE_ALERT_RISE=-0.1 must not be negative"):
        Settings.from_env({"SCRIBE_ALERT_RISE": "-0.1"})
    with pytest.raises(SettingsError, match="SCRIBE_ALERT_WEBHOOK_URL='ftp://x' is not an http"):
        Settings.from_env({"SCRIBE_ALERT_WEBHOOK_URL": "ftp://x"})
    with pytest.raises(SettingsError, match="SCRIBE_ALERT_WEBHOOK_SECRET must be whsec_"):
        Settings.from_env({"SCRIBE_ALERT_WEBHOOK_SECRET": "hunter2"})
    assert Settings.from_env({"SCRIBE_ALERT_WEBHOOK_SECRET": "whsec_c2VjcmV0"}).alert_webhook_secret


class CountingWatch(CostWatch):
    """A watch whose check only counts: when it would query the ledger."""

    def __init__(self, settings: Settings, clock: list[float]) -> None:
        super().__init__(None, None, settings, monotonic=lambda: clock[0])  # type: ignore[arg-type]
        self.checks = 0

    async def check(self, now: datetime) -> list[CostAlert]:
        self.checking, self.last_check, self.unchecked_usd = True, self.monotonic(), 0.0
        self.checks += 1
        self.checking = False
        return []


async def test_a_process_checks_the_ledger_at_most_every_few_seconds_unless_much_was_billed() -> None:
    clock = [1000.0]
    watch = CountingWatch(Settings(), clock)
    await watch.after_usage(0.006)
    assert watch.checks == 1
    for _ in range(50):  # a busy second: 50 rows
        await watch.after_usage(0.006)
    assert watch.checks == 1
    await watch.after_usage(0.0)  # a free row (the local backend, a cache hit) is never a reason to check
    clock[0] += CHECK_EVERY_S
    await watch.after_usage(0.0)
    assert watch.checks == 1
    await watch.after_usage(0.006)
    assert watch.checks == 2
    await watch.after_usage(0.5)
    await watch.after_usage(0.6)  # $1.10 since the last check: sooner
    assert watch.checks == 3
    off = CountingWatch(Settings(alert_rise=0.0), clock)
    clock[0] += 100
    await off.after_usage(10.0)
    assert off.checks == 0  # every threshold off: nothing to check

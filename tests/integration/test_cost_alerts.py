"""Cost alerts on a real ledger (PostgreSQL), the real ``SCRIBE_ALERTS`` stream, and a local webhook receiver.

Ledger rows are inserted with chosen ``created_at`` days in 1987, which nothing else bills, and
the watches are given the time (``check(now)``, ``clock=``): the figures are the test's own
whatever else the session database holds. Each test empties its days first, so a database kept
between runs (``SCRIBE_TEST_DATABASE_URL``) gives the same answers.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from core import bus, subjects
from core.messages import CostAlert, cost_alert_decoder
from core.process import Runtime
from core.settings import Settings
from gateway import webhooks
from gateway.alerts import AlertSender
from store import alerts as store
from tests.integration.test_webhooks import FAST, WAIT_S, receiver
from transcriber.alerts import CostWatch

pytestmark = pytest.mark.integration

SECRET = "whsec_" + "c2NyaWJlLWNvc3QtYWxlcnRzLXRlc3Qtc2VjcmV0"


def _at(day: date, hours: float) -> datetime:
    return store.day_start(day) + timedelta(hours=hours)


async def _fresh(rt: Runtime, day: date) -> None:
    """Nothing billed on ``day`` and the day before, no alert stored for ``day``."""
    start = store.day_start(day)
    await rt.pool.execute(
        "DELETE FROM usage WHERE created_at >= $1 AND created_at < $2", start - timedelta(days=1), start + timedelta(1)
    )
    await rt.pool.execute("DELETE FROM cost_alerts WHERE day = $1", day)


async def _bill(rt: Runtime, when: datetime, cost_usd: float) -> None:
    """One ledger row, as the transcriber writes it, dated ``when``."""
    await rt.pool.execute(
        "INSERT INTO usage (backend, model, billed_seconds, cost_usd, created_at)"
        " VALUES ('openai', 'whisper-1', $1, $2, $3)",
        cost_usd / 0.006 * 60,
        cost_usd,
        when,
    )


async def _published(rt: Runtime) -> list[CostAlert]:
    """Every alert on the stream (this test's own nats-server), in order."""
    info = await rt.js.stream_info("SCRIBE_ALERTS")
    found: list[CostAlert] = []
    if not info.state.messages:
        return found
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await rt.js.get_msg("SCRIBE_ALERTS", seq)
        assert msg.subject == subjects.ALERTS_COST
        found.append(cost_alert_decoder.decode(msg.data or b""))
    return found


def _watch(rt: Runtime, settings: Settings | None = None, **kwargs: Any) -> CostWatch:
    return CostWatch(rt.pool, rt.js, settings or Settings(), **kwargs)


async def test_a_rise_over_20_percent_is_stored_published_and_logged_once(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="transcriber.alerts")
    day = date(1987, 3, 10)
    await _fresh(rt, day)
    await _bill(rt, _at(day, -12), 10.0)  # the previous day
    await _bill(rt, _at(day, 8), 6.0)
    watch = _watch(rt)
    assert await watch.check(_at(day, 20)) == []  # $6 so far, on pace for $7.20: under $12
    await _bill(rt, _at(day, 21), 6.5)
    [alert] = await watch.check(_at(day, 22))
    figures = (alert.day, alert.kind, alert.cost_usd, alert.previous_usd, alert.threshold_usd)
    assert figures == (day, "rise", 12.5, 10, 12)
    await _bill(rt, _at(day, 23), 5.0)
    assert await watch.check(_at(day, 23.5)) == []  # once per day, not once per call
    assert await _watch(rt).check(_at(day, 23.6)) == []  # nor once per process: another one starting now
    stored = await store.get(rt.pool, day, "rise")
    assert stored is not None and stored.alert == alert and stored.webhook_state is None
    assert await _published(rt) == [alert]
    [record] = [r for r in caplog.records if r.name == "transcriber.alerts"]
    assert record.levelno == logging.WARNING and record.getMessage() == f"cost alert: {alert.message}"
    assert (getattr(record, "kind", None), getattr(record, "cost_usd", None)) == ("rise", 12.5)


async def test_the_projection_alerts_first_and_the_rise_itself_adds_no_second_alert(rt: Runtime) -> None:
    day = date(1987, 4, 10)
    await _fresh(rt, day)
    await _bill(rt, _at(day, -3), 10.0)
    await _bill(rt, _at(day, 5), 6.0)
    watch = _watch(rt)
    [early] = await watch.check(_at(day, 6))  # a quarter of the day gone: on pace for $24
    assert (early.kind, early.projected_usd) == ("projected_rise", 24.0)
    assert await watch.check(_at(day, 7)) == []
    await _bill(rt, _at(day, 19), 7.0)
    # The cost itself is now $13, 30 % up: the same threshold, so no second alert, from this process
    # or from one that starts now.
    assert await watch.check(_at(day, 20)) == []
    assert await _watch(rt).check(_at(day, 21)) == []
    assert await _published(rt) == [early]
    assert [s.alert.kind for s in await store.since(rt.pool, day) if s.alert.day == day] == ["projected_rise"]


async def test_no_alert_under_the_rise_nor_for_cents_after_a_free_day(rt: Runtime) -> None:
    flat, free = date(1987, 5, 10), date(1987, 5, 20)
    for day in (flat, free):
        await _fresh(rt, day)
    await _bill(rt, _at(flat, -1), 10.0)
    await _bill(rt, _at(flat, 22), 11.0)  # +10 %, on pace for +14.8 % at 23:00
    await _bill(rt, _at(free, -1), 0.05)
    await _bill(rt, _at(free, 11), 0.30)  # six times the day before: 30 cents, 60 projected
    watch = _watch(rt)
    assert await watch.check(_at(flat, 23)) == []
    assert await watch.check(_at(free, 12)) == []
    assert [s for s in await store.since(rt.pool, flat) if s.alert.day in (flat, free)] == []
    assert await _published(rt) == []


async def test_two_processes_racing_store_and_publish_each_alert_once(rt: Runtime) -> None:
    day = date(1987, 6, 10)
    await _fresh(rt, day)
    await _bill(rt, _at(day, -1), 10.0)
    await _bill(rt, _at(day, 20), 20.0)
    settings = Settings(alert_daily_usd=15.0)
    connections = [await bus.connect(rt.settings.nats_url, f"transcriber-{i}") for i in range(4)]
    try:
        watches = [CostWatch(rt.pool, nc.jetstream(), settings) for nc in connections]  # a transcriber process each
        results = await asyncio.gather(*(watch.check(_at(day, 21)) for watch in watches))
    finally:
        for nc in connections:
            await nc.close()
    sent = sorted(alert.kind for found in results for alert in found)
    assert sent == ["daily", "rise"]
    assert sorted(alert.kind for alert in await _published(rt)) == ["daily", "rise"]
    assert sorted(s.alert.kind for s in await store.since(rt.pool, day) if s.alert.day == day) == ["daily", "rise"]


async def test_a_transcriber_checks_after_its_ledger_row(rt: Runtime) -> None:
    day = date(1987, 7, 10)
    await _fresh(rt, day)
    await _bill(rt, _at(day, -1), 10.0)
    await _bill(rt, _at(day, 20), 12.5)
    watch = _watch(rt, clock=lambda: _at(day, 21))
    await watch.after_usage(0.0)  # a free row: no check
    assert await _published(rt) == []
    await watch.after_usage(0.006)
    assert [alert.kind for alert in await _published(rt)] == ["rise"]


async def _delivered(rt: Runtime, day: date, kind: str) -> store.StoredAlert:
    """The alert once its webhook delivery has ended (the sender's outcome is in PostgreSQL)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            stored = await store.get(rt.pool, day, kind)
            if stored is not None and stored.webhook_state in ("delivered", "failed"):
                return stored
            await asyncio.sleep(0.05)


async def test_the_alert_webhook_is_posted_signed_and_retried_after_a_500(rt: Runtime) -> None:
    day = date(1987, 8, 10)
    await _fresh(rt, day)
    await _bill(rt, _at(day, -1), 10.0)
    await _bill(rt, _at(day, 20), 12.5)
    with receiver(500) as site:
        settings = Settings(allow_private_urls=True, alert_webhook_url=site.url, alert_webhook_secret=SECRET)
        sender = AlertSender(rt.nc, rt.pool, rt.topology.cost_alerts, settings, delays=FAST)
        stop = asyncio.Event()
        task = asyncio.create_task(sender.run(stop))
        try:
            [alert] = await _watch(rt).check(_at(day, 21))
            stored = await _delivered(rt, day, "rise")
        finally:
            stop.set()
            await task
    assert (stored.webhook_state, stored.webhook_attempts, stored.webhook_last_status) == ("delivered", 2, 200)
    assert len(site.got) == 2
    assert {headers["webhook-id"] for headers, _ in site.got} == {"cost-alert.1987-08-10.rise"}
    for headers, body in site.got:
        assert cost_alert_decoder.decode(body) == alert  # the alert exactly as on NATS
        assert webhooks.verify(SECRET, headers, body)

"""The operators' page, ``/admin`` (issue 18), in headless Chromium against a real gateway (keys mode) on real
NATS and PostgreSQL: a non-admin key is told why it sees nothing; an admin's key sees 30 days of a known
ledger as an SVG bar chart, the figures, an alert, the top users and jobs; today's bar shows its projection.
Nothing on the page breaks its Content-Security-Policy.

The 30 days are long past (picked at random, shown with ``?until=``), so no other test's rows are among
them; the one row of today's is a cent, removed at the end with the rest. Screenshots (light, dark, a
phone) go to the test's folder, to look at.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from pathlib import Path

import pytest

from core.messages import CostAlert, JobOptions
from store import accounts, repo
from store import alerts as alert_store
from tests.integration.test_gateway_stream import gateway
from tests.integration.test_viewer import Browser, chromium
from tests.integration.test_viewer_accounts import TEXT, VISIBLE, _shot, _type

pytestmark = pytest.mark.integration

# Every Content-Security-Policy violation on the page, recorded before its own scripts run.
WATCH_CSP = (
    "window.__csp = []; document.addEventListener('securitypolicyviolation',"
    " (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
)
BARS = """return [...document.querySelectorAll('#chart svg rect.bar')].map((r) => ({
  day: r.dataset.day, height: Number(r.getAttribute('height')), title: r.querySelector('title').textContent}))"""
ROWS = "return [...document.querySelectorAll(arguments[0] + ' tbody tr')].map((tr) => tr.innerText.split('\\t'))"


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    yield from chromium(tmp_path, monkeypatch)


def _daily_cost(n: int) -> float:
    """A month with a rhythm: quieter and busier days, two without calls, a slow rise."""
    return 0.0 if n in (5, 12) else round(0.9 + 0.6 * math.sin(n / 3) + n * 0.03, 4)


async def test_the_admin_page_draws_the_ledger_for_an_admin_key_only(
    settings, nats_url, database_url, pool, browser: Browser, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    last = date(1980, 2, 1) + timedelta(days=random.randrange(10_000))
    first = last - timedelta(days=29)
    users = [f"ana-{tag}", f"bo-{tag}", f"cy-{tag}"]
    admin_user = f"ops-{tag}"
    admin_key, _, _ = await accounts.create_key(pool, admin_user, plan=None, admin=True)
    ana_key, _, _ = await accounts.create_key(pool, users[0], plan=None, admin=False)
    rows = []
    for n in range(30):
        day = first + timedelta(days=n)
        for part, (user, share) in enumerate(zip(users, (0.5, 0.3, 0.2), strict=True)):
            if not _daily_cost(n):
                continue
            job = uuid.uuid4().hex
            await repo.create_job(
                pool, job, "https://example.com/a.mp3", user_id=user, options=JobOptions(), title=f"Lesson {n}.{part}"
            )
            for call in range(3):
                moment = datetime.combine(day, time(8 + part, call), tzinfo=UTC)
                cost = round(_daily_cost(n) * share / 3, 6)
                rows.append(
                    (job, user, "openai", "whisper-1", cost / 0.006 * 60, cost, call == 2 and n % 4 == 0, moment)
                )
    podcast = uuid.uuid4().hex
    await repo.create_job(
        pool, podcast, "https://example.com/p.mp3", user_id=users[1], options=JobOptions(), title="粵語 podcast #42"
    )
    rows.append(
        (
            podcast,
            users[1],
            "openai",
            "gpt-4o-transcribe",
            40 * 60.0,
            4.0,
            False,
            datetime.combine(first + timedelta(days=20), time(15), tzinfo=UTC),
        )
    )
    now = datetime.now(UTC)
    rows.append((podcast, users[1], "openai", "gpt-4o-transcribe", 60.0, 0.01, False, now))  # today's: a cent
    await pool.executemany(
        "INSERT INTO usage (job_id, user_id, backend, model, billed_seconds, cost_usd, cache_hit, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        rows,
    )
    alert_day = first + timedelta(days=20)
    alert = CostAlert(
        day=alert_day,
        kind="rise",
        cost_usd=4.0 + _daily_cost(20),
        projected_usd=4.0 + _daily_cost(20),
        previous_usd=_daily_cost(19),
        threshold_usd=round(_daily_cost(19) * 1.2, 6),
        message="Today's cost is more than 20 % above yesterday's.",
        at=datetime.combine(alert_day, time(15, 1), tzinfo=UTC),
    )
    await alert_store.claim(pool, alert)
    total = round(sum(row[5] for row in rows[:-1]), 4)
    cfg = settings.with_(auth="keys", nats_url=nats_url, database_url=database_url)
    browser.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH_CSP})
    try:
        async with gateway(cfg) as host:
            page = f"http://{host}/admin?days=30&until={last}"
            await browser.get(page)
            await browser.until(VISIBLE, "#sign-in", what="the sign-in form")
            assert not await browser.js(VISIBLE, "#costs")

            # A key that is not an admin's: who it is, and why there is nothing to see.
            await _type(browser, "#api-key", ana_key)
            await browser.click("#sign-in-button")
            refusal = await browser.until(TEXT, "#costs-error", what="the refusal")
            assert refusal.startswith(f"{users[0]} is not an admin"), refusal
            assert not await browser.js(VISIBLE, "#costs") and await browser.js(VISIBLE, "#signed-in")

            # An admin's key: the month as bars, one per day, as tall as the day's cost.
            await browser.click("#sign-out")
            await _type(browser, "#api-key", admin_key)
            await browser.click("#sign-in-button")
            await browser.state("shown")
            bars = await browser.until(BARS, what="the chart's bars")
            assert [bar["day"] for bar in bars] == [(first + timedelta(days=n)).isoformat() for n in range(30)]
            tallest = max(bars, key=lambda bar: bar["height"])
            assert tallest["day"] == (first + timedelta(days=20)).isoformat(), tallest
            assert [bar["height"] for bar in bars if bar["height"] == 0] == [0, 0]  # the two days without calls
            day_3 = bars[3]["height"] / tallest["height"]
            assert day_3 == pytest.approx(_daily_cost(3) / (4.0 + _daily_cost(20)), rel=0.01)
            assert bars[20]["title"].startswith(f"{alert_day.day} {alert_day.strftime('%b')} {alert_day.year}: $")

            assert await browser.js(TEXT, "#today-label") == f"On {last.day} {last.strftime('%b')} {last.year}"
            assert await browser.js(TEXT, "#today-projected") == "–"  # a day that is over
            shown_total = await browser.js(TEXT, "#total-cost")
            assert shown_total.startswith(f"${total:,.2f} (£{total * 0.79:,.2f})"), shown_total
            users_rows = await browser.js(ROWS, "#top-users")
            assert [row[0] for row in users_rows] == users, users_rows
            jobs_rows = await browser.js(ROWS, "#top-jobs")
            assert jobs_rows[0][:3] == ["粵語 podcast #42", users[1], "$4.00"], jobs_rows
            assert await browser.js("return document.querySelector('#top-jobs tbody a').getAttribute('href')") == (
                f"/jobs/{podcast}"
            )
            alert_text = await browser.js(TEXT, "#alerts-list")
            assert "Rise over the day before" in alert_text and alert.message in alert_text

            assert await browser.call(partial(_shot, browser, tmp_path, "admin-costs")) <= 1280
            await browser.call(partial(_shot, browser, tmp_path, "admin-costs-dark", scheme="dark"))
            phone = await browser.call(partial(_shot, browser, tmp_path, "admin-costs-phone", width=390))
            assert phone <= 390, f"the page scrolls sideways on a phone: {phone} px wide"

            # Today's window: today's bar and, above it, its projection to midnight.
            await browser.get(f"http://{host}/admin?days=7")
            await browser.state("shown")
            await browser.until("return document.querySelector('#chart svg rect.bar.today')", what="today's bar")
            projected = await browser.js(TEXT, "#today-projected")
            assert projected.startswith("$") and "£" in projected, projected
            if now.hour < 23:  # an outline only while the projection is above the cost so far
                assert await browser.js("return document.querySelectorAll('#chart svg rect.projected').length") == 1
            await browser.call(partial(_shot, browser, tmp_path, "admin-costs-today"))
            assert await browser.js("return window.__csp") == []
            await browser.get("about:blank")
    finally:
        await pool.execute("DELETE FROM usage WHERE user_id = ANY($1::text[])", users)
        await pool.execute("DELETE FROM cost_alerts WHERE day = $1 AND kind = 'rise'", alert_day)

"""The usage ledger read back (issue 18, part 1): totals per UTC day, model, user and job on a known ledger,
``GET /v1/usage`` (the key's user's rows only), ``GET /v1/admin/costs`` (admins; GBP at the setting's rate)
and ``scribe costs`` as an operator runs it.

Real PostgreSQL and real gateways (keys mode and none). The ledger is written on a day long past, picked
at random, and asked for with ``until``, so no other test's rows (today's) are in it and none of its rows
are in theirs (the cost alerts read today's); it is deleted afterwards.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import httpx
import pytest

from core.messages import JobOptions
from store import accounts, costs, repo
from tests.helpers import scribe_cli
from tests.integration.test_gateway_hostile import _error, serving

pytestmark = pytest.mark.integration


@dataclass
class KnownLedger:
    """Three days: ``day - 2`` (Ana's job "Alpha"), ``day - 1`` (nothing) and ``day`` (Ana's cached job, Bo's job
    "Gamma" and a free local call of Bo's without a job)."""

    day: date
    ana: str
    bo: str
    ana_key: str
    jobs: dict[str, str]  # name -> job id

    @property
    def until(self) -> str:
        return self.day.isoformat()


ROWS = [
    # (job, user, days before `day`, hour, backend, model, billed seconds, cost USD, cache hit); the hit saved
    # what the call it replaced would have cost (SAVED_USD)
    ("alpha", "ana", 2, 9, "openai", "whisper-1", 60.0, 0.006, False),
    ("alpha", "ana", 2, 9, "openai", "whisper-1", 60.0, 0.006, False),
    ("beta", "ana", 0, 8, "openai", "gpt-4o-mini-transcribe", 120.0, 0.006, False),
    ("beta", "ana", 0, 8, "openai", "gpt-4o-mini-transcribe", 0.0, 0.0, True),
    ("gamma", "bo", 0, 10, "openai", "whisper-1", 600.0, 0.06, False),
    (None, "bo", 0, 11, "local", "whisper-base", 30.0, 0.0, False),
]
SAVED_USD = 0.006


@pytest.fixture
async def known(pool: Any) -> AsyncIterator[KnownLedger]:
    day = date(1980, 1, 3) + timedelta(days=random.randrange(10_000))
    tag = uuid.uuid4().hex[:8]
    ana, bo = f"ana-{tag}", f"bo-{tag}"
    ana_key, _, _ = await accounts.create_key(pool, ana, plan=None, admin=False)
    await accounts.create_key(pool, bo, plan=None, admin=False)
    users = {"ana": ana, "bo": bo}
    jobs = {name: uuid.uuid4().hex for name in ("alpha", "beta", "gamma")}
    titles = {"alpha": "Alpha", "gamma": "Gamma"}
    for name, job_id in jobs.items():
        owner = "bo" if name == "gamma" else "ana"
        await repo.create_job(
            pool,
            job_id,
            "https://example.com/a.mp3",
            user_id=users[owner],
            options=JobOptions(),
            title=titles.get(name),
        )
    await pool.executemany(
        "INSERT INTO usage (job_id, user_id, backend, model, billed_seconds, cost_usd, cache_hit, created_at,"
        " saved_usd) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [
            (
                jobs[job] if job else None,
                users[user],
                backend,
                model,
                seconds,
                cost,
                hit,
                datetime.combine(day - timedelta(days=before), time(hour), tzinfo=UTC),
                SAVED_USD if hit else 0.0,
            )
            for job, user, before, hour, backend, model, seconds, cost, hit in ROWS
        ],
    )
    try:
        yield KnownLedger(day, ana, bo, ana_key, jobs)
    finally:
        await pool.execute("DELETE FROM usage WHERE user_id = ANY($1::text[])", [ana, bo])


async def test_the_ledger_adds_up_per_day_model_user_and_job(pool, known):
    noon = datetime.combine(known.day, time(12), tzinfo=UTC)
    ledger = await costs.ledger(pool, costs.window(3, now=noon))

    assert [d.day for d in ledger.days] == [known.day - timedelta(days=n) for n in (2, 1, 0)]
    assert [(d.totals.calls, d.totals.cost_usd) for d in ledger.days] == [(2, 0.012), (0, 0.0), (4, 0.066)]
    assert ledger.total == costs.Totals(
        calls=6, cache_hits=1, billed_seconds=870.0, cost_usd=0.078, saved_usd=SAVED_USD
    )
    assert [(m.model, m.backend, m.totals.calls, m.totals.cost_usd) for m in ledger.models] == [
        ("whisper-1", "openai", 3, 0.072),
        ("gpt-4o-mini-transcribe", "openai", 2, 0.006),
        ("whisper-base", "local", 1, 0.0),
    ]
    assert [(u.user, u.totals.cost_usd, u.totals.cache_hits) for u in ledger.users] == [
        (known.bo, 0.06, 0),
        (known.ana, 0.018, 1),
    ]
    # Jobs cost 0.006, 0.012 and 0.06: p90 interpolates 0.8 of the way from the second to the third.
    assert ledger.per_job == costs.PerJob(jobs=3, mean_usd=0.026, p90_usd=0.0504, max_usd=0.06)
    assert [(j.job_id, j.title, j.user, j.totals.cost_usd) for j in ledger.top_jobs] == [
        (known.jobs["gamma"], "Gamma", known.bo, 0.06),
        (known.jobs["alpha"], "Alpha", known.ana, 0.012),
        (known.jobs["beta"], None, known.ana, 0.006),
    ]
    # At noon, half the day gone: twice the cost so far.
    assert ledger.last_day_totals.cost_usd == 0.066 and ledger.projected_usd == pytest.approx(0.132)

    anas = await costs.ledger(pool, costs.window(3, now=noon), user=known.ana, top=1)
    assert anas.total.cost_usd == 0.018 and [u.user for u in anas.users] == [known.ana]
    assert [j.job_id for j in anas.top_jobs] == [known.jobs["alpha"]] and anas.per_job.jobs == 2

    # A past day is over: it projects its own cost, and `until` makes the window end there.
    past = await costs.ledger(pool, costs.window(2, until=known.day - timedelta(days=1)))
    assert [d.totals.cost_usd for d in past.days] == [0.012, 0.0] and past.projected_usd == pytest.approx(0.0)
    nothing = await costs.ledger(pool, costs.window(1, until=date(1971, 1, 1)))
    assert nothing.empty and len(nothing.days) == 1 and nothing.per_job == costs.PerJob()


def test_the_projection_keeps_the_pace_but_not_a_fortune_after_midnight():
    day = datetime(2026, 3, 4, tzinfo=UTC)
    assert costs.projection(3.0, day + timedelta(hours=18)) == pytest.approx(4.0)
    assert costs.projection(1.0, day + timedelta(minutes=5)) == pytest.approx(12.0)  # two hours counted at least
    assert costs.projection(5.0, day + timedelta(days=1) - timedelta(microseconds=1)) == pytest.approx(5.0)
    for days in (0, 367):
        with pytest.raises(ValueError, match="1 to 366"):
            costs.window(days)
    with pytest.raises(ValueError, match="before the year 1"):
        costs.window(30, until=date(1, 1, 5))


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_usage_is_the_keys_own_and_costs_need_an_admin_key(settings, nats_url, database_url, pool, known):
    admin_key, _, _ = await accounts.create_key(pool, f"ops-{uuid.uuid4().hex[:8]}", plan=None, admin=True)
    keys = settings.with_(nats_url=nats_url, database_url=database_url, auth="keys", gbp_per_usd=0.5)
    window = {"days": "3", "until": known.until}
    async with serving(keys) as (host, _):
        async with httpx.AsyncClient(base_url=f"http://{host}") as client:
            mine = await client.get("/v1/usage", params=window, headers=_bearer(known.ana_key))
            assert mine.status_code == 200, mine.text
            report = mine.json()
            assert report["user"] == known.ana and report["gbp_per_usd"] == 0.5
            assert report["total"] == {
                "calls": 4,
                "cache_hits": 1,
                "billed_seconds": 240.0,
                "cost_usd": 0.018,
                "cost_gbp": 0.009,
                "saved_usd": SAVED_USD,
                "saved_gbp": SAVED_USD / 2,
            }
            assert [(d["day"], d["cost_usd"]) for d in report["days"]] == [
                ((known.day - timedelta(days=2)).isoformat(), 0.012),
                ((known.day - timedelta(days=1)).isoformat(), 0.0),
                (known.until, 0.006),
            ]
            assert {m["model"] for m in report["models"]} == {"whisper-1", "gpt-4o-mini-transcribe"}  # not Bo's
            assert report["per_job"]["jobs"] == 2 and report["per_job"]["max_usd"] == 0.012

            refused = await client.get("/v1/admin/costs", params=window, headers=_bearer(known.ana_key))
            assert refused.status_code == 403 and _error(refused)["code"] == "forbidden"
            assert "admin API key" in _error(refused)["message"]
            assert (await client.get("/v1/admin/costs")).status_code == 401
            bad = await client.get("/v1/usage", params={"days": "367"}, headers=_bearer(known.ana_key))
            assert bad.status_code == 400 and "days" in _error(bad)["message"]
            early = {"days": "30", "until": "0001-01-05"}
            too_early = await client.get("/v1/usage", params=early, headers=_bearer(known.ana_key))
            assert too_early.status_code == 400 and "before the year 1" in _error(too_early)["message"]

            answer = await client.get("/v1/admin/costs", params=window, headers=_bearer(admin_key))
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["total"]["cost_usd"] == 0.078 and body["total"]["cost_gbp"] == 0.039
            assert [(u["user"], u["cost_usd"], u["cost_gbp"]) for u in body["users"]] == [
                (known.bo, 0.06, 0.03),
                (known.ana, 0.018, 0.009),
            ]
            assert body["top_users"] == body["users"]
            assert [(j["title"], j["user"], j["cost_gbp"]) for j in body["top_jobs"]] == [
                ("Gamma", known.bo, 0.03),
                ("Alpha", known.ana, 0.006),
                (None, known.ana, 0.003),
            ]
            assert body["per_job"] == {
                "jobs": 3,
                "mean_usd": 0.026,
                "p90_usd": 0.0504,
                "max_usd": 0.06,
                "mean_gbp": 0.013,
                "p90_gbp": 0.0252,
                "max_gbp": 0.03,
            }
            # The window ends on a day that is over: its "projection" is what it cost.
            assert body["today"]["day"] == known.until
            assert body["today"]["cost_usd"] == body["today"]["projected_usd"] == 0.066
            assert body["today"]["projected_gbp"] == 0.033 and body["alerts"] == []

            schema = (await client.get("/schema/openapi.json")).json()
            assert {"/v1/usage", "/v1/admin/costs"} <= set(schema["paths"])
            assert {"AdminCosts", "UsageReport", "DayProjection"} <= set(schema["components"]["schemas"])


async def test_without_accounts_the_one_user_sees_the_whole_deployment(settings, nats_url, database_url, known):
    none = settings.with_(nats_url=nats_url, database_url=database_url, auth="none")
    window = {"days": "1", "until": known.until}
    async with serving(none) as (host, _):
        async with httpx.AsyncClient(base_url=f"http://{host}") as client:
            report = (await client.get("/v1/usage", params=window)).json()
            assert report["user"] is None and report["total"]["cost_usd"] == 0.066
            assert report["total"]["cost_gbp"] == round(0.066 * 0.79, 6)  # the default rate
            costs_answer = await client.get("/v1/admin/costs", params=window)
            assert costs_answer.status_code == 200 and costs_answer.json()["top_jobs"][0]["title"] == "Gamma"


def test_scribe_costs_prints_a_table_with_bars_in_usd_and_gbp(database_url, tmp_path, known):
    env = {
        **os.environ,
        "SCRIBE_DATABASE_URL": database_url,
        "SCRIBE_DATA_DIR": str(tmp_path),
        "SCRIBE_GBP_PER_USD": "0.5",
    }
    window = ["--days", "3", "--until", known.until]
    shown = scribe_cli("costs", *window, env=env, timeout=60)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"Cost of the speech model over the 3 UTC days from {known.day - timedelta(days=2)}")
    rows = {line.split()[0]: line for line in lines if line[:4].isdigit() or line.startswith("TOTAL")}
    first, empty, last = (rows[(known.day - timedelta(days=n)).isoformat()] for n in (2, 1, 0))
    assert last.split()[1:7] == ["4", "1", "12.5", "0.0660", "0.0330", "0.0060"] and last.endswith("█" * 30)
    assert first.split()[1:6] == ["2", "0", "2.0", "0.0120", "0.0060"] and first.endswith("█" * 5 + "▌")
    assert "█" not in empty
    assert rows["TOTAL"].split()[1:7] == ["6", "1", "14.5", "0.0780", "0.0390", "0.0060"]
    assert "The caches answered 1 of 6 calls without billing: they saved $0.0060 (£0.0030)." in lines
    assert "Cost per job (3 jobs): mean $0.0260 (£0.0130), p90 $0.0504 (£0.0252), max $0.0600 (£0.0300)." in lines

    by_user = scribe_cli("costs", *window, "--by", "user", env=env, timeout=60)
    users = [line.split()[0] for line in by_user.stdout.splitlines()[2:] if line]
    assert users[:4] == ["USER", known.bo, known.ana, "TOTAL"], by_user.stdout
    assert "Today so far" not in by_user.stdout  # the window ends on a day that is over

    empty_ledger = scribe_cli("costs", "--days", "7", "--until", "1971-01-07", env=env, timeout=60)
    assert empty_ledger.returncode == 0, empty_ledger.stderr
    assert empty_ledger.stdout == (
        "No calls to the speech model in the 7 UTC days from 1971-01-01 to 1971-01-07: the ledger is empty, "
        "nothing was billed.\n"
    )
    wrong = scribe_cli("costs", "--days", "0", env=env, timeout=60)
    assert wrong.returncode == 2 and "give 1 to 366 days" in wrong.stderr

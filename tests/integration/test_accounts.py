"""Accounts (``SCRIBE_AUTH=keys``): keys kept only as hashes, each user's jobs their own, a share link
that only reads, revocation reaching every gateway, each quota's answer, and rate limits shared by
two gateways.

Real gateways (uvicorn with the gateway's own protocols, on ports) on real NATS JetStream (the rate
limits' counts too) and PostgreSQL; ``scribe keys`` as an operator runs it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import uuid
from typing import Any

import httpx
import msgspec
import pytest
import websockets

from core import subjects
from core.logs import JsonFormatter
from core.messages import JobSubmitted
from core.topology import JOBS
from store import accounts
from tests.helpers import scribe_cli
from tests.integration.test_gateway_hostile import _error, _ws_messages, serving
from tests.paths import AUDIO

pytestmark = pytest.mark.integration

LINK = {"url": "http://127.0.0.1:9/talk.mp3"}  # never fetched: no streamer runs here


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _user(pool: Any, plan: str = "free", *, admin: bool = False) -> tuple[str, str]:
    """A new user on ``plan`` and their key."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    key, _, _ = await accounts.create_key(pool, user, plan=plan, admin=admin)
    return user, key


async def _plan(pool: Any, **limits: float | int | None) -> str:
    """A plan of its own for a test: no limits but those given."""
    name = f"plan-{uuid.uuid4().hex[:8]}"
    await accounts.set_plan(pool, name, limits)
    return name


async def _finish_jobs(pool: Any, user: str, *, duration: float = 30.0) -> None:
    await pool.execute(
        "UPDATE jobs SET status = 'done', duration = $2, finished_at = now() WHERE user_id = $1 AND status = 'queued'",
        user,
        duration,
    )


def _keys_mode(settings: Any, nats_url: str, database_url: str, **changes: Any) -> Any:
    return settings.with_(nats_url=nats_url, database_url=database_url, auth="keys", **changes)


def test_keys_are_shown_once_kept_as_hashes_listed_by_prefix_and_revoked(database_url, tmp_path):
    env = {**os.environ, "SCRIBE_DATABASE_URL": database_url, "SCRIBE_DATA_DIR": str(tmp_path)}
    user = f"ana-{uuid.uuid4().hex[:6]}"
    made = scribe_cli("keys", "create", "--user", user, "--plan", "learner", env=env, timeout=60)
    assert made.returncode == 0, made.stderr
    key = made.stdout.splitlines()[-1]
    assert re.fullmatch(r"sk_[A-Za-z0-9_-]{43}", key) and made.stdout == key + "\n", made.stdout
    assert f"{user} (plan learner)" in made.stderr and key not in made.stderr

    listed = scribe_cli("keys", "list", env=env, timeout=60)
    line = next(row for row in listed.stdout.splitlines() if user in row)
    assert line.split()[:3] == [key[: accounts.SHOWN_PREFIX], user, "learner"] and key not in listed.stdout

    unknown = scribe_cli("keys", "create", "--user", user, "--plan", "gold", env=env, timeout=60)
    assert unknown.returncode == 2 and "no plan 'gold'" in unknown.stderr and unknown.stdout == ""

    revoked = scribe_cli("keys", "revoke", key[: accounts.SHOWN_PREFIX], env=env, timeout=60)
    assert revoked.returncode == 0 and key[: accounts.SHOWN_PREFIX] in revoked.stdout, revoked.stderr
    again = scribe_cli("keys", "revoke", key[: accounts.SHOWN_PREFIX], env=env, timeout=60)
    assert again.returncode == 1 and "no key in use" in again.stderr

    plan = f"trial-{uuid.uuid4().hex[:6]}"
    made = scribe_cli("plans", "set", plan, "--jobs-per-month", "5", "--max-job-minutes", "2.5", env=env, timeout=60)
    assert made.returncode == 0, made.stderr
    changed = scribe_cli(
        "plans", "set", plan, "--jobs-per-month", "none", "--concurrent-jobs", "2", env=env, timeout=60
    )
    row = next(line.split() for line in changed.stdout.splitlines() if line.startswith(plan))
    assert row == [plan, "2.5", "-", "-", "-", "2", "-", "-"], changed.stdout
    assert plan in scribe_cli("plans", "list", env=env, timeout=60).stdout
    wrong = scribe_cli("plans", "set", plan, "--concurrent-jobs", "two", env=env, timeout=60)
    assert wrong.returncode == 2 and "--concurrent-jobs 'two' is not a whole number" in wrong.stderr


async def test_a_key_is_in_no_table_and_no_log_line(settings, nats_url, database_url, pool, caplog):
    caplog.set_level(logging.DEBUG)
    user, key = await _user(pool)
    async with serving(_keys_mode(settings, nats_url, database_url)) as (host, _):
        async with httpx.AsyncClient(base_url=f"http://{host}", headers=_bearer(key)) as client:
            accepted = await client.post("/v1/jobs", json=LINK)
            assert accepted.status_code == 202, accepted.text
            assert (await client.get(f"/v1/jobs/{accepted.json()['job_id']}")).status_code == 200
            assert (await client.get("/v1/me", params={"key": key})).status_code == 200
        async with websockets.connect(
            f"ws://{host}/v1/jobs/{accepted.json()['job_id']}/stream", subprotocols=[f"key.{key}"]
        ) as ws:
            assert json.loads(await ws.recv())["type"] == "snapshot"
    # Every record as the gateway writes it (JSON lines; text lines redact the same way), DEBUG included.
    logged = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert accepted.json()["job_id"] in logged and "key." in logged  # the log was captured, handshakes too
    assert key[accounts.SHOWN_PREFIX :] not in logged
    tables = await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    for table in (row["tablename"] for row in tables):
        rows = await pool.fetch(f'SELECT t::text AS row FROM "{table}" t')  # noqa: S608 (names from the catalogue)
        assert not any(key[accounts.SHOWN_PREFIX :] in row["row"] for row in rows), table


async def test_each_user_sees_only_their_jobs_and_a_share_link_only_reads(settings, nats_url, database_url, pool):
    ana, ana_key = await _user(pool, "unlimited")
    _, bo_key = await _user(pool, "unlimited")
    _, admin_key = await _user(pool, "unlimited", admin=True)
    async with serving(_keys_mode(settings, nats_url, database_url)) as (host, _):
        base = f"http://{host}"
        async with (
            httpx.AsyncClient(base_url=base, headers=_bearer(ana_key)) as ana_http,
            httpx.AsyncClient(base_url=base, headers=_bearer(bo_key)) as bo_http,
            httpx.AsyncClient(base_url=base, headers=_bearer(admin_key)) as admin_http,
            httpx.AsyncClient(base_url=base) as stranger,
        ):
            accepted = (await ana_http.post("/v1/jobs", json=LINK)).json()
            job, token = accepted["job_id"], accepted["token"]
            path = f"/v1/jobs/{job}"

            # Without a key nothing but the share link's reads; a wrong key says so.
            assert _error(await stranger.post("/v1/jobs", json=LINK))["code"] == "unauthorized"
            assert (await stranger.get("/v1/jobs")).status_code == 401
            wrong = await stranger.get("/v1/me", headers=_bearer("sk_" + "x" * 43))
            assert wrong.status_code == 401 and "not valid" in _error(wrong)["message"]
            assert (await stranger.get(path, params={"token": token})).json()["status"] == "queued"
            assert (await stranger.get(f"{path}/transcript", params={"token": token})).json()["partial"] is True
            assert (await stranger.delete(path, params={"token": token})).status_code == 401
            assert (await stranger.delete(path, params={"token": token, "purge": "true"})).status_code == 401
            assert (await stranger.get("/healthz")).status_code == 200 and (await stranger.get("/")).status_code == 200
            assert (await stranger.options("/v1/me")).status_code == 204  # a preflight shows nothing

            # Another user's key finds no such job, over REST and SSE, and cannot list, cancel or purge it.
            for answer in (
                await bo_http.get(path),
                await bo_http.get(f"{path}/transcript"),
                await bo_http.get(f"{path}/events"),
                await bo_http.delete(path),
                await bo_http.delete(path, params={"purge": "true"}),
                await bo_http.patch(f"{path}/lines/0", json={"text": "你好"}),
            ):
                assert answer.status_code == 404 and _error(answer)["code"] == "not_found", answer.text
            assert job not in {j["job_id"] for j in (await bo_http.get("/v1/jobs")).json()["jobs"]}
            # With the share link too, another user's key only reads.
            shared = await bo_http.delete(path, params={"token": token})
            assert shared.status_code == 403 and _error(shared)["code"] == "forbidden"
            assert (await bo_http.get(path, params={"token": token})).status_code == 200

            # A retry key is each user's own: the same key and body from another user is another job.
            retry = {"Idempotency-Key": "lesson-1"}
            mine = await ana_http.post("/v1/jobs", json=LINK, headers=retry)
            theirs = await bo_http.post("/v1/jobs", json=LINK, headers=retry)
            assert mine.status_code == theirs.status_code == 202 and mine.json()["job_id"] != theirs.json()["job_id"]
            again = await ana_http.post("/v1/jobs", json=LINK, headers=retry)
            assert again.json()["job_id"] == mine.json()["job_id"] and again.headers["Idempotent-Replayed"] == "true"
            await ana_http.delete(f"/v1/jobs/{mine.json()['job_id']}")

            # The owner and an admin see it and list it; the owner cancels it.
            listed = [(j["job_id"], j["token"]) for j in (await ana_http.get("/v1/jobs")).json()["jobs"]]
            assert listed == [(mine.json()["job_id"], mine.json()["token"]), (job, token)]
            assert job in {
                j["job_id"] for j in (await admin_http.get("/v1/jobs", params={"limit": 100})).json()["jobs"]
            }
            assert (await admin_http.get(path)).status_code == 200
            assert (await ana_http.delete(path)).json()["status"] == "cancelled"

        # The websocket: another user's key is refused like an unknown job; the owner's key streams.
        async with websockets.connect(f"ws://{host}{path}/stream", subprotocols=[f"key.{bo_key}"]) as ws:
            refused, code = await _ws_messages(ws)
        async with websockets.connect(f"ws://{host}{path}/stream", subprotocols=[f"key.{ana_key}"]) as ws:
            owned, _ = await _ws_messages(ws)
        async with websockets.connect(f"ws://{host}{path}/stream", subprotocols=["key.sk_" + "x" * 43]) as ws:
            bad, bad_code = await _ws_messages(ws)
    assert [m["code"] for m in refused] == ["not_found"] and code == 4404
    assert [m["type"] for m in owned][-1] == "cancelled"
    assert [m["code"] for m in bad] == ["unauthorized"] and bad_code == 4401
    assert ana  # the owner's name is the job's user
    assert await pool.fetchval("SELECT user_id FROM jobs WHERE id = $1", job) == ana


async def test_a_revoked_key_is_refused_by_another_gateway_within_a_second(
    settings, nats_url, database_url, pool, tmp_path
):
    _, key = await _user(pool)
    first = _keys_mode(settings, nats_url, database_url, data_dir=tmp_path / "a")
    second = _keys_mode(settings, nats_url, database_url, data_dir=tmp_path / "b")
    async with serving(first) as (host_a, _), serving(second) as (host_b, _):
        async with httpx.AsyncClient(headers=_bearer(key)) as http:
            assert (await http.get(f"http://{host_a}/v1/me")).status_code == 200
            assert (await http.get(f"http://{host_b}/v1/me")).status_code == 200
            revoked_at = time.monotonic()
            assert await accounts.revoke_key(pool, key[: accounts.SHOWN_PREFIX])
            while (await http.get(f"http://{host_b}/v1/me")).status_code == 200:  # noqa: ASYNC110 (polling)
                await asyncio.sleep(0.02)
            took = time.monotonic() - revoked_at
            assert (await http.get(f"http://{host_a}/v1/me")).status_code == 401
    assert took < 1.0


async def test_each_quota_refuses_with_a_sentence_and_me_counts_it(settings, nats_url, database_url, pool, rt):
    jobs_plan = await _plan(pool, jobs_per_month=2, concurrent_jobs=1, max_job_minutes=10)
    day_plan = await _plan(pool, audio_minutes_per_day=1)
    month_plan = await _plan(pool, audio_minutes_per_month=2)
    async with serving(_keys_mode(settings, nats_url, database_url)) as (host, _):
        async with httpx.AsyncClient(base_url=f"http://{host}") as http:

            async def submit(key: str) -> httpx.Response:
                return await http.post("/v1/jobs", json=LINK, headers=_bearer(key))

            user, key = await _user(pool, jobs_plan)
            first = await submit(key)
            assert first.status_code == 202
            # The job carries its plan's length limit to the streamer, which enforces it while decoding.
            message = await rt.js.get_last_msg(JOBS.name, subjects.JOBS_SUBMITTED)
            sent = msgspec.json.decode(message.data, type=JobSubmitted)
            assert (sent.job_id, sent.user_id, sent.max_seconds, sent.plan) == (
                first.json()["job_id"],
                user,
                600.0,
                jobs_plan,
            )
            running = await submit(key)
            assert running.status_code == 403 and _error(running) == {
                "code": "quota_exceeded",
                "message": f"Your {jobs_plan} plan runs 1 job at a time; 1 is still in progress. "
                "Submit again when it has finished (or cancel it).",
            }
            await _finish_jobs(pool, user)
            assert (await submit(key)).status_code == 202
            await _finish_jobs(pool, user)
            monthly = _error(await submit(key))["message"]
            assert re.fullmatch(
                rf"Your {jobs_plan} plan allows 2 jobs a month; you have used 2\. It resets on 1 [A-Z][a-z]+\.", monthly
            )
            me = (await http.get("/v1/me", headers=_bearer(key))).json()
            used = {q["name"]: (q["limit"], q["used"]) for q in me["quotas"]}
            assert (me["user"], me["plan"], me["admin"]) == (user, jobs_plan, False)
            assert used["jobs_per_month"] == (2, 2) and used["concurrent_jobs"] == (1, 0)
            assert used["audio_minutes_per_month"] == (None, 1.0) and used["max_job_minutes"] == (10, None)

            user, key = await _user(pool, day_plan)
            assert (await submit(key)).status_code == 202
            await _finish_jobs(pool, user, duration=61.0)
            daily = _error(await submit(key))["message"]
            assert daily == (
                f"Your {day_plan} plan allows 1 minutes of audio a day; you have used 1.0. It resets at midnight UTC."
            )

            user, key = await _user(pool, month_plan)
            for _ in range(2):
                assert (await submit(key)).status_code == 202
                await _finish_jobs(pool, user, duration=60.0)
            assert "2 minutes of audio a month; you have used 2." in _error(await submit(key))["message"]

            # A failed job is not the user's use.
            user, key = await _user(pool, jobs_plan)
            await submit(key)
            await pool.execute("UPDATE jobs SET status = 'failed' WHERE user_id = $1", user)
            assert (await submit(key)).status_code == 202


async def test_rate_limits_hold_across_two_gateways_and_say_when_to_come_back(
    settings, nats_url, database_url, pool, rt, tmp_path
):
    plan = await _plan(pool, requests_per_minute=6)
    _, key = await _user(pool, plan)
    _, other_key = await _user(pool, plan)
    first = _keys_mode(settings, nats_url, database_url, data_dir=tmp_path / "a", rate_limit="4/minute")
    second = first.with_(data_dir=tmp_path / "b")
    async with serving(first) as (host_a, _), serving(second) as (host_b, _):
        hosts = [f"http://{host_a}", f"http://{host_b}"]
        async with httpx.AsyncClient(headers=_bearer(key)) as http:
            # Twelve at once, six on each gateway: the plan's six per minute pass, whichever gateway counts.
            answers = await asyncio.gather(*(http.get(f"{hosts[n % 2]}/v1/me") for n in range(12)))
            assert sorted(a.status_code for a in answers) == [200] * 6 + [429] * 6
            ok = next(a for a in answers if a.status_code == 200)
            assert ok.headers["RateLimit-Limit"] == "6" and ok.headers["RateLimit-Policy"] == "6; w=60"
            refused = next(a for a in answers if a.status_code == 429)
            assert _error(refused)["code"] == "rate_limited" and "this API key" in _error(refused)["message"]
            assert 0 < int(refused.headers["Retry-After"]) <= 60
            assert refused.headers["RateLimit-Remaining"] == "0"
            # Another key has its own count; the page and its files are not counted.
            assert (await http.get(f"{hosts[0]}/v1/me", headers=_bearer(other_key))).status_code == 200
            assert (await http.get(f"{hosts[1]}/static/viewer.js")).status_code == 200

        # Without a key (a share link's reader), the client address is counted at SCRIBE_RATE_LIMIT.
        accepted = (await httpx.AsyncClient().post(f"{hosts[0]}/v1/jobs", json=LINK, headers=_bearer(other_key))).json()
        url = f"/v1/jobs/{accepted['job_id']}"
        async with httpx.AsyncClient(params={"token": accepted["token"]}) as reader:
            codes = [(await reader.get(f"{hosts[n % 2]}{url}")).status_code for n in range(5)]
        assert codes == [200, 200, 200, 200, 429]

    # Benchmarks from one address turn the address's count off.
    async with serving(first.with_(rate_limit_addresses=False)) as (host, _):
        async with httpx.AsyncClient(params={"token": accepted["token"]}) as reader:
            codes = [(await reader.get(f"http://{host}{url}")).status_code for _ in range(5)]
        assert codes == [200] * 5


async def test_an_api_key_holds_at_most_max_streams_from_any_address(settings, nats_url, database_url, pool):
    _, key = await _user(pool, "unlimited")
    async with serving(_keys_mode(settings, nats_url, database_url, max_streams=1)) as (host, _):
        async with httpx.AsyncClient(base_url=f"http://{host}", headers=_bearer(key)) as http:
            job = (await http.post("/v1/jobs", json=LINK)).json()["job_id"]
            async with websockets.connect(f"ws://{host}/v1/jobs/{job}/stream", subprotocols=[f"key.{key}"]) as ws:
                assert json.loads(await ws.recv())["type"] == "snapshot"
                # The same key from another address: its own cap.
                async with websockets.connect(
                    f"ws://{host}/v1/jobs/{job}/stream", subprotocols=[f"key.{key}"], local_addr=("127.0.0.2", 0)
                ) as second:
                    got, code = await _ws_messages(second)
                other = httpx.AsyncClient(
                    base_url=f"http://{host}",
                    headers=_bearer(key),
                    transport=httpx.AsyncHTTPTransport(local_address="127.0.0.3"),
                )
                async with other:
                    sse = await other.get(f"/v1/jobs/{job}/events")
    assert [(m["code"], m["retryable"]) for m in got] == [("too_many_streams", True)] and code == 4429
    assert "This API key already holds 1 live streams" in got[0]["message"]
    assert sse.status_code == 429 and _error(sse)["code"] == "too_many_streams"


async def test_scribe_transcribe_on_a_server_with_accounts_sends_scribe_api_key(settings, nats_url, database_url, pool):
    _, key = await _user(pool, await _plan(pool, jobs_per_month=0))
    clip = min(AUDIO.glob("*.wav"), key=lambda path: path.stat().st_size)
    async with serving(_keys_mode(settings, nats_url, database_url)) as (host, _):
        env = {**os.environ, "SCRIBE_API_KEY": ""}
        args = ("transcribe", str(clip), "--server", f"http://{host}", "-q")
        without = await asyncio.to_thread(scribe_cli, *args, env=env, timeout=60)
        with_key = await asyncio.to_thread(scribe_cli, *args, env={**env, "SCRIBE_API_KEY": key}, timeout=60)
    assert without.returncode == 1 and "Set SCRIBE_API_KEY to your key (sk_…)." in without.stderr, without.stderr
    assert with_key.returncode == 1 and "allows 0 jobs a month" in with_key.stderr, with_key.stderr

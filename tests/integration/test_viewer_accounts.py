"""The viewer page under accounts (``SCRIBE_AUTH=keys``, issue 17) in headless Chromium, against a real
gateway on real NATS and PostgreSQL: signing in with an API key, the plan's use, "Your transcripts" from
``GET /v1/jobs``, a refused submit in the server's words, signing out; a wrong key; and a share link that
opens without a key in a browser that never signed in.

No speech service runs: a job submitted here stays queued, which is all the page needs to list it and
to count it. Screenshots (signed out; signed in with the use and the list, light and dark, and a phone)
go to the test's folder, to look at.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from core.messages import JobOptions
from gateway.access import TOKEN_SECRET, job_token
from store import accounts, repo
from tests.integration.test_gateway_stream import gateway
from tests.integration.test_viewer import CLIP, Browser, _screenshot, chromium

pytestmark = pytest.mark.integration

VISIBLE = "const e = document.querySelector(arguments[0]); return Boolean(e && e.checkVisibility())"
TEXT = "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null"
# "Your transcripts" as shown: each item's job, link text, address and the line under it.
ITEMS = """[...document.querySelectorAll('#history-list li')].map((li) => ({
  job: li.dataset.job, title: li.querySelector('a').textContent, href: li.querySelector('a').getAttribute('href'),
  meta: li.querySelector('.history-meta').textContent}))"""
LISTED = f"return {ITEMS}"
STORED_KEY = "return localStorage.getItem('scribe.key')"


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    yield from chromium(tmp_path, monkeypatch)


async def _type(browser: Browser, selector: str, *keys: str) -> None:
    def type_in() -> None:
        field = browser.driver.find_element(By.CSS_SELECTOR, selector)
        field.clear()
        field.send_keys(*keys)

    await browser.call(type_in)


def _shot(browser: Browser, folder: Path, name: str, *, scheme: str = "light", width: int = 1280) -> int:
    """A full-page PNG in ``folder``; the page's scroll width at that size."""
    driver = browser.driver
    scheme_feature = {"name": "prefers-color-scheme", "value": scheme}
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [scheme_feature]})
    try:
        path = folder / f"{name}.png"
        scroll_width = _screenshot(driver, path, width, 900 if width > 600 else 844, mobile=width <= 600)
    finally:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    return scroll_width


async def _failed_job(pool: asyncpg.Pool, user: str) -> str:
    """An earlier job of ``user`` that failed, as the streamer leaves one: no title, and not counted."""
    job_id = uuid.uuid4().hex
    await repo.create_job(pool, job_id, "https://example.com/talk.mp3", user_id=user, options=JobOptions())
    await pool.execute(
        "UPDATE jobs SET status = 'failed', reason = 'Not audio.', finished_at = now(),"
        " created_at = now() - interval '1 minute' WHERE id = $1",
        job_id,
    )
    return job_id


async def test_sign_in_see_the_plan_submit_list_refuse_sign_out_and_share_without_a_key(
    settings, nats_url, database_url, pool, browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = settings.with_(auth="keys", nats_url=nats_url, database_url=database_url)
    user = f"ana-{uuid.uuid4().hex[:8]}"
    key, _, _ = await accounts.create_key(pool, user, plan="free", admin=False)
    earlier = await _failed_job(pool, user)
    earlier_token = job_token(await repo.secret(pool, TOKEN_SECRET), earlier)
    async with gateway(cfg) as host:
        # Signed out: the sign-in form alone (no transcribe form, no list).
        await browser.get(f"http://{host}/")
        await browser.until(VISIBLE, "#sign-in", what="the sign-in form")
        assert await browser.js("return document.querySelector('#api-key').type") == "password"
        for hidden in ("#start", "#history", "#signed-in"):
            assert not await browser.js(VISIBLE, hidden), hidden
        await browser.call(partial(_shot, browser, tmp_path, "accounts-signed-out"))

        # A wrong key: the server's sentence, the form again, nothing kept.
        await _type(browser, "#api-key", "sk_" + "x" * 43, Keys.ENTER)
        refusal = await browser.until(TEXT, "#sign-in-error", what="the refusal")
        assert refusal.startswith("This API key is not valid"), refusal
        assert await browser.js(VISIBLE, "#sign-in") and not await browser.js(VISIBLE, "#start")
        assert await browser.js(STORED_KEY) is None

        # The right key: who, the plan and its use; the form; the account's earlier (failed, uncounted) job.
        await _type(browser, "#api-key", key)
        await browser.click("#sign-in-button")
        await browser.until(VISIBLE, "#signed-in", what="signed in")
        assert await browser.js(TEXT, "#account-user") == user
        assert await browser.js(TEXT, "#account-plan") == "free plan"
        usage = await browser.until(TEXT, "#usage", what="the plan's use")
        assert "0 of 3 jobs this month" in usage and "0 of 30 audio minutes today" in usage, usage
        assert "10 minutes per recording" in await browser.js(TEXT, "#usage-note")
        assert await browser.js(VISIBLE, "#start") and not await browser.js(VISIBLE, "#sign-in")
        assert await browser.js(STORED_KEY) == key
        [failed] = await browser.until(LISTED, what="the earlier job listed")
        # The list gives its owner each job's token: the job opens with its audio and share link.
        assert failed["job"] == earlier and failed["href"] == f"/jobs/{earlier}?token={earlier_token}", failed
        assert failed["title"].startswith("Transcript of ") and failed["meta"] == "failed", failed

        # Opened without its token, the key alone opens it (its stream too, subprotocol key.<KEY>): its
        # reason, and no share link (the page has none to give).
        await browser.get(f"http://{host}/jobs/{earlier}")
        await browser.state("failed")
        assert await browser.until(TEXT, "#error", what="the job's reason") == "Not audio."
        assert not await browser.js(VISIBLE, ".share-block")
        await browser.get(f"http://{host}/")
        await browser.until(VISIBLE, "#start", what="the form")

        # A file submitted with the key: its page opens, its stream answers (token and key as subprotocols).
        def submit_file() -> None:
            browser.driver.find_element(By.CSS_SELECTOR, "input#file").send_keys(str(CLIP))
            browser.driver.find_element(By.CSS_SELECTOR, "button#submit").click()

        await browser.call(submit_file)
        await browser.until("return /^\\/jobs\\/[0-9a-f]{32}$/.test(location.pathname)", what="the job's page")
        url = urlsplit(browser.driver.current_url)
        job_id, token = url.path.rsplit("/", 1)[1], parse_qs(url.query)["token"][0]
        status = await browser.until(
            "const s = document.querySelector('#status').textContent; return s.startsWith('Waiting') && s",
            what="the queued job's status from its stream",
        )
        assert status == "Waiting for a free worker…", status
        assert await browser.js(VISIBLE, ".share-block") and not await browser.js(VISIBLE, ".owner-hint")

        # Back on the start page: the job on top with its title, and the use counted.
        await browser.get(f"http://{host}/")
        listed = await browser.until(f"const l = {ITEMS}; return l.length === 2 && l", what="two jobs listed")
        assert [item["job"] for item in listed] == [job_id, earlier], listed
        assert listed[0]["title"] == CLIP.stem and listed[0]["href"] == f"/jobs/{job_id}?token={token}", listed
        assert listed[0]["meta"].endswith(" · waiting"), listed
        usage = await browser.until(TEXT, "#usage", what="the plan's use")
        assert "1 of 3 jobs this month" in usage, usage

        # A second job at once is over the free plan (one at a time): the server's sentence, on the form.
        await _type(browser, "#url", "http://127.0.0.1:9/lesson.ogg")
        await browser.click("button#submit")
        refusal = await browser.until(TEXT, "#form-error", what="the quota's refusal")
        assert refusal.startswith("Your free plan runs 1 job at a time"), refusal
        assert urlsplit(browser.driver.current_url).path == "/"

        assert await browser.call(partial(_shot, browser, tmp_path, "accounts-signed-in")) <= 1280
        await browser.call(partial(_shot, browser, tmp_path, "accounts-signed-in-dark", scheme="dark"))
        phone = await browser.call(partial(_shot, browser, tmp_path, "accounts-signed-in-phone", width=390))
        assert phone <= 390, f"the page scrolls sideways on a phone: {phone} px wide"

        # Signing out: the form again, the list and the key gone.
        await browser.click("#sign-out")
        await browser.until(VISIBLE, "#sign-in", what="the sign-in form again")
        assert not await browser.js(VISIBLE, "#history") and await browser.js(LISTED) == []
        assert not await browser.js(VISIBLE, "#start") and await browser.js(STORED_KEY) is None

        # The share link, in a browser that never signed in: the job, read-only (corrections need the owner).
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        with contextlib.contextmanager(chromium)(fresh, monkeypatch) as other:
            await other.get(f"http://{host}/jobs/{job_id}?token={token}")
            await other.until(
                "return document.querySelector('#status').textContent.startsWith('Waiting')", what="the shared job"
            )
            title = "const t = document.querySelector('#job-title').textContent; return t !== 'Transcript' && t"
            assert await other.until(title, what="the job's title") == CLIP.stem
            await other.until(VISIBLE, ".owner-hint", what="the read-only note")
            assert not await other.js(VISIBLE, "#error") and not await other.js(VISIBLE, "#sign-in")
            assert await other.js(STORED_KEY) is None
            await other.get("about:blank")
        await browser.get("about:blank")

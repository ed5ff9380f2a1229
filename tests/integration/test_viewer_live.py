"""The page's Record button (gateway/web/record.js) in headless Chromium, against a real gateway, NATS,
PostgreSQL, the embedded Whisper and the romanizer.

Chromium's fake microphone plays a shared clip (``--use-file-for-fake-audio-capture``) into
``getUserMedia``; the page records it with MediaRecorder into ``WS /v1/live``. One recording is shared
by the assertions (CI time): the recording bar, the interim line and the lines with their readings as
they come, a second window on the share link that sees the live tail too, then Stop and the finished
job's page. Screenshots go to ``tests/artifacts/`` (not committed).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from store import accounts as account_store
from tests.integration.conftest import Stack
from tests.integration.test_gateway_stream import gateway
from tests.integration.test_live_session import _listen, _session
from tests.integration.test_viewer import ARTIFACTS, HAN, Browser, _check_readings, _screenshot, _transcript, chromium
from tests.paths import AUDIO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIP = AUDIO / "sherpa_yue-10.wav"  # 6.7 s, 16 kHz mono PCM: as Chromium's fake microphone reads it
RECORD_S = 7.5

# The interim line as shown: its characters, those greyed as tentative, and its readings.
INTERIM = """
const line = document.querySelector('.line.interim');
if (!line) return null;
const cells = [...line.querySelectorAll('.c')];
const text = (some) => some.map((c) => c.querySelector('.rb').textContent).join('');
return {text: text(cells), tentative: text(cells.filter((c) => c.classList.contains('tentative'))),
        stable: line.dataset.stable, readings: [...line.querySelectorAll('rt')].map((rt) => rt.textContent)};
"""


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    """A headless Chromium whose microphone plays ``CLIP``, allowed without asking."""
    yield from chromium(
        tmp_path,
        monkeypatch,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={CLIP}",
    )


async def _shots(browser: Browser, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for size, width, height in (("desktop", 1280, 900), ("phone", 390, 844)):
        path = ARTIFACTS / f"live-{name}-{size}.png"
        scroll_width = await browser.call(
            lambda w=width, h=height, p=path: _screenshot(browser.driver, p, w, h, mobile=w < 500)
        )
        assert scroll_width <= width, (name, size, scroll_width)  # nothing wider than the screen
        print(f"screenshot: {path}")


async def test_record_read_the_lines_as_they_come_then_stop_for_the_finished_page(
    stack: Stack,
    browser: Browser,
) -> None:
    await browser.get(f"http://{stack.host}/")
    await browser.state("idle")
    await browser.click("#record")
    await browser.until("return document.body.classList.contains('recording')", what="recording")
    url = urlsplit(browser.driver.current_url)
    match = re.fullmatch(r"/jobs/([0-9a-f]{32})", url.path)
    assert match, browser.driver.current_url  # the address is the job's page (the share link) at once
    job_id, token = match.group(1), parse_qs(url.query)["token"][0]
    began = asyncio.get_running_loop().time()
    assert await browser.js("return document.querySelector('#share').value") == browser.driver.current_url

    # While recording: the time counts, the meter moves, and the line in progress shows with readings.
    interim = await browser.until(INTERIM, within=15, what="an interim line")
    await browser.until(
        "return document.querySelector('#rec-time').textContent !== '0:00'", what="the recording's time"
    )
    level = await browser.until(
        "const m = /scaleX\\(([0-9.]+)\\)/.exec(document.querySelector('#level-bar').style.transform);"
        " return m && Number(m[1]) > 0.2 && Number(m[1])",
        what="the level meter moving",
    )
    assert 0.2 < level <= 1
    assert HAN.search(interim["text"]) and interim["readings"], interim
    assert interim["text"] == interim["stable"] + interim["tentative"], interim  # the tentative part greyed

    # A second window on the share link: the lines so far, then the live tail (interim lines) too.
    first = browser.driver.current_window_handle
    await browser.call(browser.driver.switch_to.new_window, "window")
    await browser.get(f"http://{stack.host}/jobs/{job_id}?token={token}")
    await browser.state("running")
    assert await browser.until(INTERIM, within=10, what="an interim line in the second window")
    second = browser.driver.current_window_handle
    await browser.call(browser.driver.switch_to.window, first)

    # Committed lines come as ruby lines while recording (the interim after them); then Stop.
    await browser.until(
        "return document.querySelectorAll('#lines li.line ruby rt').length > 0", within=15, what="a ruby line"
    )
    await _shots(browser, "recording")
    await asyncio.sleep(max(0.0, RECORD_S - (asyncio.get_running_loop().time() - began)))
    await browser.click("#stop")
    recorded = asyncio.get_running_loop().time() - began
    await browser.until("return document.querySelector('#stop').disabled", what="Stop pressed")
    assert "Finishing" in await browser.js("return document.querySelector('#rec-state').textContent")

    # The finished job's page: every line with its readings, no interim, the audio, the files.
    await browser.state("done", within=60)
    transcript = await _transcript(stack.host, job_id, token)
    segments = transcript["segments"]
    assert segments and abs(transcript["duration"] - recorded) < 1.5, (transcript["duration"], recorded)
    _check_readings(await browser.lines(), segments, "jyutping")
    assert await browser.js("return document.querySelector('.line.interim') === null")
    assert not await browser.js("return document.body.classList.contains('recording')")
    await browser.until(
        "const a = document.querySelector('audio#audio'); return a.checkVisibility() && a.readyState >= 1"
        " && a.duration > 5",
        within=20,
        what="the recording's audio",
    )
    hrefs = await browser.js("return [...document.querySelectorAll('a.download')].map((a) => a.href)")
    assert len(hrefs) == 5 and all(f"/v1/jobs/{job_id}/transcript?" in h and token in h for h in hrefs), hrefs
    error = await browser.js("return document.querySelector('#error').hidden")
    assert error, await browser.js("return document.querySelector('#error').textContent")
    await _shots(browser, "done")

    # The second window followed to the same end.
    await browser.call(browser.driver.switch_to.window, second)
    await browser.state("done", within=30)
    assert [line["text"] for line in await browser.lines()] == [s["text"] for s in segments]
    assert await browser.js("return document.querySelector('.line.interim') === null")
    await browser.call(browser.driver.close)
    await browser.call(browser.driver.switch_to.window, first)


async def _refused_sentence(browser: Browser, host: str, script: str) -> Any:
    await browser.get(f"http://{host}/")
    await browser.state("idle")
    await browser.js(script)
    await browser.click("#record")
    return await browser.until("return document.querySelector('#record-error').textContent", what="a sentence")


async def test_a_refused_microphone_gets_a_sentence(
    stack: Stack,
    browser: Browser,
) -> None:
    said = await _refused_sentence(
        browser,
        stack.host,
        "navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('no', 'NotAllowedError'))",
    )
    assert "did not let this page use the microphone" in said and "press Record again" in said, said
    await _shots(browser, "refused")
    assert await browser.state("idle") == "idle"  # still the start page, ready to try again
    assert not await browser.js("return document.querySelector('#record').disabled")
    said = await _refused_sentence(
        browser,
        stack.host,
        "navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('no', 'NotFoundError'))",
    )
    assert said.startswith("No microphone was found"), said

    # Every transcriber busy (each slot held by an open session): the server's busy, said for a reader.
    held = [await _session(f"ws://{stack.host}/v1/live?encoding=linear16&sample_rate=16000") for _ in range(2)]
    try:
        async with gateway(stack.settings.with_(live_claim_s=1.0)) as host:
            said = await _refused_sentence(browser, host, "")
        assert said.startswith("Every transcriber is busy") and "Try again in a minute" in said, said
        assert "SCRIBE_" not in said, said  # the operator's part of the server's sentence is not for this reader
    finally:  # each held session ends (the server closes it), so its slot is free for the next test
        for heard, ws in held:
            await ws.send(json.dumps({"type": "close_stream"}))
            async with asyncio.timeout(30):
                await _listen(ws, heard)


async def test_under_keys_the_page_records_with_its_key(
    stack: Stack,
    browser: Browser,
    pool: asyncpg.Pool,
) -> None:
    user = f"live-page-{uuid.uuid4().hex[:8]}"
    key, _, _ = await account_store.create_key(pool, user, plan=None, admin=False)
    async with gateway(stack.settings.with_(auth="keys")) as host:
        await browser.get(f"http://{host}/")
        await browser.js("localStorage.setItem('scribe.key', arguments[0])", key)  # as signing in leaves it
        await browser.get(f"http://{host}/")
        await browser.until("return document.body.dataset.auth === 'signed-in'", what="signed in")
        await browser.click("#record")
        await browser.until("return document.body.classList.contains('recording')", what="recording")
        await asyncio.sleep(1.5)
        await browser.click("#stop")
        # 1.5 s from wherever the looped clip is: words or none ("No words could be made out"), either way an end.
        await browser.state("done", "failed", within=30)
        job_id = urlsplit(browser.driver.current_url).path.rsplit("/", 1)[1]
        async with httpx.AsyncClient(base_url=f"http://{host}", headers={"Authorization": f"Bearer {key}"}) as http:
            jobs = (await http.get("/v1/jobs")).json()["jobs"]
        assert [job["job_id"] for job in jobs] == [job_id], jobs  # the session is the key's user's job

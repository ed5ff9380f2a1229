"""The source cache as a person meets it on the page (headless Chromium through Selenium, a real gateway,
NATS, PostgreSQL and the pipeline with the local model): the same file a second time is answered at once
and the page says it was billed nothing; "Transcribe again" transcribes it afresh. Screenshots go to
``tests/artifacts/source-cache/`` (not committed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from scribe.runtime import SERVICES, runtime
from tests.integration.test_gateway_stream import gateway
from tests.integration.test_viewer import ARTIFACTS, Browser, chromium
from tests.integration.test_viewer_accounts import _shot
from tests.paths import AUDIO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIP = AUDIO / "sherpa_yue-5.wav"
FOLDER = ARTIFACTS / "source-cache"
NOTES = "return [...document.querySelectorAll('#warnings li')].map((li) => li.textContent)"


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    yield from chromium(tmp_path, monkeypatch)


async def _submit(browser: Browser, host: str, *, fresh: bool = False) -> list[str]:
    """Start the clip from the start page (ticking "Transcribe again" when ``fresh``); the notes once done."""
    await browser.get(f"http://{host}/")
    await browser.state("idle")

    def submit() -> None:
        browser.driver.find_element(By.CSS_SELECTOR, "input#file").send_keys(str(CLIP))
        if fresh:
            browser.driver.find_element(By.CSS_SELECTOR, "input#fresh").click()
            _shot(browser, FOLDER, "start-transcribe-again")
        browser.driver.find_element(By.CSS_SELECTOR, "button#submit").click()

    await browser.call(submit)
    await browser.state("done", within=120)
    await browser.until("return document.querySelectorAll('#lines li.line').length > 0", what="the lines")
    return list(await browser.js(NOTES))


async def test_the_same_file_again_says_it_was_answered_from_the_cache_and_transcribe_again_does_it_afresh(
    settings, nats_url, database_url, browser: Browser
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url, source_cache=True)
    FOLDER.mkdir(parents=True, exist_ok=True)
    async with runtime(cfg) as services, gateway(cfg) as host:
        await services.start(SERVICES)
        assert not any("cache" in note for note in await _submit(browser, host))
        first_lines = await browser.lines()

        notes = await _submit(browser, host)
        assert any("billed nothing" in note and "Transcribe again" in note for note in notes), notes
        assert [line["text"] for line in await browser.lines()] == [line["text"] for line in first_lines]
        await asyncio.to_thread(_shot, browser, FOLDER, "replayed")

        assert not any("cache" in note for note in await _submit(browser, host, fresh=True))

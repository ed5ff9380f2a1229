"""The viewer page (``/`` and ``/jobs/{id}?token=T``, gateway/web/) in headless Chromium through Selenium,
against a real gateway on a port, real NATS and PostgreSQL, and for one test the real pipeline.

Selenium is synchronous: every browser call runs in a thread (``asyncio.to_thread``) so the event
loop that serves the gateway and runs the services keeps going. The learner's features (repeat,
karaoke, keys, corrections, meanings, reading aids) and the screenshots are in test_viewer_learner.py,
which uses the helpers here; screenshots go to ``tests/artifacts/`` (not committed).
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import msgspec
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from core.messages import Final, Partial, Progress, Segment, Usage
from romanizer.romanize import Romanizer
from scribe.runtime import SERVICES, runtime
from tests.integration.test_gateway_stream import _job, _publish, gateway
from tests.paths import AUDIO, REPO

pytestmark = pytest.mark.integration

ARTIFACTS = REPO / "tests" / "artifacts"
CLIP = AUDIO / "sherpa_yue-1.wav"  # 15.1 s: three lines with chunks of 8-16 s
HAN = re.compile(r"[\u3400-\u9fff]")
TONE_MARKS = {"\u0300", "\u0301", "\u0304"}  # grave, acute, macron (NFD)
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
)

# Every line on the page: the text of its span.text put back together (ruby bases and plain text),
# each ruby's base and rt, and the plain text outside any ruby.
READ_LINES = """
const lines = [];
for (const li of document.querySelectorAll('#lines li.line')) {
  const parts = [], plain = [], rubies = [];
  const walk = (node) => {
    for (const child of node.childNodes) {
      if (child.nodeType === Node.TEXT_NODE) { parts.push(child.data); plain.push(child.data); }
      else if (child.nodeType !== Node.ELEMENT_NODE) continue;
      else if (child.tagName === 'RUBY') {
        let base = '', rt = '';
        for (const c of child.childNodes) {
          if (c.nodeType === Node.TEXT_NODE) base += c.data;
          else if (c.tagName === 'RT') rt += c.textContent;
          else if (c.tagName !== 'RP') base += c.textContent;
        }
        parts.push(base); rubies.push([base, rt]);
      } else walk(child);
    }
  };
  const span = li.querySelector('span.text');
  if (span) walk(span);
  lines.push({seq: li.dataset.seq, start: li.dataset.start, end: li.dataset.end, text: parts.join(''),
              plain: plain.join(''), rubies, current: li.classList.contains('current')});
}
return lines;
"""
STATE = "return document.body.dataset.state"
DIAGNOSTICS = """
const text = (s) => { const e = document.querySelector(s); return e ? e.textContent.trim() : null; };
return {url: location.href, state: document.body.dataset.state, status: text('#status'), error: text('#error'),
        form_error: text('#form-error'), lines: document.querySelectorAll('#lines li.line').length};
"""


@dataclass
class Browser:
    """A Chromium window driven from async code: each Selenium call in a thread."""

    driver: webdriver.Chrome
    downloads: Path

    async def call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def js(self, script: str, *args: Any) -> Any:
        return await asyncio.to_thread(self.driver.execute_script, script, *args)

    async def get(self, url: str) -> None:
        await asyncio.to_thread(self.driver.get, url)

    async def until(self, script: str, *args: Any, within: float = 10.0, what: str = "") -> Any:
        """Poll ``script`` (JS that returns a value) until it is truthy; its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            value = await self.js(script, *args)
            if value:
                return value
            if loop.time() > deadline:
                page = await self.js(DIAGNOSTICS)
                raise AssertionError(f"timed out after {within} s waiting for {what or script}: last {value!r}; {page}")
            await asyncio.sleep(0.1)

    async def state(self, *states: str, within: float = 10.0) -> str:
        """Wait until ``body[data-state]`` is one of ``states``; which one."""
        wanted = list(states)
        script = "const s = document.body && document.body.dataset.state; return arguments[0].includes(s) ? s : null"
        return str(await self.until(script, wanted, within=within, what=f"body[data-state] in {wanted}"))

    async def lines(self) -> list[dict[str, Any]]:
        return list(await self.js(READ_LINES))

    async def click(self, selector: str, index: int = 0, inside: str | None = None) -> None:
        def click() -> None:
            element = self.driver.find_elements(By.CSS_SELECTOR, selector)[index]
            if inside:
                element = element.find_element(By.CSS_SELECTOR, inside)
            element.click()

        await asyncio.to_thread(click)

    async def reading(self, value: str) -> None:
        """Choose a reading in the header's select, with the mouse."""

        def choose() -> None:
            Select(self.driver.find_element(By.CSS_SELECTOR, "select#reading")).select_by_value(value)

        await asyncio.to_thread(choose)
        await self.until("return document.querySelector('select#reading').value === arguments[0]", value, what=value)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    yield from chromium(tmp_path, monkeypatch)


def chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *flags: str) -> Iterator[Browser]:
    """A headless Chromium with its own profile and download folder under ``tmp_path``, quit at the end
    (``flags``: more command-line switches, a fake microphone's)."""
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not look anything up
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*FLAGS, *flags):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    driver.set_window_size(1280, 900)
    try:
        yield Browser(driver, downloads)
    finally:
        driver.quit()


async def _transcript(host: str, job_id: str, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://{host}") as http:
        answer = await http.get(f"/v1/jobs/{job_id}/transcript", params={"format": "json", "token": token})
    answer.raise_for_status()
    return dict(answer.json())


def _check_readings(page: list[dict[str, Any]], segments: list[dict[str, Any]], system: str) -> None:
    """Each line shows its text, and every character with a reading in ``system`` as ruby with that reading."""
    assert [line["seq"] for line in page] == [str(s["seq"]) for s in segments]
    for line, segment in zip(page, segments, strict=True):
        assert line["text"] == segment["text"], line
        # One ruby per character with a reading (a number's reading may cover its unread digits too).
        want = [[c["char"], c[system]] for c in segment["chars"] if c[system]]
        assert [[base[:1], rt] for base, rt in line["rubies"]] == want, (system, line["rubies"], want)
        # A Han character outside a ruby is one the romanizer has no reading for: none in these lines.
        unread = [c["char"] for c in segment["chars"] if HAN.fullmatch(c["char"]) and not c[system]]
        assert HAN.findall(line["plain"]) == unread, line["plain"]
        assert all(HAN.fullmatch(base) and rt.strip() for base, rt in line["rubies"] if HAN.search(base)), line


async def _shown(browser: Browser, segments: list[dict[str, Any]], system: str) -> list[dict[str, Any]]:
    """The lines once their readings are the ``system`` ones (the page re-renders on a change), checked."""
    want = [c[system] for s in segments for c in s["chars"] if c[system]]
    for _ in range(50):
        page = await browser.lines()
        if _rts(page) == want:
            break
        await asyncio.sleep(0.1)
    _check_readings(page, segments, system)
    return page


def _rts(page: list[dict[str, Any]]) -> list[str]:
    return [rt for line in page for _, rt in line["rubies"]]


def _screenshot(driver: webdriver.Chrome, path: Path, width: int, height: int, *, mobile: bool) -> int:
    """A full-page PNG at a viewport of ``width`` x ``height``; the page's scroll width at that size."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )
    try:
        scroll_width = int(driver.execute_script("return document.documentElement.scrollWidth"))
        content = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": max(height, content["height"]), "scale": 1},
            },
        )
        path.write_bytes(base64.b64decode(shot["data"]))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return scroll_width


def _downloaded(folder: Path, suffix: str, within: float = 15.0) -> str:
    """The text of the first file with ``suffix`` that Chromium finishes downloading into ``folder``."""
    for _ in range(int(within * 10)):
        done = [p for p in folder.iterdir() if p.suffix == suffix]
        if done and not any(p.suffix == ".crdownload" for p in folder.iterdir()):
            return done[0].read_text(encoding="utf-8")
        time.sleep(0.1)
    raise AssertionError(f"no {suffix} file in {folder} after {within} s: {sorted(folder.iterdir())}")


@pytest.mark.slow
async def test_a_file_submitted_through_the_page_is_read_listened_to_downloaded_and_shared(
    settings, nats_url, database_url, browser: Browser
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url, chunk_min_s=8.0, chunk_max_s=16.0)
    async with runtime(cfg) as services, gateway(cfg) as host:
        await services.start(SERVICES)
        await browser.get(f"http://{host}/")
        assert await browser.state("idle") == "idle"

        def submit() -> None:
            browser.driver.find_element(By.CSS_SELECTOR, "input#file").send_keys(str(CLIP))
            browser.driver.find_element(By.CSS_SELECTOR, "button#submit").click()

        await browser.call(submit)
        await browser.state("done", within=120)
        url = urlsplit(browser.driver.current_url)
        match = re.fullmatch(r"/jobs/([0-9a-f]{32})", url.path)
        assert match and url.netloc == host, browser.driver.current_url
        job_id, token = match.group(1), parse_qs(url.query)["token"][0]
        transcript = await _transcript(host, job_id, token)
        segments = transcript["segments"]
        assert len(segments) >= 2 and transcript["partial"] is False, segments

        # The end: a full bar, and the status names the number of lines and the clip's length (0:15).
        value, maximum = await browser.js(
            "const p = document.querySelector('progress#progress'); return [p.value, p.max]"
        )
        assert maximum > 0 and value == maximum, (value, maximum)
        status = await browser.js("return document.querySelector('#status').textContent")
        assert f"{len(segments)} lines" in status and "0:15" in status, status

        # Readings: Jyutping by default, then Yale with tone marks, Yale with tone numbers.
        jyutping = await _shown(browser, segments, "jyutping")
        await browser.reading("yale")
        yale = await _shown(browser, segments, "yale")
        assert _rts(yale) != _rts(jyutping) and not any(re.search(r"\d", rt) for rt in _rts(yale)), _rts(yale)
        assert any(TONE_MARKS & set(unicodedata.normalize("NFD", rt)) for rt in _rts(yale)), _rts(yale)
        await browser.reading("yale_numeric")
        numeric = await _shown(browser, segments, "yale_numeric")
        assert all(re.fullmatch(r"[a-z]+[1-6]", rt) for rt in _rts(numeric)), _rts(numeric)

        # The choice is remembered (localStorage) over a reload.
        assert "yale_numeric" in await browser.js("return Object.values(localStorage).join(' ')")
        await browser.call(browser.driver.refresh)
        await browser.state("done", within=30)
        assert await browser.js("return document.querySelector('select#reading').value") == "yale_numeric"
        await _shown(browser, segments, "yale_numeric")
        await browser.reading("jyutping")
        await _shown(browser, segments, "jyutping")

        # Listening: the second line's time button plays from its start, and the current line follows.
        await browser.until(
            "const a = document.querySelector('audio#audio'); return a.readyState >= 1 && a.duration",
            within=20,
            what="the audio's metadata",
        )
        second = float(segments[1]["start"])

        def play_second() -> float:
            browser.driver.find_elements(By.CSS_SELECTOR, "#lines li.line")[1].find_element(
                By.CSS_SELECTOR, "button.time"
            ).click()
            return float(browser.driver.execute_script("return document.querySelector('audio#audio').currentTime"))

        position = await browser.call(play_second)
        assert abs(position - second) < 0.3, (position, second)
        await browser.until(
            "const c = document.querySelector('#lines li.line.current'); return c && c.dataset.seq === '1'",
            what="line 1 current",
        )
        await browser.until(
            "const a = document.querySelector('audio#audio'); return !a.paused && a.currentTime > arguments[0] + 0.3",
            second,
            what="the audio playing on",
        )
        target = 2 if len(segments) > 2 else 0
        await browser.js(
            "document.querySelector('audio#audio').currentTime = arguments[0] + 0.1", float(segments[target]["start"])
        )
        await browser.until(
            "const c = document.querySelectorAll('#lines li.line.current');"
            " return c.length === 1 && c[0].dataset.seq === arguments[0]",
            str(target),
            what=f"line {target} current after a seek",
        )
        await browser.js("document.querySelector('audio#audio').pause()")

        # Downloads: every format links to the transcript with the token; the SRT arrives as the API serves it.
        hrefs = {
            fmt: (href, has_download)
            for fmt, href, has_download in await browser.js(
                "return [...document.querySelectorAll('a.download')].map(a => [a.dataset.format, a.href,"
                " a.hasAttribute('download')])"
            )
        }
        assert sorted(hrefs) == ["csv", "json", "srt", "txt", "vtt"], hrefs
        for fmt, (href, has_download) in hrefs.items():
            link = urlsplit(href)
            query = parse_qs(link.query)
            assert link.path == f"/v1/jobs/{job_id}/transcript" and query["format"] == [fmt], href
            assert query["token"] == [token] and has_download, href
        await browser.click('a.download[data-format="srt"]')
        srt = await asyncio.to_thread(_downloaded, browser.downloads, ".srt")
        async with httpx.AsyncClient() as http:
            assert srt == (await http.get(hrefs["srt"][0])).text
        cues = [block.split("\n") for block in srt.strip().split("\n\n")]
        # Cues hold at most about 18 characters (README, Output formats): a longer line is several cues.
        assert len(cues) >= len(segments) and [cue[0] for cue in cues] == [str(n) for n in range(1, len(cues) + 1)]
        assert segments[0]["text"].startswith(cues[0][2]), (cues[0], segments[0]["text"])
        spelled = "".join(cue[2] for cue in cues).replace(" ", "")
        assert spelled == "".join(s["text"] for s in segments).replace(" ", "")

        # The shareable link opens the same transcript in another window.
        share = await browser.js("return document.querySelector('input#share').value")
        assert share == f"http://{host}/jobs/{job_id}?token={token}", share
        texts = [line["text"] for line in await browser.lines()]
        first_window = browser.driver.current_window_handle
        await browser.call(browser.driver.switch_to.new_window, "window")
        await browser.get(share)
        await browser.state("done", within=30)
        assert [line["text"] for line in await browser.lines()] == texts == [s["text"] for s in segments]
        await browser.call(browser.driver.close)
        await browser.call(browser.driver.switch_to.window, first_window)

        await browser.get("about:blank")


# Twelve lines of everyday Cantonese, read by the pipeline's own romanizer front end.
TEXTS = [
    "我哋今日去銀行攞錢。",
    "你食咗飯未呀？",
    "佢話聽日會返學校。",
    "呢間餐廳嘅奶茶好好飲。",
    "我今年2024年先至學廣東話。",
    "唔該你講慢啲得唔得？",
    "落雨喇，記得帶遮。",
    "我哋坐地鐵去銅鑼灣。",
    "佢哋喺度傾緊偈。",
    "呢件衫幾多錢呀？",
    "你試下加冰，好好味㗎。",
    "多謝晒，下次見！",
]


def _segments(romanizer: Romanizer) -> list[Segment]:
    out = []
    for seq, text in enumerate(TEXTS):
        reading = romanizer.read(text)
        out.append(
            Segment(
                seq=seq,
                start=seq * 2.0,
                end=seq * 2.0 + 1.8,
                text=text,
                jyutping=reading.jyutping,
                yale=reading.yale,
                words=reading.words,
                chars=reading.chars,
                chunk_seq=seq // 4,
            )
        )
    return out


async def test_a_reload_in_the_middle_of_a_job_shows_every_line_once(
    settings, nats_url, database_url, rt, browser: Browser
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    segments = _segments(await asyncio.to_thread(Romanizer))
    job_id, token = await _job(rt)

    def partial(chunk: int, first: int, last: int) -> Partial:
        return Partial(job_id=job_id, chunk_seq=chunk, segments=segments[first : last + 1], chunks_done=chunk + 1)

    lines = "return document.querySelectorAll('#lines li.line').length"
    await _publish(rt, Progress(job_id=job_id, chunks_published=2, seconds_decoded=10.0, duration=24.0))
    await _publish(rt, partial(0, 0, 4))
    async with gateway(cfg) as host:
        await browser.get(f"http://{host}/jobs/{job_id}?token={token}")
        await browser.until(f"{lines} >= 5", what="5 lines")
        assert await browser.js(lines) == 5
        assert await browser.state("running") == "running"
        await _publish(rt, partial(1, 5, 7))
        await browser.until(f"{lines} >= 8", what="8 lines")
        await browser.js("window.beforeReload = true")
        reload = asyncio.create_task(browser.call(browser.driver.refresh))
        await _publish(rt, partial(2, 8, 9))
        await _publish(rt, partial(3, 10, 11))
        await reload
        await browser.until(f"{lines} >= 12", what="12 lines after the reload")
        assert await browser.js("return window.beforeReload === undefined"), "the page was not reloaded"
        assert await browser.state("running") == "running"
        await _publish(
            rt, Final(job_id=job_id, duration=24.0, segment_count=12, usage=Usage("local", "whisper-base", 24.0, 0.0))
        )
        await browser.state("done", within=30)
        page = await browser.lines()
        assert [line["seq"] for line in page] == [str(seq) for seq in range(12)]
        _check_readings(page, [msgspec.to_builtins(s) for s in segments], "jyutping")
        assert [float(line["start"]) for line in page] == [s.start for s in segments]
        error = await browser.call(lambda: browser.driver.find_element(By.CSS_SELECTOR, "#error").text)
        assert error == "", error
        status = await browser.js("return document.querySelector('#status').textContent")
        assert status.startswith("Done.") and "12 lines" in status, status
        await browser.get("about:blank")


async def test_a_file_that_is_not_audio_gets_a_plain_sentence(
    settings, nats_url, database_url, browser: Browser, tmp_path: Path
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello\n", encoding="utf-8")
    async with runtime(cfg, names=["streamer"]) as services, gateway(cfg) as host:
        await services.start({"streamer": SERVICES["streamer"]})
        await browser.get(f"http://{host}/")

        def submit() -> None:
            browser.driver.find_element(By.CSS_SELECTOR, "input#file").send_keys(str(text_file))
            browser.driver.find_element(By.CSS_SELECTOR, "button#submit").click()

        await browser.call(submit)
        assert await browser.state("failed", within=30) == "failed"
        error = await browser.call(browser.driver.find_element, By.CSS_SELECTOR, "#error")
        assert await browser.call(error.is_displayed)
        message = (await browser.call(lambda: error.text)).strip()
        url = urlsplit(browser.driver.current_url)
        job_id, token = url.path.rsplit("/", 1)[1], parse_qs(url.query)["token"][0]
        async with httpx.AsyncClient(base_url=f"http://{host}") as http:
            reason = (await http.get(f"/v1/jobs/{job_id}", params={"token": token})).json()["reason"]
        assert reason and reason in message, (reason, message)  # what the streamer said, as it said it
        assert message[0].isupper() and message.endswith((".", "。")), message
        assert not re.search(r"Traceback|[{}\[\]]|\b[a-z]+_[a-z_]+\b|\bHTTP\b|\b[45]\d\d\b", message), message
        # Nothing to play or download.
        visible = "return [...document.querySelectorAll(arguments[0])].some((e) => e.checkVisibility())"
        assert not await browser.js(visible, "#player, audio, a.download, #lines li.line")
        await browser.get("about:blank")

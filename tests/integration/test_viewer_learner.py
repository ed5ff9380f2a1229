"""The viewer as a learner uses it, one check per complaint of issue 16, in headless Chromium.

Most tests read one real transcript: sherpa_yue-1.wav through the whole pipeline (embedded Whisper,
real NATS and PostgreSQL, a real gateway), made once for this module. The lines with a number, a
percentage and dictionary words are published on the bus as the romanizer would, so their text is
known. Screenshots (desktop and phone, light and dark) go to ``tests/artifacts/``.
"""

from __future__ import annotations

import asyncio
import base64
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from core.messages import Partial, Progress, Revised, Segment
from core.settings import Settings
from romanizer.romanize import Romanizer
from scribe.runtime import SERVICES, runtime
from tests.integration.test_gateway_stream import _job, _publish, gateway
from tests.integration.test_viewer import ARTIFACTS, CLIP, Browser, _downloaded, _transcript, chromium

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UNSURE_BELOW = 0.4  # gateway/web/ruby.js UNSURE_BELOW
AUDIO_READY = "const a = document.querySelector('audio#audio'); return a.readyState >= 1 && a.duration"
CURRENT = "const c = document.querySelector('#lines li.line.current'); return c ? c.dataset.seq : null"
CURRENT_IS = "const c = document.querySelector('#lines li.line.current'); return c && c.dataset.seq === arguments[0]"
PAST = "return document.querySelector('audio#audio').currentTime > arguments[0]"
# The text of line arguments[0] as shown (its characters, without their readings).
LINE_TEXT = (
    '[...document.querySelectorAll(`#lines li.line[data-seq="${arguments[0]}"] span.text .rb`)]'
    ".map((e) => e.textContent).join('')"
)
# The playing line in the upper third of the view below the sticky header.
UPPER_THIRD = """
const top = document.querySelector('#top').getBoundingClientRect().bottom;
const line = document.querySelector('#lines li.line.current').getBoundingClientRect();
return line.top >= top - 1 && line.top <= top + (innerHeight - top) / 3;
"""
PLAYING = "return !document.querySelector('audio#audio').paused"
PAUSED = "return document.querySelector('audio#audio').paused"
TIME = "return document.querySelector('audio#audio').currentTime"

# What the audio does, as the page sees it: every frame and timeupdate while playing (the time, the
# current line, the highlighted character's start and line), and each start and stop.
RECORD = """
const a = document.querySelector('audio#audio');
const rec = window.rec = {samples: [], plays: [], pauses: []};
const current = () => document.querySelector('#lines li.line.current')?.dataset.seq ?? null;
const now = () => {
  const c = document.querySelector('#lines .c.now');
  return c ? [Number(c.dataset.start), c.closest('li.line').dataset.seq] : null;
};
a.addEventListener('playing', () => rec.plays.push([performance.now(), a.currentTime]));
a.addEventListener('pause', () => rec.pauses.push([performance.now(), a.currentTime]));
const sample = () => { if (!a.paused) rec.samples.push([a.currentTime, current(), now()]); };
a.addEventListener('timeupdate', sample);
(function frame() { sample(); requestAnimationFrame(frame); })();
"""

# Neighbouring readings on one row of each line: the gaps between their boxes (px).
READING_GAPS = """
const gaps = [];
for (const text of document.querySelectorAll('#lines li.line span.text')) {
  const boxes = [...text.querySelectorAll('rt')].map((rt) => rt.getBoundingClientRect());
  for (let i = 1; i < boxes.length; i++) {
    const [a, b] = [boxes[i - 1], boxes[i]];
    if (Math.abs(a.top - b.top) < 2) gaps.push([b.left - a.right, text.closest('li').dataset.seq, i]);
  }
}
return gaps;
"""

# Every tone-coloured text (a character, its reading, a syllable of a number's reading, the tone
# key) with its colour and the background it is drawn on.
TONE_COLOURS = """
const background = (element) => {
  for (let e = element; e; e = e.parentElement) {
    const colour = getComputedStyle(e).backgroundColor;
    if (colour !== 'rgba(0, 0, 0, 0)' && colour !== 'transparent') return colour;
  }
  return 'rgb(255, 255, 255)';
};
const out = [];
for (const element of document.querySelectorAll(
    '#lines .c[class*="tone-"] .rb, #lines .c[class*="tone-"] rt, #lines rt [class*="tone-"], .tone-key li')) {
  const tone = element.closest('[class*="tone-"]').className.match(/tone-([1-6])/);
  if (!tone) continue;
  const where = element.closest('.c.now') ? 'spoken' : element.closest('li.line.current') ? 'playing' : 'page';
  out.push([tone[1], getComputedStyle(element).color, background(element), where, element.textContent]);
}
return out;
"""


@dataclass(frozen=True)
class Job:
    host: str
    job_id: str
    token: str

    @property
    def page(self) -> str:
        return f"http://{self.host}/jobs/{self.job_id}?token={self.token}"


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    yield from chromium(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
async def job(data_dir: Path, database_url: str, module_nats: str) -> AsyncIterator[Job]:
    """sherpa_yue-1.wav transcribed by the whole pipeline, behind a gateway, for every test here."""
    cfg = Settings(data_dir=data_dir, allow_private_urls=True, log_level="INFO").with_(
        nats_url=module_nats, database_url=database_url, chunk_min_s=8.0, chunk_max_s=16.0
    )
    async with runtime(cfg) as services, gateway(cfg) as host:
        await services.start(SERVICES)
        async with httpx.AsyncClient(base_url=f"http://{host}") as http:
            answer = await http.post("/v1/jobs", files={"file": (CLIP.name, CLIP.read_bytes(), "audio/wav")})
            assert answer.status_code == 202, answer.text
            job_id, token = answer.json()["job_id"], answer.json()["token"]
            status = await _finished(http, job_id, token)
            assert status["status"] == "done", status
        yield Job(host, job_id, token)


async def _finished(http: httpx.AsyncClient, job_id: str, token: str) -> dict[str, Any]:
    """The job's status once it has ended (polled: the REST API has no event to wait on)."""
    async with asyncio.timeout(120):
        while True:
            status = dict((await http.get(f"/v1/jobs/{job_id}", params={"token": token})).json())
            if status["status"] in ("done", "failed", "cancelled"):
                return status
            await asyncio.sleep(0.2)  # noqa: ASYNC110


# --- helpers -------------------------------------------------------------------------------------------


async def _open(browser: Browser, job: Job) -> list[dict[str, Any]]:
    """The job's page, finished and with its audio loaded; the lines as the API has them."""
    await browser.get(job.page)
    await browser.state("done", within=30)
    await browser.until(AUDIO_READY, within=20, what="the audio's metadata")
    return list((await _transcript(job.host, job.job_id, job.token))["segments"])


async def _keys(browser: Browser, *keys: str) -> None:
    """Keys typed to whatever has focus, as a person types them."""
    await browser.call(lambda: ActionChains(browser.driver).send_keys(*keys).perform())


async def _choose(browser: Browser, selector: str, value: str) -> None:
    """Choose an option of a <select> with the mouse, as a person does (the select keeps focus)."""
    await browser.call(lambda: Select(browser.driver.find_element(By.CSS_SELECTOR, selector)).select_by_value(value))


async def _focused(browser: Browser) -> str:
    return str(
        await browser.js(
            "const e = document.activeElement; return e.tagName.toLowerCase() + '.' + e.className + '#' + e.id"
        )
    )


def _middle_line(segments: list[dict[str, Any]], shortest: float = 1.0, longest: float = 3.5) -> dict[str, Any]:
    """A line that is neither the first nor the last, of a length that a test can wait for."""
    inner = [s for s in segments[1:-1] if shortest <= s["end"] - s["start"] <= longest] or segments[1:-1] or segments
    return min(inner, key=lambda s: s["end"] - s["start"])


def _emulate(browser: Browser, *, width: int | None = None, scheme: str | None = None) -> None:
    driver = browser.driver
    if width:
        height = 844 if width < 600 else 900
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
        )
    else:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    if scheme:
        driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
        )


def _rgb(css: str) -> tuple[float, float, float]:
    match = re.fullmatch(r"rgba?\(([^)]*)\)", css.strip())
    assert match, css
    r, g, b = (float(part) for part in re.split(r"[,\s/]+", match.group(1).strip())[:3])
    return r, g, b


def _contrast(foreground: str, background: str) -> float:
    """The WCAG 2 contrast ratio of two CSS colours."""

    def luminance(css: str) -> float:
        def channel(value: float) -> float:
            c = value / 255
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

        r, g, b = (channel(v) for v in _rgb(css))
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


# --- repeat, loop, speed ----------------------------------------------------------------------------------


async def test_repeat_plays_the_same_line_each_time_loop_repeats_it_and_speed_changes(
    job: Job, browser: Browser
) -> None:
    segments = await _open(browser, job)
    line = _middle_line(segments)
    seq, start, end = str(line["seq"]), float(line["start"]), float(line["end"])
    await browser.js(RECORD)
    await browser.click(f'#lines li.line[data-seq="{seq}"] button.time')
    await browser.until(CURRENT_IS, seq, what=f"line {seq} current")

    # Repeat three times (the button, then the key twice): the same line each time, stopped at its end.
    for press in ("button", "r", "r"):
        plays = len(await browser.js("return rec.plays"))
        if press == "button":
            await browser.click("button#repeat")
        else:
            await _keys(browser, press)
        await browser.until("return rec.plays.length > arguments[0]", plays, what=f"the repeat ({press}) to start")
        await browser.until(PAUSED, within=end - start + 5, what=f"the repeat ({press}) to stop at the line's end")
    rec = await browser.js("return rec")
    times = [sample[0] for sample in rec["samples"]]
    assert times and min(times) >= start - 0.05 and max(times) <= end + 0.05, (start, end, min(times), max(times))
    assert {sample[1] for sample in rec["samples"]} == {seq}, "the highlight left the line being repeated"
    assert all(abs(at - start) < 0.15 for _, at in rec["plays"][-3:]), (start, rec["plays"])
    assert abs(await browser.js(TIME) - start) < 0.05 and await browser.js(CURRENT) == seq

    # Speed: ] and + faster, [ and - slower, along 0.5-1.5, the pitch kept; the select says the same.
    rates = []
    for key in ("]", "+", "[", "-", "-"):
        await _keys(browser, key)
        rates.append(await browser.js("const a = document.querySelector('audio#audio'); return a.playbackRate"))
    assert rates == [1.1, 1.25, 1.1, 1.0, 0.9], rates
    assert await browser.js("return document.querySelector('audio#audio').preservesPitch") is True
    assert await browser.js("return document.querySelector('select#speed').value") == "0.9"
    await _choose(browser, "select#speed", "1.5")
    assert await browser.js("return document.querySelector('audio#audio').playbackRate") == 1.5

    # Loop, with a second's pause to say the line between loops, until it is turned off.
    await _choose(browser, "select#gap", "1")
    await _keys(browser, "l")
    assert await browser.js("return document.querySelector('#loop').getAttribute('aria-pressed')") == "true"
    await browser.js("rec.samples = []; rec.plays = []; rec.pauses = []")
    await _keys(browser, " ")
    await browser.until("return rec.plays.length >= 3", within=(end - start) / 1.5 * 3 + 8, what="three loops")
    rec = await browser.js("return rec")
    times = [sample[0] for sample in rec["samples"]]
    assert min(times) >= start - 0.05 and max(times) <= end + 0.05, (start, end, min(times), max(times))
    for (played, at), (paused, _) in zip(rec["plays"][1:], rec["pauses"], strict=False):
        assert abs(at - start) < 0.15 and played - paused >= 900, (rec["plays"], rec["pauses"])
    await _keys(browser, "l")
    assert await browser.js("return document.querySelector('#loop').getAttribute('aria-pressed')") == "false"
    if await browser.js(PLAYING):
        await _keys(browser, " ")
    await browser.until(PAUSED, what="paused")


# --- play what you read -------------------------------------------------------------------------------------


async def test_a_character_plays_from_its_time_the_highlight_follows_and_the_line_stays_high(
    job: Job, browser: Browser
) -> None:
    segments = await _open(browser, job)
    # Lines as the page shows them: sentence-sized (24 characters besides spaces and punctuation, as
    # romanizer/lines.py counts them, and 8 s).
    for page_line in await browser.lines():
        letters = [c for c in page_line["text"] if not c.isspace() and not unicodedata.category(c).startswith("P")]
        assert len(letters) <= 24, page_line["text"]
        assert float(page_line["end"]) - float(page_line["start"]) <= 8.0, page_line

    await browser.call(lambda: _emulate(browser, width=390))
    try:
        await browser.js(RECORD)
        line = segments[len(segments) // 2]
        seq = str(line["seq"])
        timed = [i for i, c in enumerate(line["chars"]) if c["start"] is not None and c["jyutping"]]
        assert len(timed) >= 2, line
        index = timed[1]
        want = float(line["chars"][index]["start"])

        def click_character() -> float:
            cell = browser.driver.find_element(
                By.CSS_SELECTOR, f'#lines li.line[data-seq="{seq}"] .c[data-i="{index}"]'
            )
            cell.click()
            return float(browser.driver.execute_script(TIME))

        assert abs(await browser.call(click_character) - want) < 0.3, want
        await browser.until(
            "return rec.samples.filter((s) => s[2]).length > 20 && !document.querySelector('audio').paused",
            within=5,
            what="playback with a highlighted character",
        )
        await asyncio.sleep(0.6)
        await browser.js("document.querySelector('audio#audio').pause()")
        rec = await browser.js("return rec")
        highlighted = [(t, now) for t, _, now in rec["samples"] if now]
        assert highlighted, rec["samples"][:5]
        assert all(now[0] <= t + 0.02 for t, now in highlighted), [s for s in highlighted if s[1][0] > s[0] + 0.02]
        assert len({now[0] for _, now in highlighted}) >= 2, "the highlight did not move along the line"
        assert highlighted[0][1][0] == pytest.approx(want, abs=0.01), (highlighted[0], want)

        # The playing line sits in the upper third of what the sticky header leaves.
        await browser.until(UPPER_THIRD, within=5, what="the playing line in the upper third")
        # The header and the player are one block: nothing shows through between them.
        covered = await browser.js(
            """const top = document.querySelector('#top');
               const bottom = top.getBoundingClientRect().bottom, out = [];
               for (let y = 0; y < bottom; y += 3) for (const x of [5, 100, 200, 300, 385]) {
                 const e = document.elementFromPoint(x, y);
                 if (!e || !top.contains(e)) out.push([x, y, e && e.tagName]);
               }
               return [out, top.contains(document.querySelector('#player')), top.getBoundingClientRect().top];"""
        )
        assert covered[0] == [] and covered[1] is True and covered[2] == 0, covered
        # On a phone the player is compact and the reading switch stays in reach.
        header = await browser.js("return document.querySelector('#top').getBoundingClientRect().height")
        assert header <= 844 * 0.22, header
        switch = await browser.js("return document.querySelector('select#reading').getBoundingClientRect().toJSON()")
        assert switch["top"] >= 0 and switch["bottom"] <= 90, switch
    finally:
        await browser.call(lambda: _emulate(browser))


# --- keys, whatever has focus --------------------------------------------------------------------------------


async def test_keys_work_after_clicking_a_time_and_after_choosing_a_reading(job: Job, browser: Browser) -> None:
    segments = await _open(browser, job)
    first, second = segments[0], segments[1]
    await browser.click('#lines li.line[data-seq="0"] button.time')
    assert "button.time" in await _focused(browser)
    await browser.until(PAST, first["start"] + 0.5, what="playing on")
    await _keys(browser, " ")  # the time button has focus: Space pauses, it does not play the line again
    await browser.until(PAUSED, what="Space to pause")
    paused_at = await browser.js(TIME)
    assert paused_at > first["start"] + 0.4, paused_at
    await _keys(browser, " ")
    await browser.until(PLAYING, what="Space to play on")
    await asyncio.sleep(0.3)
    assert await browser.js(TIME) >= paused_at - 0.01, "Space started the line again"
    await _keys(browser, " ")
    await browser.until(PAUSED, what="Space to pause again")

    # A reading chosen in the select (which keeps focus): j, k, r and Space still work, and the
    # letters do not choose an option.
    await _choose(browser, "select#reading", "yale")
    assert (await _focused(browser)).startswith("select")
    await _keys(browser, "j")
    await browser.until(CURRENT_IS, str(second["seq"]), what="j to go to the next line")
    await _keys(browser, "k")
    await browser.until(CURRENT_IS, str(first["seq"]), what="k to go back")
    await _keys(browser, " ")
    await browser.until(PAUSED, what="Space after k to pause")
    await _keys(browser, "r")
    await browser.until(PLAYING, what="r to repeat the line")
    await _keys(browser, " ")
    await browser.until(PAUSED, what="Space to pause the repeat")
    assert await browser.js("return document.querySelector('select#reading').value") == "yale"
    assert await browser.js("return localStorage.getItem('scribe.reading')") == "yale"

    # The play button, clicked then Space: one toggle, not two.
    await browser.click("button#play")
    await browser.until(PLAYING, what="the play button")
    await _keys(browser, " ")
    await browser.until(PAUSED, what="Space on the play button")
    await asyncio.sleep(0.3)
    assert await browser.js(PAUSED)


# --- uncertain words --------------------------------------------------------------------------------------------


async def test_uncertain_words_are_marked_explained_and_can_be_turned_off(job: Job, browser: Browser) -> None:
    segments = await _open(browser, job)
    want = {
        (str(s["seq"]), str(i))
        for s in segments
        for i, c in enumerate(s["chars"])
        if c["jyutping"] and c["confidence"] is not None and c["confidence"] < UNSURE_BELOW
    }
    assert want, "the clip has words the model was unsure of"
    shown = await browser.js(
        """return [...document.querySelectorAll('#lines .c')].map((c) => [c.closest('li').dataset.seq, c.dataset.i,
             c.dataset.confidence ?? null, c.classList.contains('unsure'),
             getComputedStyle(c.querySelector('.rb')).textDecorationStyle,
             getComputedStyle(c.querySelector('.rb')).textDecorationLine])"""
    )
    marked = {(seq, i) for seq, i, _, unsure, _, _ in shown if unsure}
    assert marked == want
    for seq, i, confidence, unsure, style, line in shown:
        assert unsure == (confidence is not None and float(confidence) < UNSURE_BELOW), (seq, i, confidence)
        if unsure:
            assert (style, line) == ("dotted", "underline"), (seq, i, style, line)
    legend = await browser.call(lambda: browser.driver.find_element(By.CSS_SELECTOR, ".unsure-key"))
    assert await browser.call(legend.is_displayed)
    assert "less than 40" in await browser.call(lambda: legend.text)

    await browser.click("input#unsure-marks")
    marks = (
        "return [...document.querySelectorAll('#lines .c.unsure .rb')].map((e) => getComputedStyle(e).textDecoration)"
    )
    undecorated = f"{marks}.every((d) => d.startsWith('none'))"
    await browser.until(undecorated, what="the marks gone")
    assert not await browser.call(legend.is_displayed)
    await browser.call(browser.driver.refresh)
    await browser.state("done", within=30)
    assert await browser.js("return document.querySelector('input#unsure-marks').checked") is False
    await browser.until(undecorated, what="the marks still off after a reload")
    await browser.click("input#unsure-marks")
    await browser.until(f"{marks}.every((d) => d.includes('dotted'))", what="the marks back")


# --- reading aids ----------------------------------------------------------------------------------------------------


async def test_readings_are_large_apart_and_tone_colours_readable_on_every_background(
    job: Job, browser: Browser
) -> None:
    await _open(browser, job)
    sizes = "return [...document.querySelectorAll('#lines rt')].map((rt) => parseFloat(getComputedStyle(rt).fontSize))"
    assert min(await browser.js(sizes)) >= 14
    gaps = await browser.js(READING_GAPS)
    assert gaps and min(gap for gap, _, _ in gaps) >= 4, sorted(gaps)[:3]
    await browser.call(lambda: _emulate(browser, width=390))
    try:
        assert min(await browser.js(sizes)) >= 13
        gaps = await browser.js(READING_GAPS)
        assert gaps and min(gap for gap, _, _ in gaps) >= 4, sorted(gaps)[:3]
    finally:
        await browser.call(lambda: _emulate(browser))

    # Tones coloured: every colour against the page, the playing line and the spoken character.
    await browser.click("input#tones")
    keys = await browser.js("return [...document.querySelectorAll('.tone-key li')].map((li) => li.textContent)")
    assert [key.split()[0] for key in keys] == ["1", "2", "3", "4", "5", "6"], keys
    await browser.click('#lines li.line[data-seq="1"] .c[data-start]', 2)
    await browser.until("return document.querySelector('#lines li.line.current .c.now')", what="a spoken character")
    await browser.js("document.querySelector('audio#audio').pause()")
    for scheme in ("light", "dark"):
        await browser.call(lambda scheme=scheme: _emulate(browser, scheme=scheme))
        colours = await browser.js(TONE_COLOURS)
        assert {where for *_, where, _ in colours} == {"page", "playing", "spoken"}, scheme
        assert {tone for tone, *_ in colours} == {"1", "2", "3", "4", "5", "6"}, scheme
        for tone, colour, background, where, text in colours:
            ratio = _contrast(colour, background)
            assert ratio >= 4.5, (scheme, tone, colour, background, where, text, round(ratio, 2))
    await browser.call(browser.driver.execute_cdp_cmd, "Emulation.setEmulatedMedia", {"features": []})


# --- numbers, meanings and corrections on lines of known text ----------------------------------------------


KNOWN_TEXTS = ["通脹升咗1.3%，2021年好多人。", "我哋今日去銀行攞錢。", "你試下加冰，好好味㗎。", "佢啱啱返到嚟。"]


async def test_numbers_meanings_and_a_correction_on_the_stream(
    settings, nats_url, database_url, rt, browser: Browser
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    romanizer = await asyncio.to_thread(Romanizer)
    lines = []
    for seq, text in enumerate(KNOWN_TEXTS):
        reading = romanizer.read(text)
        lines.append(
            Segment(
                seq=seq, start=seq * 2.0, end=seq * 2.0 + 1.8, text=text, jyutping=reading.jyutping,
                yale=reading.yale, words=reading.words, chars=reading.chars,
            )
        )  # fmt: skip
    job_id, token = await _job(rt)
    await _publish(rt, Progress(job_id=job_id, chunks_published=1, seconds_decoded=8.0, duration=8.0))
    await _publish(rt, Partial(job_id=job_id, chunk_seq=0, segments=lines, chunks_done=1))
    async with gateway(cfg) as host:
        await browser.get(f"http://{host}/jobs/{job_id}?token={token}")
        await browser.until("return document.querySelectorAll('#lines li.line').length === 4", what="4 lines")

        # A percentage: one reading centred over the whole number; a year: a reading over each digit.
        cells = await browser.js(
            """return [...document.querySelectorAll('#lines li.line[data-seq="0"] ruby')].map((r) => {
                 const base = r.querySelector('.rb').getBoundingClientRect();
                 const rt = r.querySelector('rt').getBoundingClientRect();
                 return [r.querySelector('.rb').textContent, r.querySelector('rt').textContent,
                         (base.left + base.right) / 2, (rt.left + rt.right) / 2, base.width];
               })"""
        )
        by_base = {base: (reading, centre, over) for base, reading, centre, over, _ in cells}
        reading, centre, over = by_base["1.3%"]
        assert reading == romanizer.read("1.3%").jyutping and abs(centre - over) <= 2, cells
        digits = [(base, reading) for base, reading, *_ in cells if base in "2021年"]
        assert digits == [("2", "ji6"), ("0", "ling4"), ("2", "ji6"), ("1", "jat1"), ("年", "nin4")], cells
        gaps = await browser.js(READING_GAPS)
        assert min(gap for gap, _, _ in gaps) >= 4, sorted(gaps)[:3]

        # A word's meaning: click it once to hear it, again for the card.
        await browser.click('#lines li.line[data-seq="1"] .c', 5)  # 銀 of 銀行
        await browser.click('#lines li.line[data-seq="1"] .c', 5)
        await browser.until("return !document.querySelector('#card').hidden", what="the card")
        await browser.until("return document.querySelector('#card .entries')", what="the definitions")
        card = await browser.js("return document.querySelector('#card').innerText")
        assert "銀行" in card and "bank" in card and "ngan4 hong4" in card and "ngàhn hòhng" in card, card
        assert await browser.js("return document.activeElement.id") == "card"
        await _keys(browser, Keys.ARROW_RIGHT)  # the next word: 攞錢 or 攞
        await browser.until(
            "return document.querySelector('#card-word').textContent.startsWith('攞')", what="the next word's card"
        )
        await _keys(browser, Keys.ESCAPE)
        await browser.until("return document.querySelector('#card').hidden", what="Esc to close the card")
        # A word the dictionary lacks: the API's sentence, never an empty card.
        async with httpx.AsyncClient(base_url=f"http://{host}") as http:
            missing = await http.get("/v1/dictionary", params={"q": "㗎"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "no_entry", missing.text
        particle = KNOWN_TEXTS[2].index("㗎")
        await browser.click(f'#lines li.line[data-seq="2"] .c[data-i="{particle}"]')
        await browser.click(f'#lines li.line[data-seq="2"] .c[data-i="{particle}"]')
        await browser.until(
            "return document.querySelector('#card .card-message')?.textContent === arguments[0]",
            missing.json()["error"]["message"],
            what="the no-entry sentence",
        )
        await _keys(browser, Keys.ESCAPE)
        await browser.until("return document.querySelector('#card').hidden", what="Esc to close the card")
        # m: the meaning of the word being played (here the one last clicked).
        await _keys(browser, "m")
        await browser.until("return document.querySelector('#card-word')?.textContent === '㗎'", what="m")
        await _keys(browser, Keys.ESCAPE)

        # A correction made elsewhere arrives on the stream as `revised` and replaces the line.
        fixed = "我哋聽日去銀行攞錢。"
        reading = romanizer.read(fixed)
        corrected = Segment(
            seq=1, start=2.0, end=3.8, text=fixed, jyutping=reading.jyutping, yale=reading.yale, words=reading.words,
            chars=reading.chars, original_text=KNOWN_TEXTS[1], revision=1,
        )  # fmt: skip
        await _publish(rt, Revised(job_id=job_id, segment=corrected))
        await browser.until(f"return ({LINE_TEXT}) === arguments[1]", "1", fixed, what="the revised line")
        page = {line["seq"]: line for line in await browser.lines()}
        assert [rt for _, rt in page["1"]["rubies"]] == [c.jyutping for c in reading.chars if c.jyutping]
        mark = await browser.js(
            "const m = document.querySelector('#lines li.line[data-seq=\"1\"] .corrected'); return [m.hidden, m.title]"
        )
        assert mark[0] is False and KNOWN_TEXTS[1] in mark[1], mark
        await browser.get("about:blank")


# --- how it looks --------------------------------------------------------------------------------------------------

# Scroll so that the playing line is where playback keeps it (the upper third below the header), or to
# the top when the whole of it is in view from there.
SCROLL_FOR_SHOT = """
window.scrollTo({top: 0, behavior: 'instant'});
const top = document.querySelector('#top').getBoundingClientRect().bottom;
const line = document.querySelector('#lines li.line.current').getBoundingClientRect();
const by = line.top - (top + (innerHeight - top) * 0.12);
if (line.bottom > innerHeight) window.scrollBy({top: by, behavior: 'instant'});
return document.documentElement.scrollWidth;
"""


def _view_shot(browser: Browser, path: Path, width: int, height: int, *, mobile: bool) -> int:
    """A PNG of what a person sees at ``width`` x ``height``; the page's scroll width at that size."""
    driver = browser.driver
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )
    try:
        scroll_width = int(driver.execute_script(SCROLL_FOR_SHOT))
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(shot["data"]))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return scroll_width


async def test_screenshots_desktop_and_phone_light_and_dark(job: Job, browser: Browser) -> None:
    """What a learner sees (tones coloured, a line playing, paused on a character), at both widths and in both
    schemes, in tests/artifacts/; and no sideways scrolling on a phone."""
    segments = await _open(browser, job)
    await browser.click("input#tones")
    line = segments[1]
    await browser.click(f'#lines li.line[data-seq="{line["seq"]}"] .c[data-start]', 4)
    await browser.until("return document.querySelector('#lines .c.now')", what="a spoken character")
    await browser.js("document.querySelector('audio#audio').pause()")
    ARTIFACTS.mkdir(exist_ok=True)
    for scheme in ("light", "dark"):
        await browser.call(lambda scheme=scheme: _emulate(browser, scheme=scheme))
        desktop = ARTIFACTS / f"viewer-desktop-{scheme}.png"
        phone = ARTIFACTS / f"viewer-phone-{scheme}.png"
        assert await browser.call(partial(_view_shot, browser, desktop, 1280, 900, mobile=False)) <= 1280
        phone_width = await browser.call(partial(_view_shot, browser, phone, 390, 844, mobile=True))
        assert phone_width <= 390, f"the page scrolls sideways on a phone: {phone_width} px wide"
        print(f"screenshots: {desktop} {phone}")
    await browser.call(browser.driver.execute_cdp_cmd, "Emulation.setEmulatedMedia", {"features": []})
    await browser.get("about:blank")


# --- a correction, in every window and in the download --------------------------------------------------------


async def test_a_corrected_line_shows_in_another_window_and_in_the_srt(job: Job, browser: Browser) -> None:
    segments = await _open(browser, job)
    line = segments[0]
    seq = str(line["seq"])
    fixed = "我哋今日去銀行攞錢。"
    reading = (await asyncio.to_thread(Romanizer)).read(fixed)
    first = browser.driver.current_window_handle
    await browser.call(browser.driver.switch_to.new_window, "window")
    await browser.get(job.page)
    await browser.state("done", within=30)
    second = browser.driver.current_window_handle
    await browser.call(browser.driver.switch_to.window, first)

    # e on the current line opens it for correcting; Enter saves.
    await browser.click(f'#lines li.line[data-seq="{seq}"] button.time')
    await browser.js("document.querySelector('audio#audio').pause()")
    await _keys(browser, "e")
    await browser.until("return document.activeElement.classList.contains('edit-field')", what="the text field")
    assert await browser.js("return document.activeElement.value") == line["text"]
    await _keys(browser, fixed, Keys.ENTER)  # the field opens with its text selected: typing replaces it
    shows_fixed = f"return ({LINE_TEXT}) === arguments[1] && !document.querySelector('.editor')"
    await browser.until(shows_fixed, seq, fixed, what="the corrected line")
    want = [c.jyutping for c in reading.chars if c.jyutping]
    for handle in (first, second):
        await browser.call(browser.driver.switch_to.window, handle)
        await browser.until(shows_fixed, seq, fixed, what=f"the corrected line in window {handle}")
        page = {entry["seq"]: entry for entry in await browser.lines()}
        assert [rt for _, rt in page[seq]["rubies"]] == want
        title = await browser.js(
            f"return document.querySelector('#lines li.line[data-seq=\"{seq}\"] .corrected').title"
        )
        assert line["text"] in title, title
    await browser.call(browser.driver.close)
    await browser.call(browser.driver.switch_to.window, first)

    # The SRT has the correction and its readings.
    await _choose(browser, "select#download-reading", "jyutping")
    href = await browser.js("return document.querySelector('a.download[data-format=srt]').href")
    async with httpx.AsyncClient() as http:
        srt = (await http.get(href)).text
    assert fixed in srt.replace("\n", "") and " ".join(want[:3]) in srt, srt[:400]

    # Someone else corrects the line while it is being edited here: the page shows theirs at once
    # and says so; Esc keeps theirs. (A save that crosses theirs is refused with 409: test_corrections.py.)
    await browser.click(f'#lines li.line[data-seq="{seq}"] button.edit')
    await browser.until("return document.activeElement.classList.contains('edit-field')", what="the text field")
    theirs = "我哋今日去銀行。"
    async with httpx.AsyncClient(base_url=f"http://{job.host}") as http:
        answer = await http.patch(
            f"/v1/jobs/{job.job_id}/lines/{seq}",
            json={"text": theirs, "revision": 1},
            headers={"Authorization": f"Bearer {job.token}"},
        )
    assert answer.status_code == 200 and answer.json()["revision"] == 2, answer.text
    await browser.until(
        "return document.querySelector('.edit-note')?.textContent.includes('Just corrected elsewhere')",
        what="the page to say the line changed",
    )
    await browser.until(shows_fixed.replace(" && !document.querySelector('.editor')", ""), seq, theirs, what="theirs")
    await _keys(browser, Keys.ESCAPE)
    await browser.until("return !document.querySelector('.editor')", what="Esc to keep theirs")

    # A page of a finished job follows its stream for corrections (follow=revisions): one made
    # elsewhere (here over the API, not through a page of this browser) shows up without a reload.
    again = "我哋今日去銀行攞錢喇。"
    async with httpx.AsyncClient(base_url=f"http://{job.host}") as http:
        answer = await http.patch(
            f"/v1/jobs/{job.job_id}/lines/{seq}",
            json={"text": again, "revision": 2},
            headers={"Authorization": f"Bearer {job.token}"},
        )
    assert answer.status_code == 200, answer.text
    await browser.until(shows_fixed, seq, answer.json()["text"], within=15, what="the correction, live")


# --- take-away, history, refusals --------------------------------------------------------------------------------


async def test_downloads_follow_the_reading_and_the_title_and_the_start_page_lists_the_job(
    job: Job, browser: Browser
) -> None:
    await _open(browser, job)
    title = await browser.until(
        "const t = document.querySelector('#job-title').textContent; return t !== 'Transcript' && t",
        what="the job's title",
    )
    assert title == CLIP.stem, title
    labels = {"jyutping": "jyutping", "yale": "yale", "yale_numeric": "yale numbers", "both": "jyutping and yale"}
    labels["none"] = "characters"
    async with httpx.AsyncClient() as http:
        for reading, label in labels.items():
            await _choose(browser, "select#download-reading", reading)
            links = await browser.js(
                "return [...document.querySelectorAll('a.download')].map((a) => [a.dataset.format, a.href, a.download])"
            )
            for fmt, href, name in links:
                query = parse_qs(urlsplit(href).query)
                assert query["romanization"] == [reading] and query["format"] == [fmt], href
                assert name == (f"{title} ({label}).{fmt}" if fmt in ("srt", "vtt", "txt") else f"{title}.{fmt}"), name
                if fmt == "srt":
                    answer = await http.get(href)
                    disposition = answer.headers["content-disposition"]
                    assert unquote(disposition.split("filename*=UTF-8''")[1]) == name, disposition
    await _choose(browser, "select#download-reading", "yale")
    await browser.click('a.download[data-format="srt"]')
    await asyncio.to_thread(_downloaded, browser.downloads, ".srt")
    assert [p.name for p in browser.downloads.iterdir()] == [f"{title} (yale).srt"]

    # The start page lists it (this browser opened it), newest first, and it can be removed.
    await browser.get(f"http://{job.host}/")
    await browser.until("return !document.querySelector('#history').hidden", what="Your transcripts")
    items = await browser.js(
        "return [...document.querySelectorAll('#history-list li')].map((li) => [li.querySelector('a').textContent,"
        " li.querySelector('a').href, li.querySelector('.history-meta').textContent])"
    )
    assert len(items) == 1 and items[0][0] == title and items[0][1] == job.page and "0:15" in items[0][2], items
    await browser.click("#history-list button.history-remove")
    await browser.until("return document.querySelector('#history').hidden", what="the list emptied")

    # Refusals in words a learner understands.
    await browser.get(f"http://{job.host}/jobs/{job.job_id}?token=wrong{uuid.uuid4().hex[:8]}")
    await browser.state("failed", within=15)
    error = await browser.until("return document.querySelector('#error').textContent", what="the refusal")
    assert error.startswith("This link is wrong or incomplete") and "Bearer" not in error, error
    assert not await browser.js("return document.querySelector('#player').checkVisibility()")
    assert await browser.js("return JSON.parse(localStorage.getItem('scribe.jobs') || '[]').length") == 0
    await browser.get(f"http://{job.host}/jobs/{job.job_id}")
    error = await browser.until("return document.querySelector('#error').textContent", what="the refusal")
    assert error.startswith("This link is incomplete"), error
    await browser.get("about:blank")

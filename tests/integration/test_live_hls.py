"""A live HLS link (``POST /v1/jobs {"url": …}``) transcribed as a live session, end to end: a real local
HTTP server whose playlist grows in real time, a real gateway, NATS, PostgreSQL, the embedded Whisper and
the romanizer.

The server publishes a 2 s MPEG-TS segment of a shared clip every 2 s (the clip over and over, as a
live encoder would) and appends ``#EXT-X-ENDLIST`` only once the job's first line has come: lines
arrive while the stream is live, and the stream's end ends the job. A stream of segments that are not
audio fails the job with its own reason; the job's limit stops a stream that goes on, with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from faster_whisper import decode_audio

from scribe import client
from store import repo
from streamer.encode import encode_samples
from tests.integration.conftest import Stack
from tests.paths import AUDIO
from tests.webserver import Route, Site, serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIP = AUDIO / "sherpa_yue-10.wav"  # 6.7 s
SEGMENT_S = 2.0
FIRST_LINE_WITHIN_S = 40.0


@pytest.fixture(scope="module")
def segments() -> list[tuple[float, bytes]]:
    """The clip as MPEG-TS segments with AAC audio, of 2 s (the last one shorter), with their durations."""
    samples = decode_audio(str(CLIP))
    size = int(SEGMENT_S * 16000)
    out = []
    for start in range(0, len(samples), size):
        part = samples[start : start + size]
        buffer = io.BytesIO()
        encode_samples(part, buffer, container_format="mpegts", codec="aac")
        out.append((len(part) / 16000, buffer.getvalue()))
    return out


@pytest.fixture
def site() -> Iterator[Site]:
    site = serve("127.0.0.1", {})
    yield site
    site.server.shutdown()


class LiveStream:
    """A live playlist that ``grow()`` extends by one segment (the clip's, in a loop), until ``end()``."""

    def __init__(self, site: Site, segments: list[tuple[float, bytes]]) -> None:
        self.site, self.segments = site, segments
        self.listed: list[float] = []
        self.ended = False
        self.grow()

    def grow(self) -> None:
        n = len(self.listed)
        duration, body = self.segments[n % len(self.segments)]
        self.site.routes[f"/live/seg{n}.ts"] = Route(body=body, content_type="video/mp2t")
        self.listed.append(duration)
        self.publish()

    def end(self) -> None:
        self.ended = True
        self.publish()

    def publish(self) -> None:
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{SEGMENT_S:.0f}", "#EXT-X-MEDIA-SEQUENCE:0"]
        for n, duration in enumerate(self.listed):
            lines += [f"#EXTINF:{duration:.3f},", f"seg{n}.ts"]
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        body = "\n".join(lines).encode()
        self.site.routes["/live/index.m3u8"] = Route(body=body, content_type="application/vnd.apple.mpegurl")

    async def run(self) -> None:
        """Grow in real time until ended."""
        while not self.ended:
            await asyncio.sleep(SEGMENT_S)
            if not self.ended:
                self.grow()


async def test_a_live_hls_link_is_transcribed_while_it_grows_and_ends_at_its_endlist(
    stack: Stack, site: Site, segments: list[tuple[float, bytes]]
) -> None:
    stream = LiveStream(site, segments)
    growing = asyncio.create_task(stream.run())
    messages: list[dict[str, Any]] = []
    lines_before_end: list[dict[str, Any]] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://{stack.host}") as http:
            submitted = await http.post("/v1/jobs", json={"url": site.url("/live/index.m3u8")})
            assert submitted.status_code == 202, submitted.text
            accepted = submitted.json()
            job_id, token = accepted["job_id"], accepted["token"]
            async with (
                asyncio.timeout(90),
                websockets.connect(f"ws://{stack.host}{accepted['links']['stream']}?token={token}") as ws,
            ):
                # Lines while the playlist grows; then the stream's end.
                async with asyncio.timeout(FIRST_LINE_WITHIN_S):
                    while not lines_before_end:
                        message = json.loads(await ws.recv())
                        messages.append(message)
                        lines_before_end = [*_lines([message])]
                        assert message["type"] not in ("final", "error"), message
                stream.end()
                with contextlib.suppress(websockets.ConnectionClosed):
                    async for text in ws:
                        messages.append(json.loads(text))
            status = (await http.get(f"/v1/jobs/{job_id}", params={"token": token})).json()
            transcript = (await http.get(f"/v1/jobs/{job_id}/transcript", params={"token": token})).json()
            audio = await http.get(f"/v1/jobs/{job_id}/audio", params={"token": token})
    finally:
        stream.ended = True
        await growing

    kinds = [m["type"] for m in messages]
    assert kinds[-1] == "final", kinds[-5:]
    assert status["status"] == "done" and not status.get("warnings"), status
    lines = [*_lines(messages)]
    assert lines_before_end and lines[: len(lines_before_end)] == lines_before_end
    assert transcript["segments"] and "".join(s["text"] for s in transcript["segments"]).strip()
    assert [s["text"] for s in transcript["segments"]] == [line["text"] for line in lines]
    assert audio.status_code == 200 and audio.content[:4] == b"OggS"
    # From the live edge when reading began to the end, every segment fetched once, in order, by the reader.
    fetched = [path for path in site.hits if path.endswith(".ts")]
    first = int(fetched[0].removeprefix("/live/seg").removesuffix(".ts"))
    assert first <= 2 and fetched == [f"/live/seg{n}.ts" for n in range(first, len(stream.listed))]
    # The session is as long as those segments (each decoded alone: a few AAC frames of padding more).
    read = stream.listed[first:]
    assert sum(read) <= transcript["duration"] <= sum(read) + 0.25 * len(read)


def _lines(messages: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for message in messages:
        if message["type"] in ("snapshot", "segments"):
            yield from message["segments"]


async def test_a_live_stream_whose_segments_are_not_audio_fails_the_job_with_a_reason(stack: Stack, site: Site) -> None:
    stream = LiveStream(site, [(SEGMENT_S, b"\x00\x01not media\x02" * 500)])
    growing = asyncio.create_task(stream.run())
    try:
        async with httpx.AsyncClient(base_url=f"http://{stack.host}") as http:
            submitted = await http.post("/v1/jobs", json={"url": site.url("/live/index.m3u8")})
            accepted = submitted.json()
            async with asyncio.timeout(40):
                while True:
                    status = (await http.get(accepted["links"]["status"], params={"token": accepted["token"]})).json()
                    if status["status"] not in ("queued", "running"):
                        break
                    await asyncio.sleep(0.2)
    finally:
        stream.ended = True
        await growing
    assert status["status"] == "failed", status
    assert "could not be decoded as audio (3 in a row)" in status["reason"], status  # not the microphone's reason


async def test_a_live_stream_stops_at_the_jobs_limit_with_a_warning(
    stack: Stack, site: Site, segments: list[tuple[float, bytes]]
) -> None:
    stream = LiveStream(site, segments)  # never ends by itself
    growing = asyncio.create_task(stream.run())
    try:
        job_id = await client.submit(stack.rt.js, site.url("/live/index.m3u8"), max_seconds=3.0, plan="free")
        async with asyncio.timeout(40):
            while True:
                job = await repo.get_job(stack.rt.pool, job_id)
                if job is not None and job.finished:
                    break
                await asyncio.sleep(0.2)
    finally:
        stream.ended = True
        await growing
    assert job.status == "done", job
    assert job.seconds_decoded == 3.0
    (warning,) = job.warnings
    assert warning.startswith("The live stream stopped at its limit of 3 seconds"), warning

"""``WS /v1/live`` end to end: a client paces a shared clip at real time into a real gateway, NATS,
PostgreSQL, the embedded Whisper and the romanizer.

One session is shared by most assertions (CI time): ``session`` first, interim lines before the
committed ones, stable text that only grows, committed lines numbered without gaps and never
changed, the final transcript equal to the committed lines, and afterwards a finished job with
audio and downloads. A second viewer watches the same session over ``/stream`` from its start,
and a third joins mid-session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from faster_whisper import decode_audio

from store import accounts as account_store
from tests.integration.conftest import Stack
from tests.integration.test_gateway_stream import gateway
from tests.live_media import ogg_pages, pcm, recorded, slices
from tests.paths import AUDIO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIP = AUDIO / "sherpa_yue-10.wav"  # 6.7 s
SLICE_S = 0.25


@dataclass
class Heard:
    """Every message one socket received, in order, and how it closed."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    @property
    def lines(self) -> list[dict[str, Any]]:
        return [line for m in self.messages if m["type"] in ("snapshot", "segments") for line in m["segments"]]


async def _listen(ws: Any, heard: Heard) -> None:
    with contextlib.suppress(websockets.ConnectionClosed):
        async for text in ws:
            heard.messages.append(json.loads(text))
    heard.close_code = ws.close_code


async def _speak(ws: Any, samples: np.ndarray, *, pace: float = 1.0) -> None:
    """Send ``samples`` as linear16 in 250 ms frames at ``pace`` times real time, then close_stream."""
    data = pcm(samples, 16000, 1)
    step = int(16000 * SLICE_S) * 2
    for at in range(0, len(data), step):
        await ws.send(data[at : at + step])
        await asyncio.sleep(SLICE_S / pace)
    await ws.send(json.dumps({"type": "close_stream"}))


async def test_a_live_session_end_to_end(stack: Stack) -> None:
    samples = decode_audio(str(CLIP))
    speaker, viewer, late = Heard(), Heard(), Heard()
    url = f"ws://{stack.host}/v1/live?encoding=linear16&sample_rate=16000&channels=1"
    async with asyncio.timeout(90), websockets.connect(url) as ws:
        first = json.loads(await ws.recv())
        speaker.messages.append(first)
        assert first["type"] == "session" and first["v"] == 1, first
        job_id, token = first["job_id"], first["token"]
        assert first["links"]["page"] == f"/jobs/{job_id}?token={token}"
        listening = asyncio.create_task(_listen(ws, speaker))
        stream = f"ws://{stack.host}{first['links']['stream']}?token={token}"
        async with websockets.connect(stream) as other:
            watching = asyncio.create_task(_listen(other, viewer))
            speaking = asyncio.create_task(_speak(ws, samples))
            await asyncio.sleep(len(samples) / 16000 / 2)
            async with websockets.connect(stream) as third:  # joins mid-session
                await _listen(third, late)
            await speaking
            await asyncio.gather(listening, watching)

    assert speaker.close_code == 1000, speaker.messages[-3:]
    kinds = [m["type"] for m in speaker.messages]
    assert kinds[:2] == ["session", "snapshot"], kinds
    assert kinds[-1] == "final", kinds
    interims = speaker.of("interim")
    assert interims, kinds
    lines = speaker.lines
    assert lines, kinds
    assert kinds.index("interim") < next(i for i, m in enumerate(speaker.messages) if m["type"] == "segments")
    assert [line["seq"] for line in lines] == list(range(len(lines)))  # numbered without gaps, each once

    # Stable text only grows while a line is in progress: each interim's stable part starts with the one
    # before it, until a line is committed (its chunk arrives) and the next interim starts afresh.
    committed_chunks = -1
    previous = ""
    for message in speaker.messages:
        if message["type"] == "segments":
            committed_chunks = max(committed_chunks, *(line["chunk_seq"] for line in message["segments"]))
            previous = ""
        elif message["type"] == "interim":
            if message["next_chunk"] <= committed_chunks:
                continue
            assert message["stable"].startswith(previous) or not previous, (previous, message["stable"])
            previous = message["stable"]
            assert len(message["chars"]) == len(message["stable"] + message["tentative"])

    final = speaker.of("final")[0]
    assert final["segment_count"] == len(lines)
    # The second viewer saw the same committed lines, and interims too; the late one the same lines.
    assert [line["text"] for line in viewer.lines] == [line["text"] for line in lines]
    assert viewer.of("interim") and viewer.close_code == 1000
    assert [line["text"] for line in late.lines] == [line["text"] for line in lines]

    async with httpx.AsyncClient(base_url=f"http://{stack.host}", params={"token": token}) as http:
        status = (await http.get(f"/v1/jobs/{job_id}")).json()
        assert status["status"] == "done", status
        transcript = (await http.get(f"/v1/jobs/{job_id}/transcript")).json()
        assert [s["text"] for s in transcript["segments"]] == [line["text"] for line in lines]  # never changed
        assert transcript["duration"] == pytest.approx(len(samples) / 16000, abs=0.3)
        last_end = transcript["segments"][-1]["end"]
        assert 0 < last_end <= transcript["duration"] + 0.5  # session seconds, on the audio's clock
        audio = await http.get(f"/v1/jobs/{job_id}/audio")
        assert audio.status_code == 200 and audio.content[:4] == b"OggS"
        srt = await http.get(f"/v1/jobs/{job_id}/transcript", params={"format": "srt"})
        assert srt.status_code == 200 and lines[0]["text"] in srt.text


async def _session(url: str, *, subprotocols: list[str] | None = None) -> tuple[Heard, Any]:
    """Open ``url``; the messages until the server closes (or the first one, if it stays open) and the socket."""
    heard = Heard()
    ws = await websockets.connect(url, subprotocols=subprotocols)  # type: ignore[arg-type]
    heard.messages.append(json.loads(await ws.recv()))
    return heard, ws


async def _refused(url: str, **kwargs: Any) -> Heard:
    """A connection the server refuses: its one ``error`` message and close code."""
    heard, ws = await _session(url, **kwargs)
    async with asyncio.timeout(10):
        await _listen(ws, heard)
    return heard


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("", "encoding is missing"),
        ("encoding=mp3", "encoding='mp3' is not supported"),
        ("encoding=linear16", "sample_rate"),
        ("encoding=linear16&sample_rate=96000", "out of range"),
        ("encoding=linear16&sample_rate=16000&channels=3", "channels=3"),
        ("encoding=webm&romanization=pinyin", "romanization must be one of"),
    ],
)
async def test_a_query_the_service_cannot_use_is_refused_with_a_sentence(stack: Stack, query: str, said: str) -> None:
    heard = await _refused(f"ws://{stack.host}/v1/live?{query}")
    (error,) = heard.messages
    assert error["type"] == "error" and said in error["message"] and not error["retryable"], error
    assert heard.close_code == 4400


async def _job_status(stack: Stack, session: dict[str, Any]) -> dict[str, Any]:
    """The session's job once it has ended."""
    async with httpx.AsyncClient(base_url=f"http://{stack.host}", params={"token": session["token"]}) as http:
        async with asyncio.timeout(60):
            while True:
                status = dict((await http.get(session["links"]["status"])).json())
                if status["status"] in ("done", "failed", "cancelled"):
                    return status
                await asyncio.sleep(0.2)


@pytest.mark.parametrize(
    ("encoding", "frames", "said"),
    [
        ("webm", [b"RIFF" + bytes(60_000)], "are not WebM audio: they are WAV"),  # a WAV file declared as WebM
        ("ogg", [bytes(range(256)) * 40] * 8, "Ogg"),  # noise declared as Ogg/Opus
        ("linear16&sample_rate=16000", [bytes(70_000)], "too large"),
        ("linear16&sample_rate=16000", ['{"type": "stop"}'], "close_stream"),
        ("linear16&sample_rate=16000", ["hello"], "text message"),
    ],
)
async def test_bad_frames_get_a_sentence_and_4400_within_two_seconds(
    stack: Stack, encoding: str, frames: list[bytes | str], said: str
) -> None:
    heard, ws = await _session(f"ws://{stack.host}/v1/live?encoding={encoding}")
    session = heard.messages[0]
    assert session["type"] == "session"
    loop = asyncio.get_running_loop()
    began = loop.time()
    for frame in frames:
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(frame)
    async with asyncio.timeout(10):
        await _listen(ws, heard)
    errors = heard.of("error")
    assert errors and said in errors[0]["message"], heard.messages
    assert heard.close_code == 4400
    assert loop.time() - began < 2.0
    # Nothing was heard: the job says so rather than wait.
    status = await _job_status(stack, session)
    assert status["status"] == "failed" and "before any audio arrived" in status["reason"], status


async def test_a_sender_that_drops_ends_the_session_with_what_was_heard(stack: Stack) -> None:
    samples = decode_audio(str(CLIP))
    heard, ws = await _session(f"ws://{stack.host}/v1/live?encoding=linear16&sample_rate=16000")
    session = heard.messages[0]
    data = pcm(samples, 16000, 1)
    for at in range(0, len(data), 16000):  # 6.7 s at once: the gateway reads it (within SCRIBE_LIVE_AHEAD_S)
        await ws.send(data[at : at + 16000])
    await asyncio.sleep(0.5)
    ws.transport.abort()  # no close frame: the connection just goes
    status = await _job_status(stack, session)
    assert status["status"] == "done", status
    async with httpx.AsyncClient(base_url=f"http://{stack.host}", params={"token": session["token"]}) as http:
        transcript = (await http.get(session["links"]["transcript"])).json()
    assert transcript["segments"] and transcript["duration"] == pytest.approx(len(samples) / 16000, abs=0.3)


async def test_no_free_transcriber_means_busy_and_1013_never_a_session_that_falls_behind(stack: Stack) -> None:
    # Every transcriber slot (SCRIBE_LIVE_SESSIONS=2 here) held by sessions that stay open.
    held = [await _session(f"ws://{stack.host}/v1/live?encoding=linear16&sample_rate=16000") for _ in range(2)]
    try:
        assert all(heard.messages[0]["type"] == "session" for heard, _ in held)
        impatient = stack.settings.with_(live_claim_s=1.0)
        async with gateway(impatient) as host:
            refused = await _refused(f"ws://{host}/v1/live?encoding=linear16&sample_rate=16000")
        (error,) = refused.messages
        assert error["code"] == "busy" and error["retryable"] and "try again" in error["message"], error
        assert refused.close_code == 1013
    finally:
        for _, ws in held:
            await ws.send(json.dumps({"type": "close_stream"}))
            await ws.close()


async def test_a_huge_message_closes_the_connection_before_it_is_held(stack: Stack) -> None:
    heard, ws = await _session(f"ws://{stack.host}/v1/live?encoding=linear16&sample_rate=16000")
    with contextlib.suppress(websockets.ConnectionClosed):
        await ws.send(bytes(1024 * 1024))
    async with asyncio.timeout(10):
        await _listen(ws, heard)
    assert heard.close_code == 1009  # message too big: the server read no more of it
    status = await _job_status(stack, heard.messages[0])
    assert status["status"] == "failed" and "before any audio arrived" in status["reason"], status


async def test_under_keys_a_live_session_needs_a_key(stack: Stack) -> None:
    async with gateway(stack.settings.with_(auth="keys")) as host:
        refused = await _refused(f"ws://{host}/v1/live?encoding=webm")
        (error,) = refused.messages
        assert error["code"] == "unauthorized" and "key.<KEY>" in error["message"], error
        assert refused.close_code == 4401
        wrong = await _refused(f"ws://{host}/v1/live?encoding=webm", subprotocols=["key.sk_not_a_key"])
        assert wrong.close_code == 4401


async def test_a_plans_live_minutes_end_a_session_with_a_warning_then_refuse_the_next(stack: Stack, pool) -> None:
    await account_store.set_plan(pool, "live-trial", {"live_minutes_per_month": 0.05})  # 3 seconds
    key, _, _ = await account_store.create_key(pool, f"live-{uuid.uuid4().hex[:8]}", plan="live-trial", admin=False)
    samples = decode_audio(str(CLIP))
    async with gateway(stack.settings.with_(auth="keys")) as host:
        url = f"ws://{host}/v1/live?encoding=linear16&sample_rate=16000"
        heard, ws = await _session(url, subprotocols=[f"key.{key}"])
        assert heard.messages[0]["type"] == "session"
        data = pcm(samples, 16000, 1)
        with contextlib.suppress(websockets.ConnectionClosed):
            for at in range(0, len(data), 16000):
                await ws.send(data[at : at + 16000])
        async with asyncio.timeout(60):
            await _listen(ws, heard)
        final = heard.of("final")
        assert final and any("limit of 3 seconds" in w for w in final[0]["warnings"]), heard.messages[-1]
        assert final[0]["duration"] == pytest.approx(3.0, abs=0.6)
        refused = await _refused(url, subprotocols=[f"key.{key}"])
        (error,) = refused.messages
        assert error["code"] == "quota_exceeded" and "0.05 minutes of live audio a month" in error["message"], error
        assert refused.close_code == 4403


@pytest.mark.parametrize("container", ["webm", "ogg"])
async def test_opus_as_recorders_send_it_makes_a_session(stack: Stack, container: str) -> None:
    samples = decode_audio(str(AUDIO / "sherpa_yue-0.wav"))  # 3.1 s
    data = recorded(samples, container)
    frames = ogg_pages(data) if container == "ogg" else list(slices(data, len(samples) / 16000))
    heard, ws = await _session(f"ws://{stack.host}/v1/live?encoding={container}")
    listening = asyncio.create_task(_listen(ws, heard))
    for frame in frames:  # a recorder's slices, twice as fast as it makes them
        await ws.send(frame)
        await asyncio.sleep(0.125)
    await ws.send(json.dumps({"type": "close_stream"}))
    async with asyncio.timeout(60):
        await listening
    final = heard.of("final")
    assert final and heard.lines, [m["type"] for m in heard.messages]
    assert final[0]["duration"] == pytest.approx(len(samples) / 16000, abs=0.2)


async def test_a_sender_faster_than_real_time_is_read_at_real_time(stack: Stack) -> None:
    samples = decode_audio(str(CLIP))  # 6.7 s, sent at once
    data = pcm(samples, 16000, 1)
    async with gateway(stack.settings.with_(live_ahead_s=1.0)) as host:
        heard, ws = await _session(f"ws://{host}/v1/live?encoding=linear16&sample_rate=16000")
        began = asyncio.get_running_loop().time()
        listening = asyncio.create_task(_listen(ws, heard))
        for at in range(0, len(data), 16000):
            await ws.send(data[at : at + 16000])
        await ws.send(json.dumps({"type": "close_stream"}))
        async with asyncio.timeout(60):
            await listening
        took = asyncio.get_running_loop().time() - began
    assert heard.of("final"), [m["type"] for m in heard.messages]
    # The gateway stopped reading while the audio it had was over a second ahead of the clock: the
    # session could not end before about 5.7 s (what a buffer without a limit would have taken at once).
    assert took >= len(samples) / 16000 - 1.0 - 0.3, took


async def test_a_silent_session_fails_saying_to_check_the_microphone(stack: Stack) -> None:
    heard, ws = await _session(f"ws://{stack.host}/v1/live?encoding=linear16&sample_rate=16000")
    listening = asyncio.create_task(_listen(ws, heard))
    for _ in range(8):  # 2 s of a muted microphone
        await ws.send(bytes(8000))
    await ws.send(json.dumps({"type": "close_stream"}))
    async with asyncio.timeout(60):
        await listening
    failed = heard.of("failed")
    assert failed and "No words were heard in this live session" in failed[0]["reason"], heard.messages[-1]

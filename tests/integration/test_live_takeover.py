"""A live session's transcriber killed mid-session: another takes it over from its last committed line.

The session's transcriber runs as its own process (``python -m transcriber``, one session at a
time) and is killed hard (SIGKILL) once it has committed a line; a transcriber in the test's
process then takes the session when JetStream gives its ``LiveStarted`` to another (the live
consumer's ack_wait, 10 s). Lines are numbered without gaps, none is repeated or lost, and the
transcript covers the audio after the kill.
"""

from __future__ import annotations

import asyncio
import json
import signal

import pytest
import websockets
from faster_whisper import decode_audio

from scribe.runtime import runtime, services
from store import repo
from tests.helpers import service_process
from tests.integration.test_gateway_stream import gateway
from tests.integration.test_live_session import Heard, _listen, _speak
from tests.paths import AUDIO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIP = AUDIO / "sherpa_yue-1.wav"  # 15.1 s, several sentences


async def _holding_a_session(rt, durable: str) -> None:
    consumer = rt.topology.live
    for _ in range(600):
        info = await rt.js.consumer_info(consumer.stream.name, durable)
        if info.num_ack_pending >= 1:
            return
        await asyncio.sleep(0.05)
    pytest.fail("no transcriber took the session")


async def test_a_killed_transcribers_session_is_taken_over_losing_and_repeating_nothing(
    settings, nats_url, database_url, pool, data_dir
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url, live_claim_s=30.0)
    samples = decode_audio(str(CLIP))
    heard = Heard()
    async with runtime(cfg) as rt, gateway(cfg) as host:
        await rt.start(services("romanizer"))
        victim = service_process("transcriber", nats_url, database_url, data_dir, live_sessions="1")
        try:
            url = f"ws://{host}/v1/live?encoding=linear16&sample_rate=16000"
            async with asyncio.timeout(150), websockets.connect(url) as ws:
                session = json.loads(await ws.recv())
                heard.messages.append(session)
                listening = asyncio.create_task(_listen(ws, heard))
                speaking = asyncio.create_task(_speak(ws, samples))
                await _holding_a_session(rt, rt.topology.live.durable)
                for _ in range(200):  # a line committed, or 9 s of the clip spoken
                    if heard.of("segments") or heard.of("progress") and heard.of("progress")[-1]["seconds_decoded"] > 9:
                        break
                    await asyncio.sleep(0.05)
                killed_at = max((m.get("seconds_decoded", 0.0) for m in heard.of("progress")), default=0.0)
                lines_before = len(heard.lines)
                victim.send_signal(signal.SIGKILL)
                await asyncio.to_thread(victim.wait, 10)
                await rt.start(services("transcriber"))  # takes the session once JetStream gives it out again
                await speaking
                await listening
            info = await rt.js.consumer_info(rt.topology.live.stream.name, rt.topology.live.durable)
        finally:
            if victim.poll() is None:
                victim.kill()
    job_id = session["job_id"]
    assert info.delivered.consumer_seq >= 2  # the session's message went out again, to the new transcriber
    lines = heard.lines
    kinds = [m["type"] for m in heard.messages]
    assert heard.close_code == 1000 and kinds[-1] == "final", kinds
    assert [line["seq"] for line in lines] == list(range(len(lines)))  # no gap, nothing twice
    assert [line["chunk_seq"] for line in lines] == sorted(line["chunk_seq"] for line in lines)
    texts = [line["text"] for line in lines]
    assert len(set(texts)) == len(texts), texts  # no line said again after the takeover
    assert len(lines) > lines_before  # the new transcriber went on
    assert heard.of("lagging")  # reading the audio again from the last commit, it told the viewers it was behind
    assert lines[-1]["end"] > killed_at  # and transcribed the audio after the kill
    stored = await repo.segments(pool, job_id)
    assert [s.text for s in stored] == texts
    row = await repo.get_job(pool, job_id)
    assert row is not None and row.status == "done"
    assert row.duration == pytest.approx(len(samples) / 16000, abs=0.3)

"""A live session on the paid backend, against a FAKE OpenAI HTTP server (tests/fake_openai.py): utterance mode.

The paid API cannot be reached from here; the fake speaks its HTTP API with the embedded Whisper
behind it. Re-decoding a rolling buffer would bill the same audio many times, so live sessions on
a paid backend send each utterance once, cut at pauses: no tentative text, each sample billed at
most once (billed seconds per session second at most 1), every call in the ledger.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
import websockets
from faster_whisper import decode_audio

from scribe.runtime import runtime, services
from store import repo
from tests.fake_openai import FakeOpenAITranscriptionServer, whisper_model_for_tests
from tests.integration.test_gateway_stream import gateway
from tests.integration.test_live_session import Heard, _listen, _speak
from tests.paths import AUDIO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIP = AUDIO / "sherpa_yue-1.wav"  # 15.1 s, several sentences and pauses


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAITranscriptionServer]:
    with FakeOpenAITranscriptionServer(whisper_model_for_tests()) as server:
        yield server


async def test_fake_openai_live_session_sends_each_utterance_once(
    settings, nats_url, database_url, pool, fake_openai
) -> None:
    fake_openai.reset()
    cfg = fake_openai.settings_for(settings, nats_url=nats_url, database_url=database_url, openai_model="whisper-1")
    samples = decode_audio(str(CLIP))
    heard = Heard()
    async with runtime(cfg) as rt, gateway(cfg) as host:
        await rt.start(services("transcriber", "romanizer"))
        url = f"ws://{host}/v1/live?encoding=linear16&sample_rate=16000"
        async with asyncio.timeout(120), websockets.connect(url) as ws:
            session = json.loads(await ws.recv())
            listening = asyncio.create_task(_listen(ws, heard))
            await _speak(ws, samples, pace=3.0)  # the policy works on the audio's clock, not the wall's
            await listening
    kinds = [m["type"] for m in heard.messages]
    assert heard.close_code == 1000 and kinds[-1] == "final", kinds
    assert not any(m["tentative"] for m in heard.of("interim"))  # utterance mode: committed as sent
    lines = heard.lines
    assert len(lines) >= 2 and [line["seq"] for line in lines] == list(range(len(lines)))
    calls = [r for r in fake_openai.requests if r.path.endswith("/audio/transcriptions")]
    assert len(calls) >= 2  # cut at pauses, not sent whole at the end
    session_s = len(samples) / 16000
    final = heard.of("final")[0]
    billed = final["usage"]["billed_seconds"]
    assert final["usage"]["backend"] == "openai" and 0 < billed <= session_s + 1.0, final["usage"]  # whole seconds
    rows = await pool.fetch("SELECT chunk_seq, billed_seconds FROM usage WHERE job_id = $1", session["job_id"])
    assert len(rows) == len(calls)  # one ledger row per call, keyed by the utterance's start (ms)
    assert sorted(r["chunk_seq"] for r in rows) == sorted({r["chunk_seq"] for r in rows})
    job = await repo.get_job(pool, session["job_id"])
    assert job is not None and job.status == "done"

"""The source cache: the same file with the same options replays its stored transcript, billed 0.

The paid API is a FAKE OpenAI HTTP server (tests/fake_openai.py) answering with the real local
model; NATS JetStream, PostgreSQL, the streamer, the transcriber, the romanizer and the gateway are
real. Its requests are counted to show which jobs called the API and which did not.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from core import uploads
from core.messages import Final, JobOptions, Partial, Progress
from core.process import Runtime
from core.settings import Settings
from core.topology import AUDIO_BUCKET
from gateway.app import create_app
from gateway.purge import purge_job
from scribe import client
from scribe.runtime import SERVICES, runtime
from store import repo
from streamer.resolve import video_identity
from tests.fake_openai import FakeOpenAITranscriptionServer
from tests.helpers import Followed, run_job
from tests.integration import test_openai_backend
from tests.paths import AUDIO

pytestmark = pytest.mark.integration

CLIP = AUDIO / "sherpa_yue-4.wav"  # 3.2 s: 香港嘅消費市場從此不一樣
OTHER_CLIP = AUDIO / "sherpa_yue-6.wav"
WAIT_S = 120.0

# The fake OpenAI server (the local model behind the HTTP boundary), fresh for each test.
fake_openai, _fresh_fake = test_openai_backend.fake_openai, test_openai_backend._fresh_fake


@pytest.fixture
def cfg(settings: Settings, nats_url: str, database_url: str, fake_openai: FakeOpenAITranscriptionServer) -> Settings:
    # Each test transcribes a clip of its own: the fake server (so the key) is the module's.
    return fake_openai.settings_for(settings, nats_url=nats_url, database_url=database_url, source_cache=True)


def _calls(fake: FakeOpenAITranscriptionServer) -> int:
    return sum(1 for request in fake.requests if request.status == 200)


async def _upload_job(rt: Runtime, path: Path, options: JobOptions | None = None) -> Followed:
    source = await client.upload(rt.js, io.BytesIO(await asyncio.to_thread(path.read_bytes)))
    return await asyncio.wait_for(run_job(rt, source, options=options), WAIT_S)


def _lines(job: Followed) -> list[tuple[float, float, str]]:
    return [(s.start, s.end, s.text) for s in job.lines]


async def test_the_same_file_again_is_replayed_billed_0_and_fresh_or_a_purge_makes_fake_openai_transcribe_it(
    cfg: Settings, pool, fake_openai: FakeOpenAITranscriptionServer
) -> None:
    async with runtime(cfg) as rt:
        await rt.start(SERVICES)
        first = await asyncio.wait_for(run_job(rt, str(CLIP)), WAIT_S)  # the scribe command's own file
        assert isinstance(first.outcome, Final) and not first.outcome.usage.cache_hit
        calls = _calls(fake_openai)
        assert calls >= 1 and first.outcome.usage.billed_seconds >= 3

        # The same bytes as an upload: replayed through the same events, no call, billed 0, marked a hit.
        again = await _upload_job(rt, CLIP)
        assert isinstance(again.outcome, Final), again.outcome
        assert _calls(fake_openai) == calls
        assert again.outcome.usage.cache_hit and again.outcome.usage.billed_seconds == 0
        assert again.outcome.usage.cost_usd == 0 and again.outcome.usage.model == "whisper-1"
        assert _lines(again) == _lines(first) and again.lines
        assert any(isinstance(e, Partial) for e in again.events)
        assert any(isinstance(e, Progress) and e.input_ended for e in again.events)
        ledger = await pool.fetch(
            "SELECT billed_seconds, cost_usd, cache_hit, saved_usd FROM usage WHERE job_id = $1", again.job_id
        )
        assert ledger and all(r["billed_seconds"] == 0 and r["cost_usd"] == 0 and r["cache_hit"] for r in ledger)
        # What the replay saved is what the first job cost.
        assert float(sum(r["saved_usd"] for r in ledger)) == pytest.approx(first.outcome.usage.cost_usd, abs=1e-6)
        assert first.outcome.usage.cost_usd > 0
        store = await rt.js.object_store(AUDIO_BUCKET)
        assert (await store.get(again.job_id)).data == (await store.get(first.job_id)).data  # its audio plays
        transcript = await repo.transcript(pool, again.job_id)
        assert transcript is not None and [s.text for s in transcript.segments] == [t for *_, t in _lines(first)]

        # Another option that changes the answer (the job's prompt) is another transcript.
        prompted = await _upload_job(rt, CLIP, JobOptions(prompt="消費市場"))
        assert isinstance(prompted.outcome, Final) and not prompted.outcome.usage.cache_hit
        calls = _calls(fake_openai)

        # "fresh" transcribes again, and the fresh job becomes the newest origin.
        fresh = await _upload_job(rt, CLIP, JobOptions(fresh=True))
        assert isinstance(fresh.outcome, Final) and not fresh.outcome.usage.cache_hit
        assert _calls(fake_openai) > calls and fresh.outcome.usage.billed_seconds >= 3
        calls = _calls(fake_openai)

        # Purging the jobs that were transcribed takes the transcript out of the cache: the replayed job
        # (still there) is never an origin, so the next one is transcribed again.
        for job_id in (first.job_id, fresh.job_id):
            row = await repo.get_job(pool, job_id)
            assert row is not None
            await purge_job(rt, row)
        last = await _upload_job(rt, CLIP)
        assert isinstance(last.outcome, Final) and not last.outcome.usage.cache_hit
        assert _calls(fake_openai) > calls
        keys = await pool.fetch(
            "SELECT id FROM jobs WHERE id = ANY($1::text[]) AND source_key IS NOT NULL",
            [first.job_id, again.job_id, fresh.job_id, last.job_id],
        )
        assert {r["id"] for r in keys} == {last.job_id}


async def test_a_replay_whose_audio_expired_is_transcribed_by_fake_openai_again(
    cfg: Settings, pool, fake_openai: FakeOpenAITranscriptionServer
) -> None:
    async with runtime(cfg) as rt:
        await rt.start(SERVICES)
        first = await _upload_job(rt, OTHER_CLIP)
        assert isinstance(first.outcome, Final)
        await uploads.delete(rt.js, first.job_id, bucket=AUDIO_BUCKET)  # as SCRIBE_AUDIO_RETENTION_S would
        calls = _calls(fake_openai)
        again = await _upload_job(rt, OTHER_CLIP)
        assert isinstance(again.outcome, Final) and not again.outcome.usage.cache_hit
        assert _calls(fake_openai) > calls


async def test_fresh_is_a_boolean_in_the_submit_and_odd_values_are_refused_with_400(cfg: Settings, pool) -> None:
    async with AsyncTestClient(app=create_app(cfg), base_url="http://127.0.0.1") as http:
        bad_json = await http.post("/v1/jobs", json={"url": "https://example.com/a.mp3", "fresh": "yes"})
        assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "bad_request"
        upload = {"file": ("a.wav", CLIP.read_bytes())}
        bad_form = await http.post("/v1/jobs", files=upload, data={"fresh": "maybe"})
        assert bad_form.status_code == 400 and "fresh" in bad_form.json()["error"]["message"]
        good = await http.post("/v1/jobs", files=upload, data={"fresh": "true"})
        assert good.status_code == 202
        row = await repo.get_job(pool, good.json()["job_id"])
        assert row is not None and row.options.fresh is True
        schema = (await http.get("/schema/openapi.json")).json()
        body = schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
        assert body["application/json"]["schema"]["properties"]["fresh"]["type"] == "boolean"
        assert "fresh" in body["multipart/form-data"]["schema"]["properties"]


def test_a_video_on_a_site_is_known_by_its_extractor_and_id_and_a_direct_link_by_nothing() -> None:
    assert video_identity({"extractor_key": "Youtube", "id": "dQw4w9WgXcQ"}) == "Youtube:dQw4w9WgXcQ"
    assert video_identity({"extractor_key": "Generic", "id": "clip"}) is None
    assert video_identity({"extractor_key": "Youtube"}) is None

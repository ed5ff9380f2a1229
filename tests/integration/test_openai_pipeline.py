"""The pipeline with the openai backend, against a FAKE OpenAI HTTP server (tests/fake_openai.py).

The paid API cannot be reached from here; the fake speaks its HTTP API and answers with
the real local model, so the transcripts are real. Everything else is real.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from core.messages import Failed, Final
from core.settings import Settings
from scribe.runtime import SERVICES, runtime
from tests.fake_openai import FakeOpenAITranscriptionServer, whisper_model_for_tests
from tests.helpers import run_job
from tests.paths import AUDIO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIP = AUDIO / "sherpa_yue-6.wav"


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAITranscriptionServer]:
    with FakeOpenAITranscriptionServer(whisper_model_for_tests()) as server:
        yield server


def _openai_settings(
    settings: Settings, nats_url: str, database_url: str, fake: FakeOpenAITranscriptionServer
) -> Settings:
    return fake.settings_for(
        settings,
        nats_url=nats_url,
        database_url=database_url,
        openai_model="whisper-1",
        chunk_min_s=8.0,
        chunk_max_s=16.0,
    )


async def test_fake_openai_backend_job_records_billed_cost_and_survives_a_429(
    settings, nats_url, database_url, pool, fake_openai
) -> None:
    fake_openai.reset()
    fake_openai.fail_next("rate_limit", 1, retry_after=0.5)
    cfg = _openai_settings(settings, nats_url, database_url, fake_openai)
    async with runtime(cfg) as rt:
        await rt.start(SERVICES)
        job = await asyncio.wait_for(run_job(rt, str(CLIP)), 180)
    job_id, outcome = job.job_id, job.outcome
    assert isinstance(outcome, Final), outcome
    assert outcome.usage.backend == "openai" and outcome.usage.model == "whisper-1"
    # Of the 30.6 s clip only the speech is sent (its pauses, but for 0.1 s a side, are left out), billed at
    # $0.006 a minute in whole seconds per call.
    assert 25 <= outcome.usage.billed_seconds <= 30
    assert outcome.usage.cost_usd == pytest.approx(outcome.usage.billed_seconds / 60 * 0.006, rel=1e-3)
    statuses = [r.status for r in fake_openai.requests]
    assert statuses.count(429) == 1 and statuses.count(200) >= 2
    rows = await pool.fetch("SELECT chunk_seq, cost_usd FROM usage WHERE job_id = $1", job_id)
    assert len(rows) == statuses.count(200)  # one ledger row per billed call, none for the refused one


async def test_fake_openai_rejecting_the_key_fails_the_job_with_a_reason(
    settings, nats_url, database_url, pool, fake_openai
) -> None:
    fake_openai.reset()
    cfg = _openai_settings(settings, nats_url, database_url, fake_openai).with_(openai_api_key="sk-wrong")
    async with runtime(cfg) as rt:
        await rt.start(SERVICES)
        job = await asyncio.wait_for(run_job(rt, str(CLIP)), 120)
    job_id, outcome = job.job_id, job.outcome
    assert isinstance(outcome, Failed)
    assert "SCRIBE_OPENAI_API_KEY" in outcome.reason
    dead = await pool.fetchval("SELECT count(*) FROM dead_letters WHERE job_id = $1", job_id)
    assert dead >= 1

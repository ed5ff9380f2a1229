"""The gateway's REST reads against a real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from litestar.testing import AsyncTestClient

from core.messages import JobOptions, Segment, Usage, Word
from core.settings import Settings
from gateway.app import create_app
from store import repo

pytestmark = pytest.mark.integration


async def test_job_status_and_transcript_downloads(database_url: str, pool) -> None:
    job_id = uuid.uuid4().hex
    await repo.create_job(pool, job_id, "clip.wav", user_id=None, options=JobOptions())
    app = create_app(Settings(database_url=database_url))
    async with AsyncTestClient(app=app) as client:
        assert (await client.get("/healthz")).text == "ok"
        assert (await client.get(f"/v1/jobs/{uuid.uuid4().hex}")).status_code == 404
        status = (await client.get(f"/v1/jobs/{job_id}")).json()
        assert status["status"] == "queued"
        assert (await client.get(f"/v1/jobs/{job_id}/transcript")).status_code == 404  # not finished

        words = [Word(text="你好", jyutping="nei5 hou2", yale="néih hóu")]
        line = Segment(seq=0, start=0.0, end=1.5, text="你好", jyutping="nei5 hou2", yale="néih hóu", words=words)
        await repo.set_input_ended(pool, job_id, total_chunks=1, duration=1.5)
        await repo.insert_segments(pool, job_id, [line])
        usage = Usage(backend="local", model="whisper-base", billed_seconds=1.5, cost_usd=0.0)
        await repo.record_usage(pool, usage, job_id=job_id, chunk_seq=0, user_id=None)
        await repo.finish_job(pool, job_id)

        srt = await client.get(f"/v1/jobs/{job_id}/transcript", params={"format": "srt", "romanization": "yale"})
        assert srt.status_code == 200 and "00:00:00,000 --> 00:00:01,500" in srt.text and "néih hóu" in srt.text
        data = (await client.get(f"/v1/jobs/{job_id}/transcript")).json()
        assert data["segments"][0]["jyutping"] == "nei5 hou2" and data["usage"]["billed_seconds"] == 1.5
        bad = await client.get(f"/v1/jobs/{job_id}/transcript", params={"romanization": "pinyin"})
        assert bad.status_code == 400 and "romanization" in bad.text

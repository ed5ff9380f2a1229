"""The gateway's REST API against real NATS JetStream and PostgreSQL (Litestar's test client)."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import nats.js.errors
import pytest
from litestar.testing import AsyncTestClient

from core import subjects
from core.messages import Cancelled, Final, JobEvent, Progress, Segment, Usage, Word
from core.settings import Settings
from core.topology import EVENTS, UPLOADS_BUCKET
from gateway.app import create_app
from scribe import client as scribe_client
from scribe.runtime import SERVICES, runtime
from store import repo
from tests import media
from tests.paths import AUDIO

pytestmark = pytest.mark.integration

BASE_URL = "http://127.0.0.1"  # a name the gateway answers to (SCRIBE_GATEWAY_ALLOWED_HOSTS)


def _settings(settings: Settings, nats_url: str, database_url: str, **changes: Any) -> Settings:
    return settings.with_(nats_url=nats_url, database_url=database_url, **changes)


def _error(response: Any) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]


async def test_a_link_is_submitted_and_its_job_read_with_its_token(settings, nats_url, database_url, pool) -> None:
    app = create_app(_settings(settings, nats_url, database_url))
    async with AsyncTestClient(app=app, base_url=BASE_URL) as client:
        accepted = await client.post("/v1/jobs", json={"url": "http://127.0.0.1:9/talk.mp3", "romanization": "yale"})
        assert accepted.status_code == 202, accepted.text
        body = accepted.json()
        job_id, token = body["job_id"], body["token"]
        assert len(token) == 32 and body["links"]["status"] == f"/v1/jobs/{job_id}"
        assert body["links"]["page"] == f"/jobs/{job_id}?token={token}"
        page = await client.get(body["links"]["page"])
        assert page.status_code == 200 and page.headers["referrer-policy"] == "no-referrer"
        assert '<script type="module" src="/static/viewer.js">' in page.text
        script = await client.get("/static/viewer.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]

        missing = await client.get(f"/v1/jobs/{job_id}")
        assert missing.status_code == 401 and _error(missing)["code"] == "unauthorized"
        wrong = await client.get(f"/v1/jobs/{job_id}", params={"token": "x" * 32})
        assert wrong.status_code == 401
        other = (await client.post("/v1/jobs", json={"url": "http://127.0.0.1:9/b.mp3"})).json()
        assert (await client.get(f"/v1/jobs/{job_id}", params={"token": other["token"]})).status_code == 401

        status = await client.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"})
        assert status.status_code == 200
        assert status.json()["status"] in ("queued", "running", "failed")  # no streamer runs here
        job = await repo.get_job(pool, job_id)
        assert job is not None and job.options.romanization == "yale"

        # While the job runs: the lines so far, marked partial; then the whole transcript.
        await pool.execute("UPDATE jobs SET status = 'running', reason = NULL WHERE id = $1", job_id)
        words = [Word(text="你好", jyutping="nei5 hou2", yale="néih hóu")]
        line = Segment(seq=0, start=0.0, end=1.5, text="你好", jyutping="nei5 hou2", yale="néih hóu", words=words)
        await repo.insert_segments(pool, job_id, [line])
        so_far = (await client.get(f"/v1/jobs/{job_id}/transcript", params={"token": token})).json()
        assert so_far["partial"] is True and [s["text"] for s in so_far["segments"]] == ["你好"]
        await repo.set_input_ended(pool, job_id, total_chunks=1, duration=1.5)
        usage = Usage(backend="local", model="whisper-base", billed_seconds=1.5, cost_usd=0.0)
        await repo.record_usage(pool, usage, job_id=job_id, chunk_seq=0, user_id=None)
        await repo.finish_job(pool, job_id)
        srt = await client.get(
            f"/v1/jobs/{job_id}/transcript", params={"token": token, "format": "srt", "romanization": "yale"}
        )
        assert srt.status_code == 200 and "00:00:00,000 --> 00:00:01,500" in srt.text and "néih hóu" in srt.text
        done = (await client.get(f"/v1/jobs/{job_id}/transcript", params={"token": token})).json()
        assert done["partial"] is False and done["usage"]["billed_seconds"] == 1.5
        final_status = (await client.get(f"/v1/jobs/{job_id}", params={"token": token})).json()
        assert final_status["status"] == "done" and final_status["usage"]["billed_seconds"] == 1.5
        assert final_status["timings"]["finished_at"] is not None


async def test_bad_requests_get_a_4xx_saying_what_is_wrong(settings, nats_url, database_url) -> None:
    app = create_app(_settings(settings, nats_url, database_url, allow_private_urls=False))
    async with AsyncTestClient(app=app, base_url=BASE_URL) as client:
        cases = {
            "not json": (client.post("/v1/jobs", content=b"{url", headers={"content-type": "application/json"}), 400),
            "unknown field": (client.post("/v1/jobs", json={"url": "https://a.example/x", "speed": 2}), 400),
            "bad romanization": (
                client.post("/v1/jobs", json={"url": "https://a.example/x", "romanization": "x"}),
                400,
            ),
            "a path": (client.post("/v1/jobs", json={"url": "/etc/passwd"}), 400),
            "data uri": (client.post("/v1/jobs", json={"url": "data:audio/wav;base64,UklGR"}), 400),
            "private": (client.post("/v1/jobs", json={"url": "http://127.0.0.1/a.mp3"}), 400),
            "plain text": (client.post("/v1/jobs", content=b"hi", headers={"content-type": "text/plain"}), 415),
            "form without file": (
                client.post("/v1/jobs", data={"romanization": "both"}, files={"other": ("a.txt", b"x")}),
                400,
            ),
            "unknown route": (client.get("/v1/nothing"), 404),
        }
        messages = {}
        for name, (request, status) in cases.items():
            response = await request
            assert response.status_code == status, (name, response.text)
            messages[name] = _error(response)["message"]
        schema = await client.get("/schema/openapi.json")
        assert schema.status_code == 200 and "/v1/jobs/{job_id}/transcript" in schema.json()["paths"]
        body = schema.json()["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
        assert body["application/json"]["schema"]["required"] == ["url"]
        assert body["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    assert "Give an http:// or https:// link" in messages["a path"]
    assert "data: URIs are not accepted" in messages["data uri"]
    assert "private or local network address" in messages["private"]
    assert "romanization" in messages["bad romanization"]
    assert '"file"' in messages["form without file"]


async def test_a_file_is_uploaded_once_per_idempotency_key_and_refused_past_the_limit(
    settings, nats_url, database_url, pool, rt, tmp_path: Path
) -> None:
    clip = media.make_ogg(tmp_path, seconds=3)
    app = create_app(_settings(settings, nats_url, database_url, max_upload_bytes=200_000))
    async with AsyncTestClient(app=app, base_url=BASE_URL) as client:
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        files = {"file": ("clip.ogg", clip.read_bytes(), "audio/ogg")}
        first = await client.post("/v1/jobs", files=files, data={"romanization": "jyutping"}, headers=headers)
        again = await client.post("/v1/jobs", files=files, data={"romanization": "jyutping"}, headers=headers)
        assert first.status_code == again.status_code == 202, first.text
        assert first.json() == again.json()
        job = await repo.get_job(pool, first.json()["job_id"])
        assert job is not None and job.source.startswith("upload:") and job.options.romanization == "jyutping"
        store = await rt.js.object_store(UPLOADS_BUCKET)
        assert (await store.get_info(job.source.removeprefix("upload:"))).size == clip.stat().st_size

        big = await client.post("/v1/jobs", files={"file": ("big.ogg", bytes(300_000), "audio/ogg")})
        assert big.status_code == 413 and _error(big)["code"] == "too_large"
        assert (await client.get("/healthz")).text == "ok"
        assert (await client.get("/readyz")).json() == {"nats": "ok", "database": "ok"}


@pytest.mark.slow
async def test_an_uploaded_file_is_transcribed_and_read_back_over_rest(
    settings, nats_url, database_url, tmp_path: Path
) -> None:
    cfg = _settings(settings, nats_url, database_url, chunk_min_s=8.0, chunk_max_s=16.0)
    async with runtime(cfg) as services:
        await services.start(SERVICES)
        async with AsyncTestClient(app=create_app(cfg), base_url=BASE_URL) as client:
            clip = (AUDIO / "sherpa_yue-4.wav").read_bytes()
            accepted = (await client.post("/v1/jobs", files={"file": ("clip.wav", clip, "audio/wav")})).json()
            job_id, token = accepted["job_id"], accepted["token"]
            for _ in range(600):
                status = (await client.get(f"/v1/jobs/{job_id}", params={"token": token})).json()
                if status["status"] in ("done", "failed"):
                    break
                await asyncio.sleep(0.2)
            assert status["status"] == "done", status
            assert status["progress"]["seconds_decoded"] == pytest.approx(status["progress"]["duration"], abs=0.1)
            txt = await client.get(f"/v1/jobs/{job_id}/transcript", params={"token": token, "format": "txt"})
            audio_url, auth = f"/v1/jobs/{job_id}/audio", {"token": token}
            whole = await client.get(audio_url, params=auth)
            size = len(whole.content)
            head = await client.get(audio_url, params=auth, headers={"Range": "bytes=0-99"})
            tail = await client.get(audio_url, params=auth, headers={"Range": "bytes=-10"})
            past = await client.get(audio_url, params=auth, headers={"Range": f"bytes={size}-"})
            nonsense = await client.get(audio_url, params=auth, headers={"Range": "items=1-2"})
    assert txt.status_code == 200 and "香港" in txt.text
    assert whole.status_code == 200 and whole.headers["content-type"].startswith("audio/ogg")
    with av.open(io.BytesIO(whole.content)) as played:  # the whole timeline: line times match
        assert played.duration / 1e6 == pytest.approx(status["progress"]["duration"], abs=0.1)
    assert head.status_code == 206 and head.content == whole.content[:100]
    assert head.headers["content-range"] == f"bytes 0-99/{size}" and head.headers["accept-ranges"] == "bytes"
    assert tail.status_code == 206 and tail.content == whole.content[-10:]
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
    assert nonsense.status_code == 400


async def test_recent_jobs_are_listed_newest_first_a_page_at_a_time(settings, nats_url, database_url) -> None:
    app = create_app(_settings(settings, nats_url, database_url))
    async with AsyncTestClient(app=app, base_url=BASE_URL) as client:
        ids = [
            (await client.post("/v1/jobs", json={"url": f"http://127.0.0.1:9/{n}.mp3"})).json()["job_id"]
            for n in range(3)
        ]
        first = (await client.get("/v1/jobs", params={"limit": 2})).json()
        assert [job["job_id"] for job in first["jobs"]] == [ids[2], ids[1]] and first["next_cursor"]
        # No title: the list needs no token, and a file's name or a video's title is the job owner's.
        assert set(first["jobs"][0]) == {"job_id", "status", "duration", "created_at", "finished_at"}
        second = (await client.get("/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]})).json()
        assert second["jobs"][0]["job_id"] == ids[0]
        assert _error(await client.get("/v1/jobs", params={"cursor": "nonsense"}))["code"] == "bad_request"
        assert (await client.get("/v1/jobs", params={"limit": 0})).status_code == 400


@pytest.mark.slow
async def test_a_cancelled_job_stops_and_a_purged_one_keeps_nothing_but_its_row(
    settings, nats_url, database_url, pool, rt, tmp_path: Path
) -> None:
    cfg = _settings(settings, nats_url, database_url, chunk_min_s=8.0, chunk_max_s=12.0)
    long_clip = media.make_long(tmp_path, 120.0)
    async with runtime(cfg) as services:
        await services.start(SERVICES)
        async with AsyncTestClient(app=create_app(cfg), base_url=BASE_URL) as client:
            files = {"file": ("long.ogg", long_clip.read_bytes(), "audio/ogg")}
            accepted = (await client.post("/v1/jobs", files=files)).json()
            job_id, token = accepted["job_id"], accepted["token"]
            purge_early = await client.delete(f"/v1/jobs/{job_id}", params={"token": token, "purge": "true"})
            assert purge_early.status_code == 409 and _error(purge_early)["code"] == "running"
            for _ in range(600):  # until the first lines are in: the job is well under way
                if (await client.get(f"/v1/jobs/{job_id}", params={"token": token})).json()["chunks_done"] >= 1:
                    break
                await asyncio.sleep(0.1)
            cancelled = await client.delete(f"/v1/jobs/{job_id}", params={"token": token})
            assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
            again = await client.delete(f"/v1/jobs/{job_id}", params={"token": token})
            assert again.status_code == 409 and _error(again)["code"] == "finished"
            await asyncio.sleep(3)  # what the transcribers held is finished or dropped by now
            status = (await client.get(f"/v1/jobs/{job_id}", params={"token": token})).json()
            billed_chunks = await pool.fetchval("SELECT count(*) FROM usage WHERE job_id = $1", job_id)
            chunks = await pool.fetchval("SELECT count(*) FROM chunks WHERE job_id = $1", job_id)
            assert status["status"] == "cancelled" and status["reason"] == "Cancelled on request."
            assert chunks <= billed_chunks
            job = await repo.get_job(pool, job_id)
            assert job is not None
            events = [e async for e in client_events(rt, job_id)]
            purged = await client.delete(f"/v1/jobs/{job_id}", params={"token": token, "purge": "true"})
            assert purged.status_code == 200 and purged.json()["purged"] is True
            gone = await client.get(f"/v1/jobs/{job_id}/transcript", params={"token": token})
            assert gone.status_code == 410 and _error(gone)["code"] == "purged"
            assert (await client.get(f"/v1/jobs/{job_id}/audio", params={"token": token})).status_code == 410
    assert await pool.fetchval("SELECT count(*) FROM segments WHERE job_id = $1", job_id) == 0
    store = await rt.js.object_store(UPLOADS_BUCKET)
    with pytest.raises(nats.js.errors.NotFoundError):
        await store.get_info(job.source.removeprefix("upload:"))
    info = await rt.js.stream_info(EVENTS.name, subjects_filter=subjects.events(job_id))
    assert not (info.state.subjects or {}).get(subjects.events(job_id)), "purge left the job's events replayable"
    assert isinstance(events[-1], Cancelled) and not any(isinstance(e, Final) for e in events)
    published = max(e.chunks_published for e in events if isinstance(e, Progress))
    assert 1 <= billed_chunks < published, (billed_chunks, published)  # queued chunks were dropped, not billed


async def client_events(rt: Any, job_id: str) -> AsyncIterator[JobEvent]:
    """The job's events from the bus, to its terminal one."""
    async for event in scribe_client.follow(rt.js, job_id):
        yield event

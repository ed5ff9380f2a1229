"""A job keeps a title (an upload's file name), and downloads are named after it and the reading they
show, over the real gateway with NATS and PostgreSQL (Litestar's test client)."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import unquote

import pytest
from litestar.testing import AsyncTestClient

from core.messages import JobOptions, Segment, Word
from core.process import Runtime
from core.text import READING_LINES
from gateway.access import TOKEN_SECRET, job_token
from gateway.app import create_app
from store import repo

pytestmark = pytest.mark.integration

BASE_URL = "http://127.0.0.1"
LABELS = {
    "jyutping": "jyutping",
    "yale": "yale",
    "yale_numeric": "yale numbers",
    "both": "jyutping and yale",
    "none": "characters",
}


async def _done(rt: Runtime, job_id: str) -> None:
    """Give the job one line and finish it."""
    words = [Word(text="你好", jyutping="nei5 hou2", yale="néih hóu")]
    line = Segment(seq=0, start=0.0, end=1.5, text="你好", jyutping="nei5 hou2", yale="néih hóu", words=words)
    await repo.insert_segments(rt.pool, job_id, [line])
    await repo.set_input_ended(rt.pool, job_id, total_chunks=1, duration=1.5)
    await repo.advance(rt.pool, job_id, next_chunk=1, next_segment=1)
    await repo.mark_running(rt.pool, job_id)
    await repo.finish_job(rt.pool, job_id)


def _names(disposition: str) -> tuple[str, str, str]:
    """``(disposition, filename, the UTF-8 filename*)`` of a ``Content-Disposition`` we wrote."""
    kind, plain, extended = (part.strip() for part in disposition.split(";"))
    assert plain.startswith('filename="') and plain.endswith('"') and plain.isascii(), disposition
    assert extended.startswith("filename*=UTF-8''") and extended.isascii(), disposition
    return kind, plain[len('filename="') : -1], unquote(extended[len("filename*=UTF-8''") :])


async def test_an_uploads_file_name_is_its_title_and_names_every_download(settings, nats_url, database_url, rt) -> None:
    app = create_app(settings.with_(nats_url=nats_url, database_url=database_url))
    async with AsyncTestClient(app=app, base_url=BASE_URL) as client:
        files = {"file": ("C:\\talks\\council meeting.ogg", b"OggS" + bytes(100), "audio/ogg")}
        accepted = await client.post("/v1/jobs", files=files, data={"romanization": "both"})
        assert accepted.status_code == 202, accepted.text
        job_id, token = accepted.json()["job_id"], accepted.json()["token"]
        status = await client.get(f"/v1/jobs/{job_id}", params={"token": token})
        assert status.json()["title"] == "council meeting"
        listed = (await client.get("/v1/jobs")).json()["jobs"]
        assert [set(job) for job in listed if job["job_id"] == job_id] == [
            {"job_id", "status", "duration", "created_at", "finished_at"}  # the list needs no token: no title
        ]

        await _done(rt, job_id)
        for reading in READING_LINES:
            for fmt in ("srt", "vtt", "txt"):
                answer = await client.get(
                    f"/v1/jobs/{job_id}/transcript", params={"token": token, "format": fmt, "romanization": reading}
                )
                assert answer.status_code == 200, answer.text
                name = f"council meeting ({LABELS[reading]}).{fmt}"
                assert _names(answer.headers["content-disposition"]) == ("attachment", name, name)
        numbers = await client.get(
            f"/v1/jobs/{job_id}/transcript", params={"token": token, "format": "srt", "romanization": "yale_numeric"}
        )
        assert "nei5 hou2" in numbers.text and "néih" not in numbers.text
        characters = await client.get(
            f"/v1/jobs/{job_id}/transcript", params={"token": token, "format": "srt", "romanization": "none"}
        )
        assert "你好" in characters.text and "nei5" not in characters.text
        for fmt, kind in (("json", "inline"), ("csv", "attachment")):  # every reading: none named
            answer = await client.get(f"/v1/jobs/{job_id}/transcript", params={"token": token, "format": fmt})
            assert _names(answer.headers["content-disposition"]) == (kind, *[f"council meeting.{fmt}"] * 2)


@pytest.mark.parametrize(
    ("title", "ascii_name", "utf8_name"),
    [
        ("立法會會議：2024/5", "{job_id} (jyutping).srt", "立法會會議：2024_5 (jyutping).srt"),
        ('Café "one" 50%', "Cafe _one_ 50_ (jyutping).srt", "Café _one_ 50% (jyutping).srt"),
        (None, "{job_id} (jyutping).srt", "{job_id} (jyutping).srt"),
    ],
    ids=["chinese", "accents-quotes-per-cent", "no-title"],
)
async def test_a_download_name_is_safe_in_ascii_and_whole_in_utf8(
    title: str | None, ascii_name: str, utf8_name: str, settings, nats_url, database_url, rt
) -> None:
    job_id = uuid.uuid4().hex
    await repo.create_job(rt.pool, job_id, "https://example.com/a.mp4", user_id=None, options=JobOptions(), title=title)
    await _done(rt, job_id)
    token = job_token(await repo.secret(rt.pool, TOKEN_SECRET), job_id)
    app = create_app(settings.with_(nats_url=nats_url, database_url=database_url))
    async with AsyncTestClient(app=app, base_url=BASE_URL) as client:
        answer: Any = await client.get(
            f"/v1/jobs/{job_id}/transcript", params={"token": token, "format": "srt", "romanization": "jyutping"}
        )
    assert answer.status_code == 200, answer.text
    expected = ("attachment", ascii_name.format(job_id=job_id), utf8_name.format(job_id=job_id))
    assert _names(answer.headers["content-disposition"]) == expected

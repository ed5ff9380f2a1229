"""A URL through real yt-dlp and a local HTTP server, and the CLI as a user runs it."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import bus
from core.messages import Cancelled, Final, Progress
from scribe import client
from scribe.runtime import SERVICES, runtime
from store import repo
from tests import media
from tests.helpers import scribe_cli
from tests.paths import AUDIO
from tests.webserver import Route, Site, serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("site")
    # 60 s of the meeting recording, sent in 4 KiB pieces over about 8 s.
    slow = media.write_audio(folder / "slow.ogg", media.load_samples(media.MEETING, seconds=60), bit_rate=24000)
    body = slow.read_bytes()
    site = serve("127.0.0.1", {"/talk.ogg": Route(body, chunk=4096, delay_s=8.0 / (len(body) / 4096))})
    yield site
    site.server.shutdown()


async def test_url_first_chunk_is_published_before_the_download_completes(
    settings, nats_url, database_url, pool, site: Site
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url, chunk_min_s=8.0, chunk_max_s=12.0)
    url = site.url("/talk.ogg")
    total = len(site.routes["/talk.ogg"].body)
    async with runtime(cfg) as rt:
        await rt.start(SERVICES)
        job_id = await client.submit(rt.js, url)
        sent_at_first_chunk = None

        async def follow() -> Final:
            nonlocal sent_at_first_chunk
            async for event in client.follow(rt.js, job_id):
                if isinstance(event, Progress) and event.chunks_published >= 1 and sent_at_first_chunk is None:
                    sent_at_first_chunk = site.sent[-1]
            assert isinstance(event, Final), event
            return event

        outcome = await asyncio.wait_for(follow(), timeout=240)
    assert sent_at_first_chunk is not None and sent_at_first_chunk < total * 0.6, (sent_at_first_chunk, total)
    assert site.sent[-1] >= total  # and then the whole file was read
    assert isinstance(outcome, Final) and outcome.segment_count > 0
    transcript_row = await pool.fetchrow("SELECT source, duration FROM jobs WHERE id = $1", job_id)
    assert transcript_row["source"] == url and transcript_row["duration"] == pytest.approx(60.0, abs=1.0)


@pytest.fixture
def cli_env(nats_url: str, database_url: str, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SCRIBE_NATS_URL": nats_url,
        "SCRIBE_DATABASE_URL": database_url,
        "SCRIBE_DATA_DIR": str(data_dir),
        "SCRIBE_ASR_THREADS": "2",
    }


def test_cli_writes_json_with_characters_jyutping_and_yale(cli_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    done = scribe_cli("transcribe", str(AUDIO / "sherpa_yue-15.wav"), "--format", "json", "-o", str(out), env=cli_env)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert set(data) == {"job_id", "source", "duration", "segments", "usage", "warnings", "partial"}
    assert data["warnings"] == [] and data["partial"] is False
    keys = {"seq", "start", "end", "text", "jyutping", "yale", "words", "chars"}
    assert data["segments"] and all(set(segment) == keys for segment in data["segments"])
    assert all(len(segment["chars"]) == len(segment["text"]) for segment in data["segments"])
    assert "廣東話" in "".join(s["text"] for s in data["segments"])
    assert data["usage"]["backend"] == "local" and data["usage"]["cost_usd"] == 0
    # The partial lines were shown live on stderr, then the summary.
    assert "[00:00]" in done.stderr and "wrote" in done.stderr
    # Every line reads exactly as `scribe romanize` reads it: one front end. Only the pipeline
    # knows when each character was said.
    texts = "".join(segment["text"] + "\n" for segment in data["segments"])
    romanized = scribe_cli("romanize", env=cli_env, stdin=texts, timeout=60)
    assert romanized.returncode == 0, romanized.stderr
    timed = ("start", "end", "confidence")
    assert [json.loads(line)["chars"] for line in romanized.stdout.splitlines()] == [
        [{**char, **dict.fromkeys(timed)} for char in segment["chars"]] for segment in data["segments"]
    ]
    said = [char for segment in data["segments"] for char in segment["chars"] if char["jyutping"]]
    assert said and all(char["start"] is not None and 0 <= char["confidence"] <= 1 for char in said)


def test_cli_bad_input_exits_non_zero_with_a_reason(cli_env: dict[str, str], tmp_path: Path) -> None:
    done = scribe_cli("transcribe", str(tmp_path / "missing.mp3"), env=cli_env)
    assert done.returncode == 1
    assert f"There is no file at {tmp_path / 'missing.mp3'}" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_cli_unknown_format_is_a_usage_error(cli_env: dict[str, str]) -> None:
    done = scribe_cli("transcribe", "x.wav", "--format", "docx", env=cli_env, timeout=60)
    assert done.returncode == 2 and "invalid choice" in done.stderr


async def test_cancelling_a_job_stops_its_download(settings, nats_url, database_url, pool, site: Site) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url, chunk_min_s=8.0, chunk_max_s=12.0)
    total = len(site.routes["/talk.ogg"].body)
    async with runtime(cfg) as rt:
        await rt.start(SERVICES)
        job_id = await client.submit(rt.js, site.url("/talk.ogg"))
        async for event in client.follow(rt.js, job_id):
            if isinstance(event, Progress) and event.chunks_published >= 1:
                break
        assert await repo.cancel_job(pool, job_id)
        await bus.publish_event(rt.js, Cancelled(job_id=job_id))
        sent_at_cancel = site.sent[-1]
        events = [e async for e in client.follow(rt.js, job_id)]
        await asyncio.sleep(1.0)
    assert isinstance(events[-1], Cancelled)
    assert sent_at_cancel < total * 0.8 and site.sent[-1] < total, (sent_at_cancel, site.sent[-1], total)
    job = await repo.get_job(pool, job_id)
    assert job is not None and job.status == "cancelled" and job.total_chunks is None  # the input never "ended"

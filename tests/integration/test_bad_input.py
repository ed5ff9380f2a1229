"""Broken media salvaged and hostile input refused, through the whole pipeline (issue 8).

Real NATS, PostgreSQL, PyAV, Silero VAD and faster-whisper: what is sound is transcribed with
a warning, what has no speech is refused without reaching ASR, and a job from the bus never
makes the streamer open a path.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import uuid
from pathlib import Path

import asyncpg
import pytest

from core import bus, subjects, uploads
from core.messages import (
    ChunkTranscribed,
    Failed,
    Final,
    InputEnded,
    JobOptions,
    JobSubmitted,
    Progress,
    Usage,
    job_event_decoder,
)
from core.process import Runtime
from core.settings import Settings
from core.topology import UPLOADS_BUCKET
from romanizer.service import NOTHING_HEARD
from scribe import client
from scribe.runtime import SERVICES, runtime, services
from store import repo
from streamer.service import NO_SPEECH
from streamer.source import LOCAL_PATH_REFUSED
from tests import media
from tests.helpers import run_job, scribe_cli
from tests.paths import AUDIO

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _settings(settings: Settings, nats_url: str, database_url: str) -> Settings:
    return settings.with_(nats_url=nats_url, database_url=database_url, chunk_min_s=8.0, chunk_max_s=16.0)


async def test_damaged_inputs_are_transcribed_with_warnings_and_noise_is_refused_unbilled(
    settings, nats_url, database_url, pool, tmp_path: Path
) -> None:
    cfg = _settings(settings, nats_url, database_url)
    inputs = {
        "joined": media.make_joined_mp3(tmp_path),  # 16 kHz mono, then 44.1 kHz stereo
        "cut wav": media.make_cut_wav(tmp_path, keep=0.5),
        "lying header": media.make_lying_wav(tmp_path, claims_s=5 * 3600, holds_s=12),
        "noise": media.make_noise_file(tmp_path, seconds=20),
    }
    async with runtime(cfg) as rt:
        await rt.start(SERVICES)
        jobs = await asyncio.wait_for(asyncio.gather(*(run_job(rt, str(p)) for p in inputs.values())), timeout=240)
    followed = dict(zip(inputs, jobs, strict=True))

    for name in ("joined", "cut wav", "lying header"):
        outcome = followed[name].outcome
        assert isinstance(outcome, Final) and outcome.segment_count > 0, (name, outcome)
        transcript = await repo.transcript(pool, followed[name].job_id)
        assert transcript is not None and transcript.warnings == outcome.warnings
        assert "\ufffd" not in "".join(s.text for s in transcript.segments)
    joined = followed["joined"]
    assert max(line.end for line in joined.lines) > 10, "the 44.1 kHz half is transcribed too"
    assert any("damaged" in w for w in joined.outcome.warnings)
    [cut] = followed["cut wav"].outcome.warnings
    assert "truncated" in cut and "31 seconds" in cut
    [lying] = followed["lying header"].outcome.warnings
    assert "5 h 00 min" in lying and "12 seconds" in lying

    noise = followed["noise"]
    assert isinstance(noise.outcome, Failed) and noise.outcome.reason == NO_SPEECH
    published = [e.chunks_published for e in noise.events if isinstance(e, Progress)]
    assert published and max(published) == 0, "noise never reaches the transcriber"
    assert (await repo.job_usage(pool, noise.job_id)).billed_seconds == 0


async def test_a_job_from_the_bus_may_name_an_upload_but_never_a_path(
    settings, nats_url, database_url, pool, tmp_path: Path
) -> None:
    secret = tmp_path / "private.wav"
    secret.write_bytes((AUDIO / "sherpa_yue-4.wav").read_bytes())  # 102 kB
    cfg = _settings(settings, nats_url, database_url).with_(max_download_bytes=110_000)
    async with runtime(cfg) as rt:
        await rt.start(SERVICES)
        path_job = await asyncio.wait_for(run_job_from_bus(rt, str(secret)), timeout=60)
        with (AUDIO / "sherpa_yue-4.wav").open("rb") as file:
            source = await client.upload(rt.js, file)
        upload_job = await asyncio.wait_for(run_job_from_bus(rt, source), timeout=180)
        gone_job = await asyncio.wait_for(run_job_from_bus(rt, uploads.PREFIX + "0" * 32), timeout=60)
        big_job = await asyncio.wait_for(run_job_from_bus(rt, await client.upload(rt.js, bytes(120_000))), timeout=60)
        link_job = await asyncio.wait_for(run_job_from_bus(rt, await _link_to_another_bucket(rt)), timeout=60)
    assert isinstance(path_job, Failed) and path_job.reason == LOCAL_PATH_REFUSED
    assert isinstance(upload_job, Final) and upload_job.segment_count >= 1
    transcript = await repo.transcript(pool, upload_job.job_id)
    assert transcript is not None and "香港" in "".join(s.text for s in transcript.segments)
    assert isinstance(gone_job, Failed) and "no longer stored" in gone_job.reason
    assert isinstance(big_job, Failed) and "larger than the 110 kB limit" in big_job.reason
    assert isinstance(link_job, Failed) and "could not be read back intact" in link_job.reason


async def _link_to_another_bucket(rt: Runtime) -> str:
    """An entry in the uploads bucket that links to an object elsewhere (nats-py would follow it)."""
    other = await rt.js.create_object_store("elsewhere")
    await other.put("big", bytes(200_000))
    name = "linked"
    meta = {
        "name": name,
        "bucket": UPLOADS_BUCKET,
        "nuid": "",
        "size": 0,
        "chunks": 0,
        "options": {"link": {"bucket": "elsewhere", "name": "big"}},
    }
    subject = f"$O.{UPLOADS_BUCKET}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"
    await rt.js.publish(subject, json.dumps(meta).encode(), headers={"Nats-Rollup": "sub"})
    return uploads.PREFIX + name


async def run_job_from_bus(rt: Runtime, source: str) -> Final | Failed:
    """Publish a job straight on ``scribe.jobs.submitted``, as an integrator would, and wait for its end."""
    job_id = uuid.uuid4().hex
    sub = await rt.js.subscribe(subjects.events(job_id), ordered_consumer=True)
    try:
        job = JobSubmitted(job_id=job_id, source=source)
        await bus.publish(rt.js, subjects.JOBS_SUBMITTED, job, msg_id=job_id)
        while True:
            event = job_event_decoder.decode((await sub.next_msg(timeout=120)).data)
            if isinstance(event, Final | Failed):
                return event
    finally:
        await sub.unsubscribe()


async def test_an_empty_transcript_fails_the_job_with_the_input_warnings(
    settings, nats_url, database_url, pool, job_id: str
) -> None:
    cfg = _settings(settings, nats_url, database_url)
    async with runtime(cfg, names=["romanizer"]) as rt:
        await rt.start(services("romanizer"))
        await repo.create_job(pool, job_id, "upload:x", user_id=None, options=JobOptions())
        sub = await rt.js.subscribe(subjects.events(job_id), ordered_consumer=True)
        nothing = ChunkTranscribed(
            job_id=job_id, seq=0, offset=0.0, duration=9.0, segments=[], usage=Usage("local", "whisper-base", 9.0, 0.0)
        )
        warning = "The file says it lasts 40 seconds but stops after 9 seconds."
        ended = InputEnded(job_id=job_id, total_chunks=1, duration=9.0, warnings=[warning])
        for event, msg_id in ((nothing, f"{job_id}:0"), (ended, f"{job_id}:end")):
            await bus.publish(rt.js, subjects.segments(job_id), event, msg_id=msg_id)
        while not isinstance(event := job_event_decoder.decode((await sub.next_msg(timeout=30)).data), Final | Failed):
            pass
        await sub.unsubscribe()
    assert isinstance(event, Failed)
    assert event.reason == f"{NOTHING_HEARD} {warning}"
    job = await repo.get_job(pool, job_id)
    assert job is not None and job.status == "failed" and job.warnings == [warning]


async def _job_source(database_url: str, job_id: str) -> str:
    connection = await asyncpg.connect(database_url)
    try:
        return str(await connection.fetchval("SELECT source FROM jobs WHERE id = $1", job_id))
    finally:
        await connection.close()


def test_truncated_mp3_keeps_what_it_heard_from_the_command_line(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    truncated = media.make_truncated(tmp_path, ".mp3", keep=0.6)  # 18 of the clip's 31 seconds
    out = tmp_path / "out.srt"
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("SCRIBE_")},
        "SCRIBE_NATS_URL": nats_url,
        "SCRIBE_DATABASE_URL": database_url,
        "SCRIBE_DATA_DIR": str(tmp_path / "data"),
        "SCRIBE_CHUNK_MIN_S": "8",
        "SCRIBE_CHUNK_MAX_S": "16",
    }
    done = scribe_cli("transcribe", str(truncated), "-q", "-f", "srt", "-o", str(out), env=env)
    assert done.returncode == 0, done.stderr
    # On shared servers another streamer may take the job: the CLI sends the file as an upload.
    job_id = re.search(r"job ([0-9a-f]{32})", done.stderr)
    assert job_id is not None, done.stderr
    source = asyncio.run(_job_source(database_url, job_id[1]))
    assert source.startswith(uploads.PREFIX), source
    assert "scribe: warning: The file says it lasts 31 seconds but stops after 18 seconds" in done.stderr
    assert "Traceback" not in done.stderr
    assert "-->" in out.read_text(encoding="utf-8")

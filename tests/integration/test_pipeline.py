"""The whole pipeline through real NATS JetStream, PostgreSQL, faster-whisper and PyCantonese."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import pytest

from core import bus, subjects
from core.messages import AudioChunk, Failed, Final, Partial
from core.settings import Settings
from scribe import client
from scribe.runtime import SERVICES, runtime, services
from store import repo
from tests import media
from tests.helpers import kill_while_it_holds_a_chunk, run_job, service_process
from tests.paths import AUDIO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CJK = re.compile(r"[\u4e00-\u9fff]")
CLIP = AUDIO / "sherpa_yue-6.wav"  # 30.6 s: at least two chunks with the tests' 8-16 s cuts


def _settings(settings: Settings, nats_url: str, database_url: str, **changes: object) -> Settings:
    return settings.with_(nats_url=nats_url, database_url=database_url, **changes)


async def test_file_becomes_romanized_transcript_streamed_in_order(settings, nats_url, database_url, pool) -> None:
    cfg = _settings(settings, nats_url, database_url, chunk_min_s=8.0, chunk_max_s=16.0)
    async with runtime(cfg) as rt:
        await rt.start(SERVICES)
        job = await asyncio.wait_for(run_job(rt, str(CLIP)), timeout=180)
        # A follower that resumes after line 1 gets every later line once, and the same outcome.
        resumed = [event async for event in client.follow(rt.js, job.job_id, after=1)]
    outcome = job.outcome
    assert isinstance(outcome, Final), outcome
    transcript = await repo.transcript(pool, job.job_id)
    assert transcript is not None
    assert outcome.segment_count == len(transcript.segments) > 0
    # At least two chunks, and the lines were streamed before the final event, as stored.
    chunk_seqs = [s.chunk_seq for s in transcript.segments]
    assert chunk_seqs == sorted(chunk_seqs) and chunk_seqs[-1] >= 1
    assert sum(isinstance(event, Partial) for event in job.events) >= 2
    assert job.lines == transcript.segments
    assert len(transcript.segments) >= 3
    assert [s for e in resumed if isinstance(e, Partial) for s in e.segments] == transcript.segments[2:]
    assert resumed[-1] == outcome
    starts = [s.start for s in transcript.segments]
    assert starts == sorted(starts) and transcript.segments[-1].end <= 31.5
    text = "".join(s.text for s in transcript.segments)
    assert len(CJK.findall(text)) > 40
    assert "廣東話" in text
    for segment in transcript.segments:
        assert segment.jyutping and re.search(r"[a-z]+[1-6]", segment.jyutping)
        assert segment.yale and segment.yale != segment.jyutping
        assert "".join(w.text for w in segment.words).replace(" ", "") == segment.text.replace(" ", "")
    assert [s.seq for s in transcript.segments] == list(range(len(transcript.segments)))
    assert transcript.usage.backend == "local" and transcript.usage.billed_seconds > 20


async def test_duplicate_publish_is_dropped_by_msg_id(settings, nats_url, database_url) -> None:
    cfg = _settings(settings, nats_url, database_url)
    async with runtime(cfg) as rt:
        chunk = AudioChunk(job_id=uuid.uuid4().hex, seq=0, offset=0.0, duration=1.0, codec="opus", audio=b"x")
        first = await bus.publish(rt.js, subjects.CHUNKS, chunk, msg_id=f"{chunk.job_id}:0")
        second = await bus.publish(rt.js, subjects.CHUNKS, chunk, msg_id=f"{chunk.job_id}:0")
        info = await rt.js.stream_info(rt.topology.transcriber.stream.name)
    assert not first.duplicate and second.duplicate
    assert info.state.messages == 1


async def test_bad_inputs_fail_with_reasons_and_leave_a_good_job_alone(
    settings, nats_url, database_url, pool, tmp_path: Path
) -> None:
    cfg = _settings(settings, nats_url, database_url, max_duration_s=60.0)
    bad = {
        "missing": str(tmp_path / "nothing-here.wav"),
        "not media": str(media.make_text_file(tmp_path)),
        "png": str(media.make_png(tmp_path)),
        "no audio": str(media.make_video_only(tmp_path)),
        "silence": str(media.make_silence_file(tmp_path)),
        "too long": str(media.make_long(tmp_path, 75.0)),
        "unreachable": "http://127.0.0.1:9/video.mp4",
    }
    async with runtime(cfg) as rt:
        await rt.start(SERVICES)
        good = asyncio.create_task(run_job(rt, str(AUDIO / "sherpa_yue-3.wav")))
        results = await asyncio.wait_for(asyncio.gather(*(run_job(rt, src) for src in bad.values())), timeout=120)
        good_outcome = (await asyncio.wait_for(good, timeout=120)).outcome
    reasons = {}
    for name, followed in zip(bad, results, strict=True):
        outcome = followed.outcome
        assert isinstance(outcome, Failed), (name, outcome)
        job = await repo.get_job(pool, followed.job_id)
        assert job is not None and job.status == "failed" and job.reason == outcome.reason
        reasons[name] = outcome.reason.lower()
    assert "there is no file at" in reasons["missing"]
    assert "picture" in reasons["png"]
    assert "silen" in reasons["silence"]
    assert "long" in reasons["too long"] or "limit" in reasons["too long"]
    assert "audio" in reasons["no audio"]
    assert len(set(reasons.values())) == len(reasons), "every failure should say what went wrong"
    assert isinstance(good_outcome, Final) and good_outcome.segment_count > 0


async def test_transcriber_killed_mid_chunk_loses_nothing_and_duplicates_nothing(
    settings, nats_url, database_url, pool, data_dir
) -> None:
    cfg = _settings(settings, nats_url, database_url, ack_wait_s=4.0, chunk_min_s=8.0, chunk_max_s=16.0)
    async with runtime(cfg) as rt:
        await rt.start(services("streamer", "romanizer"))
        victim = service_process("transcriber", nats_url, database_url, data_dir, ack_wait_s="4")
        try:
            job = asyncio.create_task(run_job(rt, str(CLIP)))
            await kill_while_it_holds_a_chunk(rt, victim)
            await rt.start(services("transcriber"))
            followed = await asyncio.wait_for(job, timeout=180)
            consumer = rt.topology.transcriber
            info = await rt.js.consumer_info(consumer.stream.name, consumer.durable)
        finally:
            if victim.poll() is None:
                victim.kill()
    job_id, outcome = followed.job_id, followed.outcome
    assert isinstance(outcome, Final), outcome
    job_row = await repo.get_job(pool, job_id)
    assert job_row is not None and job_row.total_chunks is not None
    # More deliveries than chunks: the killed worker's chunk went out again.
    assert info.delivered.consumer_seq > job_row.total_chunks
    rows = await pool.fetch("SELECT chunk_seq, count(*) FROM segments WHERE job_id = $1 GROUP BY chunk_seq", job_id)
    assert sorted(r["chunk_seq"] for r in rows) == list(range(job_row.total_chunks))
    texts = await pool.fetch("SELECT text FROM segments WHERE job_id = $1", job_id)
    assert len(texts) == outcome.segment_count


async def test_chunk_whose_last_delivery_dies_fails_the_job_instead_of_hanging(
    settings, nats_url, database_url, pool, data_dir
) -> None:
    # One delivery allowed: when its worker dies, JetStream gives up and says so in an advisory.
    cfg = _settings(settings, nats_url, database_url, ack_wait_s=3.0, max_deliver=1, chunk_min_s=8.0, chunk_max_s=16.0)
    async with runtime(cfg) as rt:
        await rt.start(services("streamer", "romanizer"))
        victim = service_process("transcriber", nats_url, database_url, data_dir, ack_wait_s="3", max_deliver="1")
        try:
            job = asyncio.create_task(run_job(rt, str(CLIP)))
            await kill_while_it_holds_a_chunk(rt, victim)
            await rt.start(services("transcriber"))
            followed = await asyncio.wait_for(job, timeout=60)
        finally:
            if victim.poll() is None:
                victim.kill()
    job_id, outcome = followed.job_id, followed.outcome
    assert isinstance(outcome, Failed)
    assert "stopped responding" in outcome.reason
    dead = await pool.fetch("SELECT deliveries, reason FROM dead_letters WHERE job_id = $1", job_id)
    assert len(dead) >= 1 and dead[0]["deliveries"] == 1

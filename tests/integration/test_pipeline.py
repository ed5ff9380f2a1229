"""The whole pipeline through real NATS JetStream, PostgreSQL, faster-whisper and PyCantonese."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from scribe import bus, subjects
from scribe.cli import Display, run_job
from scribe.messages import AudioChunk, Failed, Final, JobOptions, JobSubmitted, job_event_decoder
from scribe.runtime import SERVICES, Runtime, runtime
from scribe.settings import Settings
from store import repo
from tests import media
from tests.paths import AUDIO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CJK = re.compile(r"[\u4e00-\u9fff]")
CLIP = AUDIO / "sherpa_yue-6.wav"  # 30.6 s: at least two chunks with the tests' 8-16 s cuts


class Lines(Display):
    """Collects what the CLI would print, with the time each line arrived."""

    def __init__(self) -> None:
        super().__init__(io.StringIO(), quiet=True)
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)


def _settings(settings: Settings, nats_url: str, database_url: str, **changes: object) -> Settings:
    return settings.with_(nats_url=nats_url, database_url=database_url, **changes)


async def test_file_becomes_romanized_transcript_streamed_in_order(settings, nats_url, database_url, pool) -> None:
    cfg = _settings(settings, nats_url, database_url, chunk_min_s=8.0, chunk_max_s=16.0)
    display = Lines()
    async with runtime(cfg) as rt:
        await rt.start(SERVICES)
        job_id, outcome = await asyncio.wait_for(
            run_job(rt, str(CLIP), options=JobOptions(), display=display), timeout=180
        )
    assert isinstance(outcome, Final), outcome
    transcript = await repo.transcript(pool, job_id)
    assert transcript is not None
    assert outcome.segment_count == len(transcript.segments) > 0
    # At least two chunks, and partial lines arrived before the final event.
    chunk_seqs = [s.chunk_seq for s in transcript.segments]
    assert chunk_seqs == sorted(chunk_seqs) and chunk_seqs[-1] >= 1
    assert display.lines, "no partial lines were streamed"
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
        info = await rt.js.stream_info(subjects.STREAM_CHUNKS)
    assert not first.duplicate and second.duplicate
    assert info.state.messages == 1


async def test_bad_inputs_fail_with_reasons_and_leave_a_good_job_alone(
    settings, nats_url, database_url, pool, tmp_path: Path
) -> None:
    cfg = _settings(settings, nats_url, database_url, max_duration_s=60.0)
    bad = {
        "missing": str(tmp_path / "nothing-here.wav"),
        "not media": str(media.make_text_file(tmp_path)),
        "truncated": str(media.make_truncated(tmp_path)),
        "no audio": str(media.make_video_only(tmp_path)),
        "silence": str(media.make_silence_file(tmp_path)),
        "too long": str(media.make_long(tmp_path, 75.0)),
        "unreachable": "http://127.0.0.1:9/video.mp4",
    }
    async with runtime(cfg) as rt:
        await rt.start(SERVICES)
        good = asyncio.create_task(run_job(rt, str(AUDIO / "sherpa_yue-3.wav"), options=JobOptions(), display=Lines()))
        results = await asyncio.wait_for(
            asyncio.gather(*(run_job(rt, src, options=JobOptions(), display=Lines()) for src in bad.values())),
            timeout=120,
        )
        good_id, good_outcome = await asyncio.wait_for(good, timeout=120)
    reasons = {}
    for name, (job_id, outcome) in zip(bad, results, strict=True):
        assert isinstance(outcome, Failed), (name, outcome)
        job = await repo.get_job(pool, job_id)
        assert job is not None and job.status == "failed" and job.reason == outcome.reason
        reasons[name] = outcome.reason.lower()
    assert "could not be found" in reasons["missing"]
    assert "silen" in reasons["silence"]
    assert "long" in reasons["too long"] or "limit" in reasons["too long"]
    assert "audio" in reasons["no audio"]
    assert len(set(reasons.values())) == len(reasons), "every failure should say what went wrong"
    assert isinstance(good_outcome, Final) and good_outcome.segment_count > 0


def _transcriber_process(nats_url: str, database_url: str, data_dir: Path, **settings: str) -> subprocess.Popen[bytes]:
    """A transcriber in its own process; its settings must match the test's (it updates the consumer)."""
    env = {
        **os.environ,
        "SCRIBE_NATS_URL": nats_url,
        "SCRIBE_DATABASE_URL": database_url,
        "SCRIBE_DATA_DIR": str(data_dir),
        "SCRIBE_ACK_WAIT_S": "4",
        "SCRIBE_ASR_THREADS": "1",
        "SCRIBE_MAX_IN_FLIGHT": "1",
        "HF_HUB_OFFLINE": "1",
        **{f"SCRIBE_{name.upper()}": value for name, value in settings.items()},
    }
    return subprocess.Popen([sys.executable, "-m", "transcriber"], env=env, stderr=subprocess.DEVNULL)


async def _kill_while_it_holds_a_chunk(rt: Runtime, victim: subprocess.Popen[bytes]) -> None:
    """Wait until the worker holds a chunk (delivered, not acked), then kill it hard."""
    for _ in range(600):
        info = await rt.js.consumer_info(subjects.STREAM_CHUNKS, subjects.CONSUMER_TRANSCRIBER)
        if info.num_ack_pending >= 1:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the transcriber never took a chunk")
    victim.send_signal(signal.SIGKILL)
    await asyncio.to_thread(victim.wait, 10)


async def test_transcriber_killed_mid_chunk_loses_nothing_and_duplicates_nothing(
    settings, nats_url, database_url, pool, data_dir
) -> None:
    cfg = _settings(settings, nats_url, database_url, ack_wait_s=4.0, chunk_min_s=8.0, chunk_max_s=16.0)
    async with runtime(cfg) as rt:
        await rt.start(["streamer", "romanizer"])
        victim = _transcriber_process(nats_url, database_url, data_dir)
        try:
            job = asyncio.create_task(run_job(rt, str(CLIP), options=JobOptions(), display=Lines()))
            await _kill_while_it_holds_a_chunk(rt, victim)
            await rt.start(["transcriber"])
            job_id, outcome = await asyncio.wait_for(job, timeout=180)
            info = await rt.js.consumer_info(subjects.STREAM_CHUNKS, subjects.CONSUMER_TRANSCRIBER)
        finally:
            if victim.poll() is None:
                victim.kill()
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
        await rt.start(["streamer", "romanizer"])
        victim = _transcriber_process(nats_url, database_url, data_dir, ack_wait_s="3", max_deliver="1")
        try:
            job = asyncio.create_task(run_job(rt, str(CLIP), options=JobOptions(), display=Lines()))
            await _kill_while_it_holds_a_chunk(rt, victim)
            await rt.start(["transcriber"])
            job_id, outcome = await asyncio.wait_for(job, timeout=60)
        finally:
            if victim.poll() is None:
                victim.kill()
    assert isinstance(outcome, Failed)
    assert "stopped responding" in outcome.reason
    dead = await pool.fetch("SELECT deliveries, reason FROM dead_letters WHERE job_id = $1", job_id)
    assert len(dead) >= 1 and dead[0]["deliveries"] == 1


async def test_job_published_straight_to_nats_is_transcribed(settings, nats_url, database_url, pool) -> None:
    cfg = _settings(settings, nats_url, database_url)
    job_id = uuid.uuid4().hex
    async with runtime(cfg) as rt:
        await rt.start(SERVICES)
        sub = await rt.js.subscribe(subjects.events(job_id), ordered_consumer=True)
        submitted = JobSubmitted(job_id=job_id, source=str(AUDIO / "sherpa_yue-4.wav"))
        await bus.publish(rt.js, subjects.JOBS_SUBMITTED, submitted, msg_id=job_id)
        while True:
            event = job_event_decoder.decode((await sub.next_msg(timeout=120)).data)
            if isinstance(event, Final | Failed):
                break
        await sub.unsubscribe()
    assert isinstance(event, Final) and event.segment_count >= 1
    transcript = await repo.transcript(pool, job_id)
    assert transcript is not None and "香港" in "".join(s.text for s in transcript.segments)

"""The paid API kept busy at its limit: speech alone sent and its times put back on the timeline, one limit on
calls in flight over every transcriber, and a retried call billed once (a crash before the ack, a 429).

The paid API is a FAKE OpenAI HTTP server (tests/fake_openai.py) answering with the real local model; NATS
JetStream, PostgreSQL, the streamer, the transcribers and the romanizer are real.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core import bus, subjects
from core.messages import AudioChunk, ChunkTranscribed, Final, segments_event_decoder
from core.process import Runtime, connected
from core.settings import Settings
from core.topology import Topology
from scribe.runtime import SERVICES, runtime
from store import repo
from store.db import create_pool
from tests.fake_openai import FakeOpenAITranscriptionServer, encode_ogg_opus
from tests.helpers import run_job
from tests.integration import test_cost_guard, test_openai_backend
from tests.media import load_samples, silence, write_audio
from tests.paths import AUDIO
from transcriber.backends import create_backend
from transcriber.service import Transcriber

pytestmark = pytest.mark.integration

CLIP = AUDIO / "sherpa_yue-4.wav"  # 3.2 s: 香港嘅消費市場從此不一樣
WAIT_S = 60.0

# The fake OpenAI server (the local model behind the HTTP boundary), fresh for each test.
fake_openai, _fresh_fake = test_openai_backend.fake_openai, test_openai_backend._fresh_fake
_job, _settled, _ledger = test_cost_guard._job, test_cost_guard._settled, test_cost_guard._ledger


@pytest.fixture
def cfg(settings: Settings, nats_url: str, database_url: str, fake_openai: FakeOpenAITranscriptionServer) -> Settings:
    return fake_openai.settings_for(settings, nats_url=nats_url, database_url=database_url)


# --- speech alone sent, its times on the timeline ---------------------------------------------


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[float, float]]]:
    """Three clips with 2.5 s of silence between them (14 s): the file, and where each clip is in it."""
    clips = [load_samples(AUDIO / "sherpa_yue-0.wav"), load_samples(AUDIO / "sherpa_yue-11.wav"), load_samples(CLIP)]
    parts, spans, at = [], [], 0
    for clip in clips:
        parts += [clip, silence(2.5)]
        spans.append((at / 16000, (at + len(clip)) / 16000))
        at += len(clip) + len(parts[-1])
    path = write_audio(tmp_path_factory.mktemp("talk") / "talk.wav", np.concatenate(parts[:-1]))
    return path, spans


async def test_fake_openai_is_sent_speech_alone_and_the_lines_come_back_where_they_were_said(
    cfg: Settings, fake_openai: FakeOpenAITranscriptionServer, talk: tuple[Path, list[tuple[float, float]]]
) -> None:
    path, clips = talk
    # One chunk (10-20 s, the default): the first chunk is not cut short here.
    async with runtime(cfg.with_(chunk_first_max_s=0.0)) as rt:
        await rt.start(SERVICES)
        job = await asyncio.wait_for(run_job(rt, str(path)), WAIT_S)

    outcome = job.outcome
    assert isinstance(outcome, Final), outcome
    assert len(fake_openai.requests) == 1
    assert outcome.duration == pytest.approx(clips[-1][1], abs=0.01)
    # Of the 5 s of silence between the clips, 0.1 s a side was sent.
    assert outcome.usage.billed_seconds <= outcome.duration - 4
    # What was said after each pause was heard 2.3 s earlier in what was sent, for each pause before it: it
    # is put back where it was said, one line per clip (the local model gives a segment each).
    assert len(job.lines) == 3
    for line, (start, end) in zip(job.lines, clips, strict=True):
        assert start - 0.3 <= line.start < line.end <= end + 0.3, (line, start, end)
    starts = [c.start for line in job.lines for c in line.chars if c.char == "香" and c.start is not None]
    assert starts and clips[2][0] <= starts[0] <= clips[2][0] + 1.0, (starts, clips)


# --- one limit on calls in flight over every transcriber --------------------------------------


async def test_an_existing_chunks_consumer_is_brought_to_the_api_limit_and_back(nats_url: str) -> None:
    nc = await bus.connect(nats_url, name="test")
    try:
        js = nc.jetstream()
        local = Topology.from_settings(Settings())
        await bus.ensure_topology(js, local)
        info = await js.consumer_info("SCRIBE_CHUNKS", "transcriber")
        assert info.config.max_ack_pending == 256
        # A transcriber of an API backend starts: the consumer every transcriber shares takes its limit.
        api = Topology.from_settings(Settings(asr_backend="openai", api_max_in_flight=12))
        await bus.ensure_topology(js, api, owned=["transcriber"])
        info = await js.consumer_info("SCRIBE_CHUNKS", "transcriber")
        assert info.config.max_ack_pending == 12
        await bus.ensure_topology(js, local, owned=["transcriber"])
        assert (await js.consumer_info("SCRIBE_CHUNKS", "transcriber")).config.max_ack_pending == 256
    finally:
        await nc.close()


class _CallsInFlight:
    """Counts the calls the fake is answering at once (it answers each in a thread of its own)."""

    def __init__(self, fake: FakeOpenAITranscriptionServer) -> None:
        self.now = self.most = 0
        self._lock = threading.Lock()
        self._transcribe = fake._transcribe

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            return self._transcribe(*args, **kwargs)
        finally:
            with self._lock:
                self.now -= 1


@contextlib.asynccontextmanager
async def _transcriber(cfg: Settings) -> AsyncIterator[Runtime]:
    """A transcriber process: its own connections and its own service."""
    async with connected(cfg, "test-transcriber", create_pool, services=["transcriber"]) as rt:
        backend = create_backend(cfg)
        service = Transcriber(cfg, rt.nc, rt.pool, rt.topology.transcriber, backend)
        rt.services.append(service)
        rt.tasks.append(asyncio.create_task(service.run(rt.stop)))
        yield rt


async def test_two_transcribers_share_one_limit_on_calls_to_fake_openai(
    cfg: Settings, fake_openai: FakeOpenAITranscriptionServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = _CallsInFlight(fake_openai)
    monkeypatch.setattr(fake_openai, "_transcribe", counter)
    # Each process would take 3 chunks at once; the cluster's limit is 2.
    cfg = cfg.with_(api_max_in_flight=2, max_in_flight=3)
    async with _transcriber(cfg) as rt, _transcriber(cfg):
        audio, duration = encode_ogg_opus(CLIP)
        jobs = [await _job(rt) for _ in range(8)]
        for job_id in jobs:
            chunk = AudioChunk(job_id=job_id, seq=0, offset=0.0, duration=duration, codec="opus", audio=audio)
            await bus.publish(rt.js, subjects.CHUNKS, chunk, msg_id=f"{job_id}:0")
        await _settled(rt)
    assert len(fake_openai.requests) == 8
    assert 1 <= counter.most <= 2


# --- a retried call is billed once ------------------------------------------------------------


class _DiesBeforeItsAck:
    """A chunk's message as a transcriber that dies before its ack sees it: the ack never reaches JetStream."""

    def __init__(self, msg: Any) -> None:
        self._msg = msg
        self.answered = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._msg, name)

    async def ack(self) -> None:
        self.answered = True


@pytest.fixture
def seconds() -> float:
    """How much of the clip the test's chunk holds: its own length, so no other test's answer is in the cache."""
    return random.uniform(3.05, 3.15)


async def test_a_chunk_answered_by_fake_openai_then_redelivered_after_a_crash_is_billed_once(
    cfg: Settings, fake_openai: FakeOpenAITranscriptionServer, seconds: float
) -> None:
    cfg = cfg.with_(ack_wait_s=2.0, max_in_flight=1, chunk_cache=False)  # the cache off: the job's own answers
    async with connected(cfg, "test-dying-transcriber", create_pool) as first:
        job_id = await _job(first)
        audio, duration = encode_ogg_opus(CLIP, max_seconds=seconds)
        chunk = AudioChunk(job_id=job_id, seq=0, offset=0.0, duration=duration, codec="opus", audio=audio)
        await bus.publish(first.js, subjects.CHUNKS, chunk, msg_id=f"{job_id}:0")
        consumer = first.topology.transcriber
        sub = await first.js.pull_subscribe_bind(durable=consumer.durable, stream=consumer.stream.name)
        (msg,) = await sub.fetch(1, timeout=WAIT_S)
        dying = _DiesBeforeItsAck(msg)
        service = Transcriber(cfg, first.nc, first.pool, consumer, create_backend(cfg))
        await service.handle(dying)
        await service.close()
        assert dying.answered and len(fake_openai.requests) == 1
        # The process is gone: its connection closes without the ack.

    async with _transcriber(cfg) as second:  # JetStream delivers the chunk again after ack_wait
        await _settled(second)
        deliveries = (await second.js.consumer_info(consumer.stream.name, consumer.durable)).delivered.consumer_seq
        ledger = await _ledger(second, job_id)

    assert deliveries == 2  # the one chunk, to the process that died, then to the next
    assert len(fake_openai.requests) == 1  # the second delivery found the first's answer
    assert ledger == [("openai", "whisper-1", 3.0, 0.0003, False)]


async def test_a_429_then_a_success_from_fake_openai_is_billed_once(
    cfg: Settings, fake_openai: FakeOpenAITranscriptionServer, seconds: float
) -> None:
    fake_openai.fail_next("rate_limit", 1, retry_after=0.5)
    async with _transcriber(cfg.with_(max_in_flight=1)) as rt:
        job_id = await _job(rt)
        sub = await rt.nc.subscribe(subjects.segments(job_id))
        audio, duration = encode_ogg_opus(CLIP, max_seconds=seconds)
        chunk = AudioChunk(job_id=job_id, seq=0, offset=0.0, duration=duration, codec="opus", audio=audio)
        await bus.publish(rt.js, subjects.CHUNKS, chunk, msg_id=f"{job_id}:0")
        event = segments_event_decoder.decode((await sub.next_msg(timeout=WAIT_S)).data)
        await _settled(rt)
        ledger = await _ledger(rt, job_id)
        usage = await repo.job_usage(rt.pool, job_id)

    assert isinstance(event, ChunkTranscribed) and "香港" in "".join(s.text for s in event.segments)
    assert [r.status for r in fake_openai.requests] == [429, 200]
    assert ledger == [("openai", "whisper-1", 3.0, 0.0003, False)]
    assert usage.billed_seconds == 3.0

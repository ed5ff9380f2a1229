"""The cost guard in the transcriber: the chunk cache, the ledger billed once per chunk, the budget guard's
fallbacks and the circuit breaker; and the gateway refusing new jobs past the budget.

The paid API is a FAKE OpenAI HTTP server (tests/fake_openai.py) answering with the real local model;
NATS JetStream, PostgreSQL, the transcriber, the romanizer and the gateway are real. The budget guard
is given a day long past, with its own ledger rows, so the figures are the test's whatever else the
session database holds (the gateway's refusal reads today's ledger: that test adds one row of $0.000001
to it and removes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from core import bus, subjects
from core.messages import (
    AudioChunk,
    ChunkTranscribed,
    Final,
    InputEnded,
    JobOptions,
    Usage,
    segments_event_decoder,
)
from core.process import Runtime, connected
from core.settings import Settings
from gateway.app import create_app
from romanizer.service import RomanizerService
from scribe import client
from store import cache as chunk_cache
from store import repo
from store.db import create_pool
from tests.fake_openai import (
    FakeOpenAITranscriptionServer,
    encode_ogg_opus,
    whisper_model_for_tests,
)
from tests.integration import test_openai_backend
from tests.paths import AUDIO
from transcriber.backends import create_backend
from transcriber.breaker import CircuitBreaker
from transcriber.fallback import DaySpend, Router
from transcriber.local import LocalBackend
from transcriber.service import Transcriber

pytestmark = pytest.mark.integration

CLIP = AUDIO / "sherpa_yue-4.wav"  # 3.2 s: 香港嘅消費市場從此不一樣
WAIT_S = 60.0


# The fake OpenAI server (the local model behind the HTTP boundary), fresh for each test.
fake_openai, _fresh_fake = test_openai_backend.fake_openai, test_openai_backend._fresh_fake


@pytest.fixture
def cfg(settings: Settings, nats_url: str, database_url: str, fake_openai: FakeOpenAITranscriptionServer) -> Settings:
    # One chunk at a time: a redelivery comes after the first delivery's work, as after a lost ack.
    return fake_openai.settings_for(
        settings, nats_url=nats_url, database_url=database_url, max_in_flight=1, chunk_cache=True
    )


@pytest.fixture
def seconds() -> float:
    """How much of the clip this test's chunks hold: its own length, so no other test's answer is in the cache
    (3.05 to 3.15 s: billed 3 s)."""
    return random.uniform(3.05, 3.15)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _local_model(settings: Settings) -> LocalBackend:
    """The real local backend on the model the fake already loaded (the fallback's load, without its seconds)."""
    return LocalBackend(whisper_model_for_tests(), settings)


@contextlib.asynccontextmanager
async def transcribing(
    cfg: Settings, *, romanizer: bool = False, day: date | None = None, **options: Any
) -> AsyncIterator[tuple[Runtime, Router]]:
    """A transcriber and, if asked, a romanizer, on the test's servers; its router takes ``options`` and
    counts the budget on ``day`` (None: today)."""
    async with connected(cfg, "test", create_pool) as rt:
        backend = create_backend(cfg)
        if day is not None:
            options["spend"] = DaySpend(rt.pool, cfg.daily_budget_usd, today=lambda: day)
        router = Router(cfg, rt.pool, backend, **options)
        service = Transcriber(cfg, rt.nc, rt.pool, rt.topology.transcriber, backend, router=router)
        rt.services.append(service)
        rt.tasks.append(asyncio.create_task(service.run(rt.stop)))
        if romanizer:
            await rt.start({"romanizer": RomanizerService.open})
        yield rt, router


async def _job(rt: Runtime, prompt: str | None = None) -> str:
    job_id = uuid.uuid4().hex
    await repo.create_job(rt.pool, job_id, str(CLIP), user_id=None, options=JobOptions(prompt=prompt))
    return job_id


def _chunk(job_id: str, seconds: float, *, offset: float = 0.0) -> AudioChunk:
    audio, duration = encode_ogg_opus(CLIP, max_seconds=seconds)  # new bytes each time: Ogg's serial is random
    return AudioChunk(job_id=job_id, seq=0, offset=offset, duration=duration, codec="opus", audio=audio)


async def _transcribed(rt: Runtime, chunk: AudioChunk, msg_id: str | None = None) -> ChunkTranscribed:
    """Publish the chunk and wait for its transcript."""
    sub = await rt.nc.subscribe(subjects.segments(chunk.job_id))
    try:
        await bus.publish(rt.js, subjects.CHUNKS, chunk, msg_id=msg_id or uuid.uuid4().hex)
        event = segments_event_decoder.decode((await sub.next_msg(timeout=WAIT_S)).data)
    finally:
        await sub.unsubscribe()
    assert isinstance(event, ChunkTranscribed), event
    return event


async def _settled(rt: Runtime) -> None:
    """Every chunk published so far has been handled (acked)."""
    consumer = rt.topology.transcriber

    async def wait() -> None:
        while True:
            info = await rt.js.consumer_info(consumer.stream.name, consumer.durable)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
            await asyncio.sleep(0.05)

    await asyncio.wait_for(wait(), WAIT_S)


async def _ledger(rt: Runtime, job_id: str) -> list[tuple[str, str, float, float, bool]]:
    rows = await rt.pool.fetch(
        "SELECT backend, model, billed_seconds, cost_usd, cache_hit FROM usage WHERE job_id = $1 ORDER BY id", job_id
    )
    return [(r["backend"], r["model"], r["billed_seconds"], float(r["cost_usd"]), r["cache_hit"]) for r in rows]


# --- the chunk cache ------------------------------------------------------------------------------


async def test_a_repeated_chunk_costs_nothing_and_is_marked_a_hit_with_fake_openai(
    cfg: Settings, fake_openai: FakeOpenAITranscriptionServer, seconds: float
) -> None:
    async with transcribing(cfg) as (rt, _):
        first_job, again_job = await _job(rt), await _job(rt)
        first = await _transcribed(rt, _chunk(first_job, seconds))
        again = await _transcribed(rt, _chunk(again_job, seconds, offset=10.0))
        other_prompt = await _transcribed(rt, _chunk(await _job(rt, prompt="陳大文"), seconds))

        assert len(fake_openai.requests) == 2  # the repeat was not sent; another prompt is another question
        assert not first.usage.cache_hit and first.usage.cost_usd > 0
        assert again.usage == Usage(
            backend="openai", model="whisper-1", billed_seconds=0.0, cost_usd=0.0, cache_hit=True
        )
        assert [(s.text, round(s.start + 10.0, 3)) for s in first.segments] == [
            (s.text, s.start) for s in again.segments
        ]
        assert "香港" in "".join(s.text for s in again.segments)
        assert not other_prompt.usage.cache_hit
        assert await _ledger(rt, first_job) == [("openai", "whisper-1", 3.0, 0.0003, False)]
        assert await _ledger(rt, again_job) == [("openai", "whisper-1", 0.0, 0.0, True)]
        assert (await repo.job_usage(rt.pool, again_job)).cache_hit is True
        saved = await rt.pool.fetchval("SELECT saved_usd FROM usage WHERE job_id = $1", again_job)
        assert float(saved) == 0.0003  # what the first call was billed


async def test_purging_a_job_removes_its_chunk_cache_entries_with_fake_openai(
    cfg: Settings, fake_openai: FakeOpenAITranscriptionServer, seconds: float
) -> None:
    async with transcribing(cfg) as (rt, _):
        purged = await _job(rt)
        await _transcribed(rt, _chunk(purged, seconds))
        assert await chunk_cache.entries_of(rt.pool, purged) == 1
        await repo.purge_job(rt.pool, purged)
        assert await chunk_cache.entries_of(rt.pool, purged) == 0
        after = await _transcribed(rt, _chunk(await _job(rt), seconds))
        assert not after.usage.cache_hit and len(fake_openai.requests) == 2  # heard afresh


# --- a retried call is billed once ----------------------------------------------------------------


@pytest.mark.parametrize("cache", [True, False], ids=["cache-on", "cache-off"])
async def test_a_redelivered_chunk_is_billed_once_with_fake_openai(
    cfg: Settings, fake_openai: FakeOpenAITranscriptionServer, seconds: float, cache: bool
) -> None:
    cfg = cfg.with_(chunk_cache=cache)
    async with transcribing(cfg) as (rt, _):
        job_id = await _job(rt)
        chunk = _chunk(job_id, seconds)
        # The same chunk twice, as JetStream redelivers one whose ack was lost (a redelivery has the same id
        # in the stream; two ids here, or the stream would drop the second).
        await bus.publish(rt.js, subjects.CHUNKS, chunk, msg_id=f"{job_id}:0:first")
        await bus.publish(rt.js, subjects.CHUNKS, chunk, msg_id=f"{job_id}:0:again")
        await _settled(rt)
        assert len(fake_openai.requests) == 1  # the second delivery found the first's answer
        assert await _ledger(rt, job_id) == [("openai", "whisper-1", 3.0, 0.0003, False)]

        # Recording the same call again changes nothing either.
        usage = Usage(backend="openai", model="whisper-1", billed_seconds=3.0, cost_usd=0.0003)
        await repo.record_usage(rt.pool, usage, job_id=job_id, chunk_seq=0, user_id=None)
        assert len(await _ledger(rt, job_id)) == 1

        other = await _transcribed(rt, _chunk(await _job(rt), seconds))
        assert other.usage.cache_hit is cache  # with the cache off, jobs share nothing
        assert len(fake_openai.requests) == (1 if cache else 2)


# --- the budget guard -----------------------------------------------------------------------------


@pytest.fixture
async def spent_day(pool: Any) -> AsyncIterator[date]:
    """A day long past, picked at random, whose ledger has $0.02 billed by 14:02 UTC (removed afterwards)."""
    day = date(1960, 1, 1) + timedelta(days=random.randrange(7000))
    user = f"budget-{uuid.uuid4().hex[:8]}"
    at = datetime.combine(day, time(14, 2, 30), tzinfo=UTC)
    await pool.executemany(
        "INSERT INTO usage (user_id, backend, model, billed_seconds, cost_usd, created_at)"
        " VALUES ($1, 'openai', 'whisper-1', $2, $3, $4)",
        [(user, 100.0, 0.01, at - timedelta(hours=3)), (user, 100.0, 0.01, at)],
    )
    try:
        yield day
    finally:
        await pool.execute("DELETE FROM usage WHERE user_id = $1", user)


async def test_past_the_budget_fake_openai_is_spared_and_the_local_model_finishes_the_job_and_says_so(
    cfg: Settings, fake_openai: FakeOpenAITranscriptionServer, seconds: float, spent_day: date
) -> None:
    cfg = cfg.with_(daily_budget_usd=0.015, fallback="local")
    loads: list[Settings] = []

    def load_local(settings: Settings) -> LocalBackend:
        loads.append(settings)
        return _local_model(settings)

    async with transcribing(cfg, romanizer=True, day=spent_day, load_local=load_local) as (rt, _):
        assert not loads  # not at start: only when a chunk needs it
        job_id = await _job(rt)
        done = await _transcribed(rt, _chunk(job_id, seconds))
        ended = InputEnded(job_id=job_id, total_chunks=1, duration=done.duration, warnings=["The input was cut."])
        await bus.publish(rt.js, subjects.segments(job_id), ended, msg_id=f"{job_id}:end")
        events = [event async for event in client.follow(rt.js, job_id)]
        job = await repo.get_job(rt.pool, job_id)

    assert fake_openai.requests == [] and len(loads) == 1
    assert (done.usage.backend, done.usage.model, done.usage.cost_usd) == ("local", "whisper-base", 0.0)
    assert "香港" in "".join(s.text for s in done.segments)
    warning = (
        "The daily budget of $0.015 was reached at 14:02 UTC: from then on this job was transcribed by "
        "the local model (whisper-base) instead of whisper-1 (the budget resets at midnight UTC)."
    )
    final = events[-1]
    assert isinstance(final, Final), final
    assert final.warnings == ["The input was cut.", warning]  # the input's warnings, then the switch
    assert job is not None and job.warnings == final.warnings  # what GET /v1/jobs/{id} answers


async def test_past_the_budget_fake_openai_is_asked_with_the_cheaper_model_and_the_job_says_so(
    cfg: Settings, fake_openai: FakeOpenAITranscriptionServer, seconds: float, spent_day: date
) -> None:
    cfg = cfg.with_(daily_budget_usd=0.015, fallback="model:gpt-4o-mini-transcribe")
    async with transcribing(cfg, day=spent_day) as (rt, _):
        job_id = await _job(rt)
        done = await _transcribed(rt, _chunk(job_id, seconds))
        job = await repo.get_job(rt.pool, job_id)

    assert [r.fields["model"] for r in fake_openai.requests] == ["gpt-4o-mini-transcribe"]
    assert (done.usage.model, done.usage.cost_usd) == ("gpt-4o-mini-transcribe", pytest.approx(3.0 / 60 * 0.003))
    assert job is not None and job.warnings == [
        "The daily budget of $0.015 was reached at 14:02 UTC: from then on this job was transcribed by "
        "gpt-4o-mini-transcribe instead of whisper-1 (the budget resets at midnight UTC)."
    ]


async def test_past_the_budget_with_refuse_jobs_in_flight_finish_on_fake_openai_and_new_ones_are_refused(
    cfg: Settings, fake_openai: FakeOpenAITranscriptionServer, seconds: float, spent_day: date, pool: Any
) -> None:
    cfg = cfg.with_(daily_budget_usd=0.000001, fallback="refuse")
    async with transcribing(cfg, day=spent_day) as (rt, _):
        job_id = await _job(rt)
        done = await _transcribed(rt, _chunk(job_id, seconds))
        job = await repo.get_job(rt.pool, job_id)
    assert done.usage.model == "whisper-1" and len(fake_openai.requests) == 1
    assert job is not None and job.warnings == []

    user = f"budget-{uuid.uuid4().hex[:8]}"  # today's ledger reaches the budget
    await pool.execute(
        "INSERT INTO usage (user_id, backend, model, billed_seconds, cost_usd)"
        " VALUES ($1, 'openai', 'whisper-1', 1, $2)",
        user,
        0.000001,
    )
    try:
        async with AsyncTestClient(app=create_app(cfg), base_url="http://127.0.0.1") as http:
            refused = await http.post("/v1/jobs", json={"url": "http://127.0.0.1:9/talk.mp3"})
    finally:
        await pool.execute("DELETE FROM usage WHERE user_id = $1", user)
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded" and "midnight UTC" in error["message"]
    assert 0 < int(refused.headers["retry-after"]) <= 86_400


# --- the circuit breaker --------------------------------------------------------------------------


async def test_when_fake_openai_keeps_failing_the_circuit_opens_to_the_fallback_and_closes_after_the_cool_down(
    cfg: Settings, fake_openai: FakeOpenAITranscriptionServer, seconds: float
) -> None:
    cfg = cfg.with_(fallback="model:gpt-4o-mini-transcribe")
    clock = FakeClock()
    fake_openai.fail_next("server_error", 2)
    async with transcribing(cfg, breaker=CircuitBreaker(failures=2, clock=clock)) as (rt, router):
        failing = await _job(rt)
        # 500, 500: the circuit opens; the third delivery goes to the fallback.
        done = await _transcribed(rt, _chunk(failing, seconds))
        assert router.breaker.state == "open"
        clock.now += 30  # the cool-down: the next call is a trial on whisper-1
        after = await _transcribed(rt, _chunk(await _job(rt), seconds, offset=5.0))
        assert router.breaker.state == "closed"
        job = await repo.get_job(rt.pool, failing)

    assert [(r.fields["model"], r.status) for r in fake_openai.requests] == [
        ("whisper-1", 500),
        ("whisper-1", 500),
        ("gpt-4o-mini-transcribe", 200),
        ("whisper-1", 200),
    ]
    assert (done.usage.model, after.usage.model) == ("gpt-4o-mini-transcribe", "whisper-1")
    assert job is not None and job.warnings == [
        "The speech API (whisper-1) kept failing, so part of this job was transcribed by "
        "gpt-4o-mini-transcribe instead of whisper-1."
    ]

"""Failing a job, in one place (``store.repo.fail_job``): the first outcome wins and a done job stays done."""

from __future__ import annotations

import asyncio
import functools

import pytest

from core import bus, subjects
from core.messages import (
    ChunkFailed,
    ChunkTranscribed,
    Failed,
    Final,
    InputEnded,
    JobEvent,
    JobOptions,
    JobSubmitted,
    RawSegment,
    Usage,
    encoder,
    job_event_decoder,
)
from core.process import Runtime
from romanizer.service import RomanizerService
from store import repo
from streamer.service import Streamer

pytestmark = pytest.mark.integration


async def _events(rt: Runtime, job_id: str) -> list[JobEvent]:
    """Every event stored for the job, read straight from the stream."""
    stream = (await rt.js.find_stream_name_by_subject(subjects.events(job_id))) or ""
    info = await rt.js.stream_info(stream, subjects_filter=subjects.events(job_id))
    sub = await rt.js.subscribe(subjects.events(job_id), ordered_consumer=True)
    try:
        count = (info.state.subjects or {}).get(subjects.events(job_id), 0)
        return [job_event_decoder.decode((await sub.next_msg(timeout=5)).data) for _ in range(count)]
    finally:
        await sub.unsubscribe()


async def test_the_first_failure_wins_and_its_event_goes_out_once(rt: Runtime, pool, job_id: str) -> None:
    await repo.create_job(pool, job_id, "clip.wav", user_id=None, options=JobOptions())
    publish = functools.partial(bus.publish_event, rt.js)
    dead = repo.DeadLetter(subjects.CHUNKS, 3, 5, "gave up on chunk 3")
    assert await repo.fail_job(pool, job_id, "The first reason.", publish=publish, dead_letter=dead) == "failed"
    assert await repo.fail_job(pool, job_id, "A second reason.", publish=publish) == "failed"
    job = await repo.get_job(pool, job_id)
    assert job is not None and (job.status, job.reason) == ("failed", "The first reason.")
    # Both calls published the winning reason; JetStream kept one (same message id).
    assert await _events(rt, job_id) == [Failed(job_id=job_id, reason="The first reason.")]
    rows = await pool.fetch("SELECT seq, deliveries, reason FROM dead_letters WHERE job_id = $1", job_id)
    assert [tuple(r) for r in rows] == [(3, 5, "gave up on chunk 3")]


async def test_an_unknown_job_is_not_failed_and_nothing_is_published(rt: Runtime, job_id: str) -> None:
    published: list[Failed] = []

    async def publish(event: Failed) -> None:
        published.append(event)

    assert await repo.fail_job(rt.pool, job_id, "Why.", publish=publish) is None
    assert published == []


async def _acked(rt: Runtime, seq: int) -> None:
    """Wait until the romanizer has acked the message stored at ``seq`` of its stream."""
    consumer = rt.topology.romanizer
    for _ in range(600):
        if (await rt.js.consumer_info(consumer.stream.name, consumer.durable)).ack_floor.stream_seq >= seq:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"the romanizer did not ack message {seq} within 30 s")


async def test_a_late_failure_after_final_leaves_the_job_done(rt: Runtime, pool, job_id: str) -> None:
    await repo.create_job(pool, job_id, "clip.wav", user_id=None, options=JobOptions())
    await rt.start({"romanizer": RomanizerService.open})
    usage = Usage(backend="local", model="whisper-base", billed_seconds=2.0, cost_usd=0.0)
    transcribed = ChunkTranscribed(
        job_id=job_id,
        seq=0,
        offset=0.0,
        duration=2.0,
        segments=[RawSegment(start=0.1, end=1.9, text="你好")],
        usage=usage,
    )
    await bus.publish(rt.js, subjects.segments(job_id), transcribed)
    ended = await bus.publish(rt.js, subjects.segments(job_id), InputEnded(job_id=job_id, total_chunks=1, duration=2.0))
    await _acked(rt, ended.seq)
    assert isinstance((await _events(rt, job_id))[-1], Final)

    # A failed chunk reported after the end, then a dead letter of the same job.
    late = ChunkFailed(job_id=job_id, seq=0, reason="the transcriber gave up")
    acked = await bus.publish(rt.js, subjects.segments(job_id), late)
    await _acked(rt, acked.seq)
    (service,) = rt.services
    assert isinstance(service, RomanizerService)
    await service.exhausted(encoder.encode(late), deliveries=10)

    job = await repo.get_job(pool, job_id)
    assert job is not None and job.status == "done" and job.reason is None
    events = await _events(rt, job_id)
    assert not any(isinstance(event, Failed) for event in events)
    assert isinstance(events[-1], Final) and events[-1].segment_count == 1
    assert await pool.fetchval("SELECT count(*) FROM dead_letters WHERE job_id = $1", job_id) == 1


async def test_a_job_the_streamer_gave_up_on_fails_even_without_its_row(rt: Runtime, pool, job_id: str) -> None:
    # Every delivery died before the row was made (the database was down): the job must still fail.
    streamer = Streamer(rt.settings, rt.nc, rt.pool, rt.topology.streamer)
    await streamer.exhausted(encoder.encode(JobSubmitted(job_id=job_id, source="clip.wav")), deliveries=3)
    job = await repo.get_job(pool, job_id)
    assert job is not None and job.status == "failed" and "stopped responding" in (job.reason or "")
    assert await _events(rt, job_id) == [Failed(job_id=job_id, reason=job.reason or "")]

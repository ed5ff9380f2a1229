"""The romanizer publishes a job's events only after their transaction commits, and never loses one.

The handler is driven directly with segments messages (no speech model): a rolled-back
transaction publishes nothing, a crash between the commit and the publish is repaired by the
redelivery (the job row's ``published_chunks`` is the outbox mark), and JetStream's message ids
keep every event on ``scribe.events.<job>`` once, in chunk order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import pytest
from nats.aio.msg import Msg
from nats.js import api as js_api

from core import bus, subjects
from core.messages import (
    Cancelled,
    ChunkFailed,
    ChunkTranscribed,
    Failed,
    Final,
    InputEnded,
    JobEvent,
    JobOptions,
    Partial,
    RawSegment,
    SegmentsEvent,
    Usage,
    encoder,
    job_event_decoder,
)
from core.process import Runtime
from romanizer.romanize import Romanizer
from romanizer.service import NOTHING_HEARD, RomanizerService
from store import repo

pytestmark = pytest.mark.integration

USAGE = Usage(backend="local", model="whisper-base", billed_seconds=2.0, cost_usd=0.0)
TEXTS = {0: ["你好", "今日天氣好好"], 1: ["我哋去飲茶"], 2: ["多謝大家", "再見"]}


class Delivery:
    """A segments message as the consume loop hands it over: its payload, and whether it was acked."""

    def __init__(self, event: SegmentsEvent) -> None:
        self.data = encoder.encode(event)
        self.acked = False

    async def ack(self) -> None:
        self.acked = True


@pytest.fixture(scope="module")
def romanizer() -> Romanizer:
    return Romanizer()


@pytest.fixture
async def service(rt: Runtime, romanizer: Romanizer, job_id: str) -> RomanizerService:
    await repo.create_job(rt.pool, job_id, "clip.wav", user_id=None, options=JobOptions())
    return RomanizerService(rt.nc, rt.pool, rt.topology.romanizer, romanizer)


class Published:
    """Every job event the service publishes: whether JetStream kept it, and what the store showed then."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.calls: list[tuple[JobEvent, bool, str, list[int]]] = []  # (event, duplicate, status, stored chunk seqs)
        self.attempts = 0
        self.fail_on: set[int] = set()  # which attempts (1-based) raise instead, as a crash before the publish would

    async def __call__(self, js: Any, event: JobEvent, *, real: Callable[..., Awaitable[js_api.PubAck]]) -> Any:
        self.attempts += 1
        if self.attempts in self.fail_on:
            raise ConnectionError("NATS went away")
        # From another connection: what is committed, as a viewer reacting to the event reads it.
        job = await repo.get_job(self.rt.pool, event.job_id)
        stored = [line.chunk_seq for line in await repo.segments(self.rt.pool, event.job_id)]
        ack = await real(js, event)
        self.calls.append((event, bool(ack.duplicate), job.status if job else "", stored))
        return ack

    def partials_after_commit(self) -> bool:
        """Whether every Partial with lines went out when those lines were committed."""
        return all(e.chunk_seq in stored for e, _, _, stored in self.calls if isinstance(e, Partial) and e.segments)


@pytest.fixture
def published(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[Published]:
    spy = Published(rt)
    real = bus.publish_event

    async def publish_event(js: Any, event: JobEvent) -> Any:
        return await spy(js, event, real=real)

    monkeypatch.setattr(bus, "publish_event", publish_event)
    yield spy


async def _events(rt: Runtime, job_id: str) -> list[JobEvent]:
    """Every event stored for the job, read straight from the stream."""
    subject = subjects.events(job_id)
    stream = (await rt.js.find_stream_name_by_subject(subject)) or ""
    info = await rt.js.stream_info(stream, subjects_filter=subject)
    count = (info.state.subjects or {}).get(subject, 0)
    if count == 0:
        return []
    sub = await rt.js.subscribe(subject, ordered_consumer=True)
    try:
        return [job_event_decoder.decode((await sub.next_msg(timeout=5)).data) for _ in range(count)]
    finally:
        await sub.unsubscribe()


def _chunk(job_id: str, seq: int, texts: list[str] | None = None) -> ChunkTranscribed:
    texts = TEXTS[seq] if texts is None else texts
    raw = [RawSegment(start=seq * 10.0 + i, end=seq * 10.0 + i + 0.9, text=t) for i, t in enumerate(texts)]
    return ChunkTranscribed(job_id=job_id, seq=seq, offset=seq * 10.0, duration=10.0, segments=raw, usage=USAGE)


async def _handle(service: RomanizerService, delivery: Delivery) -> None:
    await service.handle(cast(Msg, delivery))


def _partials(events: list[JobEvent]) -> list[tuple[int, list[str], int]]:
    """(chunk, lines, chunks_done) of each Partial, in stream order."""
    return [(e.chunk_seq, [s.text for s in e.segments], e.chunks_done) for e in events if isinstance(e, Partial)]


async def _marks(rt: Runtime, job_id: str) -> tuple[int, int]:
    job = await repo.get_job(rt.pool, job_id)
    assert job is not None
    return job.next_chunk, job.published_chunks


async def test_a_rolled_back_transaction_publishes_nothing_and_its_redelivery_publishes_once(
    rt: Runtime, service: RomanizerService, published: Published, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the database went away before the commit")

    delivery = Delivery(_chunk(job_id, 0))
    with monkeypatch.context() as patch, pytest.raises(RuntimeError):
        patch.setattr(repo, "advance", refuse)  # after the lines are inserted, inside the transaction
        await _handle(service, delivery)
    assert not delivery.acked
    assert published.attempts == 0 and await _events(rt, job_id) == []
    assert await repo.segments(rt.pool, job_id) == []

    await _handle(service, delivery)  # the redelivery, with the real functions
    await _handle(service, delivery)  # and once more: nothing changes
    assert delivery.acked
    events = await _events(rt, job_id)
    assert _partials(events) == [(0, TEXTS[0], 1)] and len(events) == 1
    assert [s.text for s in await repo.segments(rt.pool, job_id)] == TEXTS[0]
    assert await _marks(rt, job_id) == (1, 1)
    assert published.partials_after_commit() and len(published.calls) == 1


@pytest.mark.parametrize("crash_at", [1, 2], ids=["before-any-publish", "between-two-publishes"])
async def test_a_crash_between_commit_and_publish_loses_nothing(
    rt: Runtime, service: RomanizerService, published: Published, job_id: str, crash_at: int
) -> None:
    await _handle(service, Delivery(_chunk(job_id, 1)))  # waits for chunk 0
    assert published.attempts == 0
    published.fail_on = {crash_at}
    delivery = Delivery(_chunk(job_id, 0))
    with pytest.raises(ConnectionError):
        await _handle(service, delivery)  # chunks 0 and 1 committed; the publish of chunk crash_at - 1 failed
    assert not delivery.acked
    assert _partials(await _events(rt, job_id)) == [(0, TEXTS[0], 1)][: crash_at - 1]
    assert await _marks(rt, job_id) == (2, 0)

    await _handle(service, delivery)  # the redelivery publishes from the store
    assert delivery.acked
    events = await _events(rt, job_id)
    assert _partials(events) == [(0, TEXTS[0], 1), (1, TEXTS[1], 2)] and len(events) == 2
    assert await _marks(rt, job_id) == (2, 2)
    stored = await repo.segments(rt.pool, job_id)
    assert [s for e in events if isinstance(e, Partial) for s in e.segments] == stored
    assert published.partials_after_commit()


async def test_out_of_order_chunks_are_published_in_order_once_then_final(
    rt: Runtime, service: RomanizerService, published: Published, job_id: str
) -> None:
    for seq in (2, 0, 1):
        await _handle(service, Delivery(_chunk(job_id, seq)))
        assert published.partials_after_commit()
    assert [e.chunk_seq for e, *_ in published.calls if isinstance(e, Partial)] == [0, 1, 2]
    ended = Delivery(InputEnded(job_id=job_id, total_chunks=3, duration=30.0))
    await _handle(service, ended)
    await _handle(service, ended)  # a redelivery repeats the final event: JetStream drops it
    assert ended.acked

    events = await _events(rt, job_id)
    assert _partials(events) == [(0, TEXTS[0], 1), (1, TEXTS[1], 2), (2, TEXTS[2], 3)]
    assert len(events) == 4 and isinstance(events[-1], Final) and events[-1].segment_count == 5
    finals = [(duplicate, status) for e, duplicate, status, _ in published.calls if isinstance(e, Final)]
    assert finals == [(False, "done"), (True, "done")]  # the job was done, as others see it, before each
    assert await _marks(rt, job_id) == (3, 3)


async def _fail_after_failing(
    rt: Runtime, service: RomanizerService, published: Published, monkeypatch: pytest.MonkeyPatch, event: SegmentsEvent
) -> list[JobEvent]:
    """Handle ``event`` (which fails the job) with its transaction rolled back after ``fail_job``, then
    twice for real; the events on the stream before the real handling."""
    delivery = Delivery(event)
    real_fail_job = repo.fail_job

    async def fail_then_roll_back(*args: Any, **kwargs: Any) -> Any:
        await real_fail_job(*args, **kwargs)
        raise RuntimeError("the commit failed")

    with monkeypatch.context() as patch:
        patch.setattr(repo, "fail_job", fail_then_roll_back)
        with pytest.raises(RuntimeError):
            await _handle(service, delivery)
    assert not delivery.acked
    before = await _events(rt, event.job_id)
    job = await repo.get_job(rt.pool, event.job_id)
    assert job is not None and job.status in ("queued", "running")

    await _handle(service, delivery)
    await _handle(service, delivery)  # a redelivery finds the job failed: it publishes the event again
    assert delivery.acked
    failures = [(duplicate, status) for e, duplicate, status, _ in published.calls if isinstance(e, Failed)]
    assert failures == [(False, "failed"), (True, "failed")]  # after the commit each time, kept once
    return before


async def test_nothing_heard_fails_only_after_the_commit_and_once(
    rt: Runtime, service: RomanizerService, published: Published, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _handle(service, Delivery(_chunk(job_id, 0, texts=[])))
    await _handle(service, Delivery(_chunk(job_id, 1, texts=["   "])))
    before = await _fail_after_failing(
        rt, service, published, monkeypatch, InputEnded(job_id=job_id, total_chunks=2, duration=20.0)
    )
    assert _partials(before) == [(0, [], 1), (1, [], 2)] and len(before) == 2

    events = await _events(rt, job_id)
    assert events[:2] == before and len(events) == 3
    assert isinstance(events[2], Failed) and events[2].reason.startswith(NOTHING_HEARD)


async def test_a_failed_chunk_fails_the_job_only_after_the_commit_and_once(
    rt: Runtime, service: RomanizerService, published: Published, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _handle(service, Delivery(_chunk(job_id, 0)))
    failed = ChunkFailed(job_id=job_id, seq=1, reason="the ASR refused it")
    before = await _fail_after_failing(rt, service, published, monkeypatch, failed)
    assert _partials(before) == [(0, TEXTS[0], 1)] and len(before) == 1

    events = await _events(rt, job_id)
    assert events[0] == before[0] and len(events) == 2
    assert isinstance(events[1], Failed) and "chunk 1" in events[1].reason and "the ASR refused it" in events[1].reason


async def test_a_cancelled_job_gets_no_lines_after_its_cancelled_event(
    rt: Runtime, service: RomanizerService, published: Published, job_id: str
) -> None:
    published.fail_on = {1}
    delivery = Delivery(_chunk(job_id, 0))
    with pytest.raises(ConnectionError):
        await _handle(service, delivery)  # chunk 0 committed, not published
    seen = await repo.get_job(rt.pool, job_id)
    assert seen is not None and (seen.next_chunk, seen.published_chunks) == (1, 0)
    assert await repo.cancel_job(rt.pool, job_id)
    await bus.publish_event(rt.js, Cancelled(job_id=job_id))
    await service.flush(seen, [])  # a flush that was under way when the job was cancelled
    await _handle(service, delivery)
    await _handle(service, Delivery(_chunk(job_id, 1)))
    assert delivery.acked
    assert await _events(rt, job_id) == [Cancelled(job_id=job_id)]

"""A job's plan limit (``JobSubmitted.max_seconds``, issue 17), enforced by the real streamer alone.

Real NATS, PostgreSQL, PyAV and yt-dlp against a local HTTP server; no transcriber runs, so no
speech model is needed: what the streamer publishes (chunks, ``InputEnded``, events) is read back
from JetStream.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from nats.js import JetStreamContext

from core import subjects
from core.messages import (
    AudioChunk,
    Failed,
    InputEnded,
    JobEvent,
    Progress,
    audio_chunk_decoder,
    segments_event_decoder,
)
from core.settings import Settings
from core.topology import CHUNKS, SEGMENTS
from scribe import client
from scribe.runtime import runtime, services
from store import repo
from streamer.errors import OverPlanLimit, PlanLimit, TooLong
from streamer.source import open_source
from tests import media
from tests.webserver import Route, Site, serve

pytestmark = pytest.mark.integration

LIMIT_S = 12.0  # the plan's limit; the clip is 30.6 s
STOPPED = "Stopped at 12 seconds: the free plan allows up to 12 seconds per recording; the rest was not transcribed."


def make_recorded_webm(directory: Path) -> Path:
    """The clip as a browser's recorder writes it: WebM/Opus with no duration in its header."""
    path = directory / "recorded.webm"
    samples = media.load_samples()
    with av.open(str(path), "w", format="webm", container_options={"live": "1"}) as out:
        stream = out.add_stream("libopus", rate=media.RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = media.RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    with av.open(str(path)) as check:
        assert check.duration is None, "the test input must not say how long it is"
    return path


def _video_page(media_url: str, iso_duration: str) -> bytes:
    """A page whose JSON-LD describes a video (yt-dlp's generic extractor reads its duration)."""
    return (
        "<!doctype html><html><head><title>Lesson</title>"
        '<script type="application/ld+json">{"@context": "https://schema.org", "@type": "VideoObject", '
        f'"name": "Lesson", "contentUrl": "{media_url}", "duration": "{iso_duration}"}}</script>'
        "</head><body>video</body></html>"
    ).encode()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    clip = media.make_ogg(tmp_path_factory.mktemp("plan-media"))  # 30.6 s; streamed, it has no duration
    routes = {"/clip.ogg": Route(clip.read_bytes())}
    site = serve("127.0.0.1", routes)
    routes["/lesson.html"] = Route(_video_page(site.url("/clip.ogg"), "PT31S"), content_type="text/html")
    yield site
    site.server.shutdown()


def _settings(settings: Settings, nats_url: str, database_url: str) -> Settings:
    return settings.with_(nats_url=nats_url, database_url=database_url, chunk_min_s=4.0, chunk_max_s=8.0)


async def _streamed(js: JetStreamContext, job_id: str) -> list[JobEvent]:
    """The job's events until the streamer is done with it: its input ended, or the job failed."""
    events: list[JobEvent] = []
    async with contextlib.aclosing(client.follow(js, job_id)) as followed:
        async for event in followed:  # follow() itself ends at Failed
            events.append(event)
            if isinstance(event, Progress) and event.input_ended:
                break
    return events


async def _chunks(js: JetStreamContext, job_id: str) -> list[AudioChunk]:
    """Every chunk of the job on the work queue (no transcriber takes them here)."""
    state = (await js.stream_info(CHUNKS.name)).state
    if not state.messages:
        return []
    stored = [await js.get_msg(CHUNKS.name, seq) for seq in range(state.first_seq, state.last_seq + 1)]
    chunks = [audio_chunk_decoder.decode(msg.data or b"") for msg in stored]
    return [chunk for chunk in chunks if chunk.job_id == job_id]


def _seconds_of(chunk: AudioChunk) -> float:
    """How much audio a chunk really holds, decoded."""
    with av.open(io.BytesIO(chunk.audio), "r") as container:
        return float(sum(frame.samples / frame.sample_rate for frame in container.decode(audio=0)))


async def test_a_recording_known_to_be_longer_than_the_plan_fails_before_anything_is_chunked(
    settings, nats_url, database_url, site: Site, tmp_path: Path
) -> None:
    cfg = _settings(settings, nats_url, database_url)
    async with runtime(cfg, names=["streamer"]) as rt:
        await rt.start(services("streamer"))
        upload = await client.upload(rt.js, media.make_ogg(tmp_path).read_bytes())  # its length is in its metadata
        hits = len(site.hits)
        jobs = {
            "upload": await client.submit(rt.js, upload, max_seconds=LIMIT_S, plan="free"),
            "link": await client.submit(rt.js, site.url("/lesson.html"), max_seconds=LIMIT_S),  # the site says 31 s
        }
        followed = await asyncio.wait_for(asyncio.gather(*(_streamed(rt.js, job) for job in jobs.values())), 30)
        events = dict(zip(jobs, followed, strict=True))
        chunked = [await _chunks(rt.js, job) for job in jobs.values()]
        rows = [await repo.get_job(rt.pool, job) for job in jobs.values()]

    upload_failed, link_failed = events["upload"][-1], events["link"][-1]
    assert isinstance(upload_failed, Failed) and isinstance(link_failed, Failed)
    assert upload_failed.reason == (
        "This recording is 31 seconds long; the free plan allows up to 12 seconds per recording. "
        "Trim it, or use a plan that allows longer recordings."
    )
    assert link_failed.reason.startswith("This recording is 31 seconds long; your plan allows up to 12 seconds")
    assert chunked == [[], []]
    assert not any(isinstance(event, Progress) and event.chunks_published for e in followed for event in e)
    assert [row.status if row else None for row in rows] == ["failed", "failed"]
    # yt-dlp read the page and the media's headers; the download (a second GET of the media) never started.
    assert site.hits[hits:] == ["/lesson.html", "/clip.ogg"]


async def test_a_recording_of_unknown_length_is_cut_at_the_plans_limit_with_a_warning(
    settings, nats_url, database_url, site: Site, tmp_path: Path
) -> None:
    cfg = _settings(settings, nats_url, database_url)
    async with runtime(cfg, names=["streamer"]) as rt:
        await rt.start(services("streamer"))
        recorded = await client.upload(rt.js, make_recorded_webm(tmp_path).read_bytes())
        jobs = {
            "recorded": await client.submit(rt.js, recorded, max_seconds=LIMIT_S, plan="free"),
            "streamed link": await client.submit(rt.js, site.url("/clip.ogg"), max_seconds=LIMIT_S, plan="free"),
        }
        followed = await asyncio.wait_for(asyncio.gather(*(_streamed(rt.js, job) for job in jobs.values())), 30)
        chunked = [await _chunks(rt.js, job) for job in jobs.values()]
        ended = [
            segments_event_decoder.decode((await rt.js.get_last_msg(SEGMENTS.name, subjects.segments(job))).data or b"")
            for job in jobs.values()
        ]
        rows = [await repo.get_job(rt.pool, job) for job in jobs.values()]

    for name, events, chunks, end, row in zip(jobs, followed, chunked, ended, rows, strict=True):
        assert not any(isinstance(event, Failed) for event in events), name
        assert row is not None and row.status == "running", name  # the transcriber would take it from here
        assert isinstance(end, InputEnded) and end.warnings == [STOPPED], name
        assert end.duration == LIMIT_S and end.total_chunks == len(chunks) >= 2, name
        # The chunk that crosses the limit is cut at it: nothing after 12 s goes to ASR.
        last = chunks[-1]
        assert last.offset + last.duration == pytest.approx(LIMIT_S, abs=1e-3), name
        assert sum(_seconds_of(chunk) for chunk in chunks) <= LIMIT_S + 0.001, name
        assert events[-1] == Progress(
            job_id=end.job_id, chunks_published=len(chunks), seconds_decoded=LIMIT_S, duration=LIMIT_S, input_ended=True
        )


def test_the_deployments_limit_comes_before_the_plans(site: Site) -> None:
    # Over both: the deployment's sentence, since no plan would let it through.
    with pytest.raises(TooLong) as caught:
        open_source(
            site.url("/lesson.html"),
            allow_private=True,
            max_duration_s=20.0,
            max_bytes=10**8,
            plan=PlanLimit(LIMIT_S, "free"),
        )
    assert not isinstance(caught.value, OverPlanLimit)
    assert caught.value.reason.startswith("The recording is 31 seconds long; the limit is 20 seconds.")

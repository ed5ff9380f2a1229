"""The streamer: a submitted job in, compressed audio chunks on the work queue out.

Fetching and decoding run in a thread and hand pieces over as soon as they are cut, so
the first chunk is on the bus while the rest is still downloading.

A link to a live HLS stream is read as a live session instead (``streamer.live_hls``): its job stays
queued until a transcriber takes the session, so a job is marked running only once its input is open.

A job may carry its submitter's plan limit (``JobSubmitted.max_seconds``). Under the deployment's
limit it is enforced like it: a recording known to be longer fails the job before anything is
fetched or transcribed; one of unknown length is cut at the limit and the job goes on with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import asyncpg
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from core import bus, subjects, uploads
from core.messages import AudioChunk, InputEnded, JobSubmitted, Progress, job_submitted_decoder
from core.process import Runtime
from core.settings import Settings
from core.topology import AUDIO_BUCKET, Consumer, Topology
from core.worker import consume, heartbeat
from store import repo, sources
from streamer.cutter import SpeechChunk
from streamer.encode import encode_for_bus
from streamer.errors import CorruptMedia, InputError, PlanLimit, SourceNotFound, TooLarge, human_duration
from streamer.live_hls import stream_live
from streamer.media import open_media
from streamer.pieces import speech_chunks
from streamer.playback import PlaybackWriter
from streamer.replay import file_identity, origin_for, replay, source_key
from streamer.source import LiveLink, open_source

logger = logging.getLogger(__name__)

NO_SPEECH = (
    "No speech was found: the audio is silent, too quiet, or only noise or music from start to end. "
    "Check that the file or video has a sound track with someone speaking."
)


@dataclass(frozen=True)
class Decoded:
    """What the decoding thread reports: a chunk of speech to send, or audio skipped (silence, no speech).

    The chunk is compressed on the event loop's side, in a thread of its own, while the decoding
    thread goes on: on two cores, encoding no longer adds to the time the last chunk goes out.

    The last report of an input that decoded to its end carries the reader's warnings
    (what a damaged input lost, or that the plan's limit cut it), with ``piece`` None. Every
    report carries the title the site gave the input, if any. The first report (``opened``) says the
    input is open, before any audio; with the source cache on, it carries the input's identity
    (``streamer.replay``), if it has one.
    """

    piece: SpeechChunk | None
    seconds: float
    duration_hint: float | None
    warnings: tuple[str, ...] = ()
    title: str | None = None
    identity: str | None = None
    opened: bool = False


def plan_limit(job: JobSubmitted, settings: Settings) -> PlanLimit | None:
    """The job's plan limit, when it is under the deployment's (which is enforced in any case)."""
    if job.max_seconds is None or job.max_seconds >= settings.max_duration_s:
        return None
    return PlanLimit(job.max_seconds, job.plan)


def _decode(
    source: str,
    local: bool,
    plan: PlanLimit | None,
    playback: Path,
    settings: Settings,
    cancel: threading.Event,
) -> Iterator[Decoded]:
    """Blocking: fetch and decode the job's input and cut it into chunks, one at a time, and write the
    whole timeline to ``playback`` for listening (finished once the last report is out)."""
    media, duration_hint, title, identity = open_source(
        source,
        local=local,
        allow_private=settings.allow_private_urls,
        max_duration_s=settings.max_duration_s,
        max_bytes=settings.max_download_bytes,
        plan=plan,
        max_seconds=settings.max_download_s,
    )
    try:
        if not settings.source_cache:
            identity = None
        elif identity is None and isinstance(media, str):  # a local file: the scribe command's, or an upload
            identity = file_identity(media)
        yield Decoded(None, 0.0, duration_hint, title=title, identity=identity, opened=True)
        reader = open_media(media, max_duration_s=settings.max_duration_s, plan=plan)
        writer = PlaybackWriter(playback)
        try:
            hint = reader.duration or duration_hint
            seconds = 0.0
            for chunk, seconds in speech_chunks(reader.samples(), settings, keep=writer.write):
                if cancel.is_set():
                    return
                yield Decoded(chunk, seconds, hint, title=title)
            writer.close()
            yield Decoded(None, seconds, hint, warnings=tuple(reader.warnings), title=title)
        finally:
            with contextlib.suppress(Exception):  # an input that failed: its playback file is dropped
                writer.close()
            reader.close()
    finally:
        if hasattr(media, "close"):
            media.close()


async def _in_thread(iterator_factory: Any, *args: Any) -> Any:
    """Iterate a blocking generator in a thread, yielding its items on the event loop."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=4)
    cancel = threading.Event()

    def produce() -> None:
        try:
            for item in iterator_factory(*args, cancel):
                asyncio.run_coroutine_threadsafe(queue.put(("item", item)), loop).result()
            asyncio.run_coroutine_threadsafe(queue.put(("end", None)), loop).result()
        except BaseException as exc:  # handed to the consumer, which re-raises it
            if not cancel.is_set():
                asyncio.run_coroutine_threadsafe(queue.put(("error", exc)), loop).result()

    thread = threading.Thread(target=produce, name="streamer-decode", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = await queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        cancel.set()
        # Unblock a producer waiting on a full queue.
        while not queue.empty():
            queue.get_nowait()


class Streamer:
    """Consumes ``scribe.jobs.submitted`` and publishes chunks, progress and the end of input."""

    def __init__(
        self, settings: Settings, nc: NATS, pool: asyncpg.Pool, consumer: Consumer, rt: Runtime | None = None
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.js = nc.jetstream()
        self.pool = pool
        self.consumer = consumer
        # A live link's session is sent as the gateway sends one (``streamer.sessions``), on these connections.
        self.rt = rt or Runtime(settings, nc, self.js, pool, Topology.from_settings(settings))
        self.stop = asyncio.Event()
        self.local_files: dict[str, str] = {}
        # Whether a replayed job needs its audio for playback: the scribe command's own one-shot run
        # plays nothing back (and its embedded NATS, where the audio is kept, lasts one run).
        self.playback = True

    def allow_local_file(self, job_id: str, path: str) -> None:
        """Let one job read a local path. Only the ``scribe`` command that runs this streamer in its
        own process calls this: a job from the bus may never make the streamer open a path."""
        self.local_files[job_id] = path

    @classmethod
    async def open(cls, rt: Runtime) -> Streamer:
        """The streamer on a process's connections."""
        return cls(rt.settings, rt.nc, rt.pool, rt.topology.streamer, rt)

    async def run(self, stop: asyncio.Event, concurrency: int = 2) -> None:
        self.stop = stop  # a live stream ends at it (a file's job is finished first)
        await consume(
            self.nc, self.consumer, handler=self.handle, stop=stop, concurrency=concurrency, on_exhausted=self.exhausted
        )

    async def close(self) -> None:
        """Nothing to release: the connections belong to the process."""

    async def exhausted(self, data: bytes, deliveries: int) -> None:
        """A job JetStream gave up on: every streamer that took it died or hung."""
        job = job_submitted_decoder.decode(data)
        # Its row may never have been made (the database was down on every delivery).
        await repo.create_job(self.pool, job.job_id, job.source, user_id=job.user_id, options=job.options)
        dead = repo.DeadLetter(subjects.JOBS_SUBMITTED, None, deliveries, "streamer stopped responding")
        reason = "The input could not be processed: the streamer stopped responding; try again later."
        await self.fail(job.job_id, reason, dead_letter=dead)
        self.local_files.pop(job.job_id, None)

    async def handle(self, msg: Msg) -> None:
        job = job_submitted_decoder.decode(msg.data)
        # Integrators may publish jobs straight to NATS: the row is made here if need be.
        await repo.create_job(self.pool, job.job_id, job.source, user_id=job.user_id, options=job.options)
        existing = await repo.get_job(self.pool, job.job_id)
        if existing is not None and existing.finished:
            if existing.status == "failed":  # its Failed event may not have gone out: send it again
                await self.fail(job.job_id, existing.reason or "The job failed.")
            self.local_files.pop(job.job_id, None)
            await msg.ack()
            return
        log = {"job_id": job.job_id}
        logger.info("job started", extra=log)
        try:
            async with heartbeat(msg, every=self.consumer.heartbeat_s):
                await self.stream(job)
        except InputError as exc:
            logger.info("input refused", extra={**log, "reason": exc.reason})
            await self.fail(job.job_id, exc.reason)
        except Exception:
            if (msg.metadata.num_delivered or 1) < self.consumer.max_deliver:
                raise  # nak'ed with backoff by the consumer loop; the job starts again
            logger.exception("job failed after its last delivery", extra=log)
            await self.fail(
                job.job_id, "The input could not be processed because of an internal error; try again later."
            )
        self.local_files.pop(job.job_id, None)
        await msg.ack()

    @contextlib.asynccontextmanager
    async def input_of(self, job: JobSubmitted) -> AsyncIterator[tuple[str, bool]]:
        """What to decode, and whether it is a local file: an upload is copied to a file of our own."""
        if not uploads.is_upload(job.source):
            yield job.source, self.local_files.get(job.job_id) == job.source
            return
        with tempfile.NamedTemporaryFile(prefix="scribe-upload-") as copy:
            try:
                await uploads.fetch(
                    self.js, job.source, cast(BinaryIO, copy), max_bytes=self.settings.max_download_bytes
                )
            except uploads.UploadMissing:
                kept = human_duration(self.settings.upload_retention_s)
                raise SourceNotFound(
                    f"The uploaded file is no longer stored (uploads are kept for {kept}). Upload it again."
                ) from None
            except uploads.UploadTooLarge:
                raise TooLarge.over_limit(self.settings.max_download_bytes) from None
            except uploads.UploadUnreadable:
                raise CorruptMedia(
                    "The uploaded file could not be read back intact (it is not a stored file, or it was damaged "
                    "in storage). Upload it again."
                ) from None
            copy.flush()
            yield copy.name, True

    async def stream(self, job: JobSubmitted) -> None:
        try:
            async with self.input_of(job) as (source, local):
                await self.stream_from(job, source, local)
        except LiveLink as link:
            await stream_live(self.rt, job, link, self.stop)

    async def stream_from(self, job: JobSubmitted, source: str, local: bool) -> None:
        with tempfile.TemporaryDirectory(prefix="scribe-playback-") as folder:
            await self.stream_into(job, source, local, Path(folder) / "audio.ogg")

    async def stream_into(self, job: JobSubmitted, source: str, local: bool, playback: Path) -> None:
        seq = 0
        seconds = 0.0
        duration: float | None = None
        warnings: tuple[str, ...] = ()
        titled = False
        plan = plan_limit(job, self.settings)
        # aclosing: on an error the decoding thread is told to stop at once, not at garbage collection.
        async with contextlib.aclosing(
            _in_thread(_decode, source, local, plan, playback, self.settings)
        ) as decoded_pieces:
            async for decoded in decoded_pieces:
                if decoded.opened:
                    await repo.mark_running(self.pool, job.job_id)
                    if decoded.identity is not None and await self.replayed(job, decoded.identity, plan):
                        return
                    continue
                seconds, duration = decoded.seconds, decoded.duration_hint
                warnings += decoded.warnings
                if decoded.title and not titled:  # a link's video title, for people (an upload keeps its name)
                    await repo.set_title(self.pool, job.job_id, decoded.title)
                    titled = True
                if await repo.is_cancelled(self.pool, job.job_id):
                    logger.info("job cancelled: decoding stopped", extra={"job_id": job.job_id, "chunks": seq})
                    return
                if decoded.piece is not None:
                    piece = decoded.piece
                    codec, audio = await asyncio.to_thread(
                        encode_for_bus, piece.samples, self.settings.bus_codec, self.nc.max_payload
                    )
                    chunk = AudioChunk(
                        job_id=job.job_id,
                        seq=seq,
                        offset=round(piece.offset, 3),
                        duration=round(piece.duration, 3),
                        codec=codec,
                        audio=audio,
                        speech=[(round(a, 3), round(b, 3)) for a, b in piece.speech],
                    )
                    await bus.publish(self.js, subjects.CHUNKS, chunk, msg_id=f"{job.job_id}:{seq}")
                    seq += 1
                await self.progress(job.job_id, seq, seconds, duration, ended=False)
        if seq == 0:  # what a damaged input lost may be why nothing is left
            raise InputError(" ".join([NO_SPEECH, *warnings]))
        for warning in warnings:
            logger.info("input salvaged", extra={"job_id": job.job_id, "warning": warning})
        # Before the input ends: when the transcript is final, its audio is there to play.
        file = await asyncio.to_thread(playback.open, "rb")
        try:
            await uploads.put(self.js, file, bucket=AUDIO_BUCKET, name=job.job_id)
        finally:
            file.close()
        ended = InputEnded(job_id=job.job_id, total_chunks=seq, duration=round(seconds, 3), warnings=list(warnings))
        await bus.publish(self.js, subjects.segments(job.job_id), ended, msg_id=f"{job.job_id}:end")
        await self.progress(job.job_id, seq, seconds, seconds, ended=True)
        logger.info("input ended", extra={"job_id": job.job_id, "chunks": seq, "seconds": round(seconds, 1)})

    async def replayed(self, job: JobSubmitted, identity: str, plan: PlanLimit | None) -> bool:
        """Whether the job was answered from the source cache; if not, it becomes an origin for later jobs."""
        key = source_key(identity, job, self.settings, plan.max_s if plan else None)
        origin = await origin_for(self.pool, job, key, self.settings)
        if origin is not None and await replay(
            self.js, self.pool, job, origin, max_bytes=self.settings.max_download_bytes, playback=self.playback
        ):
            await self.progress(job.job_id, len(origin.chunks), origin.duration, origin.duration, ended=True)
            logger.info("replayed from the source cache", extra={"job_id": job.job_id, "origin": origin.job_id})
            return True
        await sources.remember(self.pool, job.job_id, key)
        return False

    async def progress(self, job_id: str, chunks: int, seconds: float, duration: float | None, *, ended: bool) -> None:
        await repo.set_progress(self.pool, job_id, round(seconds, 3))
        event = Progress(
            job_id=job_id,
            chunks_published=chunks,
            seconds_decoded=round(seconds, 3),
            duration=round(duration, 3) if duration else None,
            input_ended=ended,
        )
        await bus.publish_event(self.js, event)

    async def fail(self, job_id: str, reason: str, *, dead_letter: repo.DeadLetter | None = None) -> None:
        """Fail the job (the first outcome wins) and tell its subscribers why."""
        await repo.fail_job(
            self.pool, job_id, reason, publish=functools.partial(bus.publish_event, self.js), dead_letter=dead_letter
        )

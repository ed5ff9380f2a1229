"""A job's live transcript over a websocket (``/v1/jobs/{id}/stream``) and SSE (``/v1/jobs/{id}/events``).

One envelope for both: ``{"v": 1, "type", "job_id", "seq", ...}``, ``seq`` counting the job's
events. A viewer first gets a ``snapshot`` (status, progress, every line after ``after``, the
next line number), then live ``progress``, ``segments``, and one terminal ``final`` or
``failed`` or ``cancelled``; ``heartbeat`` when quiet, ``lagged`` (close 4408) when it fell behind, ``error``
(close 4401 / 4404 / 4400) when refused. Lines are numbered by their own ``seq`` and sent once:
a viewer resumes with ``?after=N`` (websocket) or ``Last-Event-ID: N`` (SSE, whose event ids
are line numbers).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, WebSocket, get, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage

from core.messages import Cancelled, Failed, Final, JobEvent, Partial, Progress, Segment
from core.process import Runtime
from gateway.access import authorize, token_subprotocol
from gateway.errors import ApiError
from gateway.feed import Feeds, Viewer
from store import repo

VERSION = 1
CLOSE_NORMAL = 1000
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_LAGGED = 4408
_CLOSE_FOR_STATUS = {400: CLOSE_BAD_REQUEST, 401: CLOSE_UNAUTHORIZED, 404: CLOSE_NOT_FOUND}


_STATUS = {Final: "done", Failed: "failed", Cancelled: "cancelled"}


async def _terminal_from_store(pool: Any, job: repo.JobRow) -> Final | Failed | Cancelled:
    if job.status == "done":
        usage = await repo.job_usage(pool, job.id)
        return Final(
            job_id=job.id,
            duration=job.duration or 0.0,
            segment_count=job.next_segment,
            usage=usage,
            warnings=job.warnings,
        )
    if job.status == "cancelled":
        return Cancelled(job_id=job.id, reason=job.reason or "Cancelled on request.")
    return Failed(job_id=job.id, reason=job.reason or "The job failed.")


class Session:
    """What one viewer has been sent: the last event number and the last line number."""

    def __init__(self, job_id: str, after: int) -> None:
        self.job_id = job_id
        self.seq = 0
        self.last_line = after
        self.finished = False
        self.progress: dict[str, Any] = {"seconds_decoded": 0.0, "duration": None}

    def envelope(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"v": VERSION, "type": kind, "job_id": self.job_id, "seq": self.seq, **fields}

    def _new_lines(self, lines: list[Segment]) -> list[dict[str, Any]]:
        fresh = sorted((line for line in lines if line.seq > self.last_line), key=lambda line: line.seq)
        if fresh:
            self.last_line = fresh[-1].seq
        return [msgspec.to_builtins(line) for line in fresh]

    async def opening(self, pool: Any, history: list[JobEvent]) -> list[dict[str, Any]]:
        """The snapshot (lines from the store and the events so far, each once), and the terminal
        event if the job has ended."""
        job = await repo.get_job(pool, self.job_id)
        assert job is not None
        self.seq = len(history)
        lines = {line.seq: line for line in await repo.segments(pool, self.job_id)}
        progress: dict[str, Any] = {"seconds_decoded": job.seconds_decoded, "duration": job.duration}
        status, terminal = job.status, None
        for event in history:
            match event:
                case Partial():
                    lines.update((line.seq, line) for line in event.segments)
                    status = "running" if status == "queued" else status
                case Progress():
                    progress = {"seconds_decoded": event.seconds_decoded, "duration": event.duration}
                    status = "running" if status == "queued" else status
                case Final() | Failed() | Cancelled():
                    terminal = event
        if terminal is None and job.finished:  # the events may have expired, or not arrived yet: the store says
            terminal = await _terminal_from_store(pool, job)
        if terminal is not None:
            status = _STATUS[type(terminal)]
        segments = self._new_lines(list(lines.values()))
        self.progress = progress
        snapshot = self.envelope(
            "snapshot",
            status=status,
            progress=progress,
            warnings=job.warnings,
            segments=segments,
            next_line=self.last_line + 1,
        )
        return [snapshot] + ([self._terminal(terminal)] if terminal is not None else [])

    def shared(self, event: JobEvent) -> bool:
        """Whether this viewer's envelope for ``event`` is everyone's (no line of it already sent)."""
        return not isinstance(event, Partial) or all(line.seq > self.last_line for line in event.segments)

    def advance(self, seq: int, event: JobEvent) -> None:
        """Count ``event`` as sent without building its envelope (another viewer's encoding is used)."""
        self.seq = seq
        match event:
            case Partial() if event.segments:
                self.last_line = max(self.last_line, max(line.seq for line in event.segments))
            case Progress():
                self.progress = {"seconds_decoded": event.seconds_decoded, "duration": event.duration}
            case Final() | Failed() | Cancelled():
                self.finished = True

    def live(self, seq: int, event: JobEvent) -> dict[str, Any] | None:
        """The envelope for one live event, or None when it carries nothing new for this viewer."""
        self.seq = seq
        match event:
            case Progress():
                self.progress = {"seconds_decoded": event.seconds_decoded, "duration": event.duration}
                return self.envelope(
                    "progress",
                    seconds_decoded=event.seconds_decoded,
                    duration=event.duration,
                    chunks_published=event.chunks_published,
                    input_ended=event.input_ended,
                )
            case Partial():
                segments = self._new_lines(list(event.segments))
                return self.envelope("segments", segments=segments) if segments else None
            case Final() | Failed() | Cancelled():
                return self._terminal(event)
        return None

    def _terminal(self, event: Final | Failed | Cancelled) -> dict[str, Any]:
        self.finished = True
        match event:
            case Final():
                return self.envelope(
                    "final",
                    duration=event.duration,
                    segment_count=event.segment_count,
                    usage=msgspec.to_builtins(event.usage),
                    warnings=event.warnings,
                )
            case Failed():
                return self.envelope("failed", reason=event.reason)
        return self.envelope("cancelled", reason=event.reason)

    def heartbeat(self) -> dict[str, Any]:
        return self.envelope("heartbeat", last_line=self.last_line, progress=self.progress)

    def lagged(self) -> dict[str, Any]:
        return self.envelope(
            "lagged",
            last_line=self.last_line,
            message=f"This viewer fell behind; reconnect with after={self.last_line} to resume.",
        )


def _after(value: str | None) -> int:
    if value is None or value == "":
        return -1
    try:
        after = int(value)
    except ValueError:
        raise ApiError(400, "bad_request", f"after must be a line number, not {value!r}.") from None
    if after < -1:
        raise ApiError(400, "bad_request", "after must be -1 or more.")
    return after


async def _events(session: Session, viewer: Viewer, heartbeat_s: float) -> AsyncIterator[tuple[str, str]]:
    """``(type, JSON text)`` of each live envelope for one viewer, until the job's end (or it lags)."""
    while not session.finished:
        if viewer.lagged:
            yield "lagged", _json(session.lagged())
            return
        try:
            seq, event = viewer.queue.get_nowait()  # a burst costs no timer per event
        except asyncio.QueueEmpty:
            try:
                async with asyncio.timeout(heartbeat_s):  # a timer, not a task per wait (wait_for makes one)
                    seq, event = await viewer.queue.get()
            except TimeoutError:
                yield "heartbeat", _json(session.heartbeat())
                continue
        if viewer.lagged:  # what is queued is not all there is: say so rather than send a gap later
            yield "lagged", _json(session.lagged())
            return
        shared = session.shared(event)
        if shared and seq in viewer.encoded:
            session.advance(seq, event)
            text = viewer.encoded[seq]
        elif (envelope := session.live(seq, event)) is not None:
            text = _json(envelope)
            if shared:
                viewer.encoded[seq] = text
        else:
            continue
        yield _kind(event), text


def _json(envelope: dict[str, Any]) -> str:
    return msgspec.json.encode(envelope).decode()


def _kind(event: JobEvent) -> str:
    return {Progress: "progress", Partial: "segments", Final: "final", Failed: "failed", Cancelled: "cancelled"}[
        type(event)
    ]


@websocket("/v1/jobs/{job_id:str}/stream")
async def job_stream(socket: WebSocket, state: State, job_id: FromPath[str]) -> None:
    """The live transcript over a websocket (see the module docstring for the protocol)."""
    rt: Runtime = state.rt
    feeds: Feeds = state.feeds
    await socket.accept(subprotocols=token_subprotocol(socket) or None)
    session = Session(job_id, -1)
    try:
        await authorize(socket, job_id)
        session.last_line = _after(socket.query_params.get("after"))
    except ApiError as exc:
        await socket.send_json(session.envelope("error", code=exc.code, message=exc.message, retryable=False))
        await socket.close(code=_CLOSE_FOR_STATUS.get(exc.status, CLOSE_BAD_REQUEST), reason=exc.code)
        return
    try:
        async with feeds.watch(job_id) as (history, viewer):
            for envelope in await session.opening(rt.pool, history):
                await socket.send_text(_json(envelope))
            async for kind, text in _events(session, viewer, rt.settings.stream_heartbeat_s):
                await socket.send_text(text)
                if kind == "lagged":
                    await socket.close(code=CLOSE_LAGGED, reason="lagged")
                    return
        await socket.close(code=CLOSE_NORMAL)
    except WebSocketDisconnect:
        return


@get("/v1/jobs/{job_id:str}/events")
async def job_events(request: Request, state: State, job_id: FromPath[str]) -> ServerSentEvent:
    """The live transcript as server-sent events; ``Last-Event-ID: N`` resumes after line N."""
    await authorize(request, job_id)
    after = _after(request.headers.get("last-event-id") or request.query_params.get("after"))
    rt: Runtime = state.rt
    feeds: Feeds = state.feeds

    async def messages() -> AsyncIterator[ServerSentEventMessage]:
        session = Session(job_id, after)
        async with feeds.watch(job_id) as (history, viewer):
            for envelope in await session.opening(rt.pool, history):
                yield _sse(envelope["type"], _json(envelope), session)
            async for kind, text in _events(session, viewer, rt.settings.stream_heartbeat_s):
                yield _sse(kind, text, session)

    return ServerSentEvent(messages())


def _sse(kind: str, text: str, session: Session) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=text, event=kind, id=session.last_line)

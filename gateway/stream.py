"""A job's live transcript over a websocket (``/v1/jobs/{id}/stream``) and SSE (``/v1/jobs/{id}/events``).

One set of messages for both (:mod:`gateway.envelopes`). A viewer first gets a ``snapshot``
(status, progress, the lines after ``after``, as corrected so far; a long backlog continues at
once in ``segments`` pages), then live ``progress``, ``segments``, ``revised`` (a line the viewer
has been sent was corrected) and one terminal ``final``, ``failed`` or ``cancelled``;
``heartbeat`` when quiet, ``lagged`` (close 4408) when it fell behind, ``error``
when refused (close 4400 / 4401 / 4404 / 4410, or 4429 for a client or API key already holding
``SCRIBE_MAX_STREAMS`` live streams: SSE answers 429) or when the service cannot serve it now
(``retryable``, close 1013). Lines are numbered by their own ``seq`` and sent once: a viewer
resumes with ``?after=N`` (websocket) or ``Last-Event-ID: N`` (SSE, whose event ids are line
numbers). The stream ends after the terminal message, unless a websocket asks
``?follow=revisions``: then it stays open for the ``revised`` messages of later corrections (a
page showing a finished transcript that another window corrects) until the viewer leaves.

A websocket is read for as long as it is open (its messages are discarded), so the client's
pongs and close frames are seen. A viewer that reads nothing for ``SCRIBE_GATEWAY_SEND_TIMEOUT_S``
is closed as lagged and dropped (:mod:`gateway.server` aborts it if even that is not read).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

from litestar import Request, Response, WebSocket, get, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from core.messages import (
    Cancelled,
    Failed,
    Final,
    InterimLine,
    JobEvent,
    Lagging,
    LiveClaimed,
    LiveNotice,
    Partial,
    Progress,
    Revised,
    Segment,
)
from core.process import Runtime
from gateway.access import authorize, purged, token_subprotocol
from gateway.accounts import BAD_KEY, account_of, bad_key, key_subprotocol, scope_entries
from gateway.envelopes import (
    CancelledEnvelope,
    Envelope,
    ErrorEnvelope,
    FailedEnvelope,
    FinalEnvelope,
    Heartbeat,
    InterimEnvelope,
    Lagged,
    LaggingEnvelope,
    Lines,
    ProgressEnvelope,
    RevisedEnvelope,
    Snapshot,
    encode,
)
from gateway.errors import UNAVAILABLE, ApiError, unavailable
from gateway.feed import Feeds, Viewer
from gateway.limits import Limiter, Stream, client_address
from gateway.openapi import JOB_TOKEN, EventStreamOperation, error_responses
from gateway.schemas import JobProgress
from store import repo

CLOSE_NORMAL = 1000
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_TOO_MANY = 4429
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_LAGGED = 4408
CLOSE_PURGED = 4410
_CLOSE_FOR_STATUS = {
    400: CLOSE_BAD_REQUEST,
    401: CLOSE_UNAUTHORIZED,
    404: CLOSE_NOT_FOUND,
    410: CLOSE_PURGED,
    429: CLOSE_TOO_MANY,
}
PAGE_LINES = 100  # lines per snapshot page: a long job's backlog never makes one huge message
SSE_RETRY_MS = 3000  # how long an EventSource waits before it reconnects after a drop

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


_ENDED = "The job has ended and this client has seen its last line: nothing more comes (an EventSource stops)."


def _line_number(line: Segment) -> int:
    return line.seq


def _newer(line: Segment, other: Segment | None) -> Segment:
    """The later revision of one line (the line's own when they are the same)."""
    return other if other is not None and other.revision > line.revision else line


class Session:
    """What one viewer has been sent: the last event number and the last line number.

    Attributes:
        revisions: Corrections of lines not sent yet (their ``Revised`` came first): each goes out
            in place of its line when the line does.
        shown: The revision each corrected line had when it was sent, so a correction the viewer
            already has (the snapshot read it from the store) is not sent again.
    """

    def __init__(self, job_id: str, after: int) -> None:
        self.job_id = job_id
        self.seq = 0
        self.last_line = after
        self.finished = False
        self.progress = JobProgress(seconds_decoded=0.0, duration=None)
        self.revisions: dict[int, Segment] = {}
        self.shown: dict[int, int] = {}
        self.interim = 0  # the number of the last interim line sent (a live session's)

    def _new_lines(self, lines: list[Segment]) -> list[Segment]:
        fresh = sorted((line for line in lines if line.seq > self.last_line), key=lambda line: line.seq)
        if fresh:
            self.last_line = fresh[-1].seq
        if self.revisions:
            fresh = [_newer(line, self.revisions.pop(line.seq, None)) for line in fresh]
        self.shown.update((line.seq, line.revision) for line in fresh if line.revision)
        return fresh

    def _unseen_revision(self, event: Revised) -> bool:
        """Whether ``event`` corrects a line this viewer has been sent, in a revision it does not have."""
        line = event.segment
        return line.seq <= self.last_line and self.shown.get(line.seq, 0) < line.revision

    async def opening(self, pool: Any, history: list[JobEvent]) -> list[Envelope]:
        """The snapshot (lines from the store and the events so far, each once, in their latest
        revision) in pages, a ``revised`` message for each corrected line up to ``after`` (a viewer
        that resumes may have missed its correction), and the terminal event if the job has ended.

        Raises:
            ApiError: 410 for a job purged meanwhile.
        """
        job = await repo.get_job(pool, self.job_id)
        assert job is not None
        if job.purged_at is not None:
            raise purged()
        self.seq = len(history)
        lines = {line.seq: line for line in await repo.segments(pool, self.job_id)}
        progress = JobProgress(seconds_decoded=job.seconds_decoded, duration=job.duration)
        status, terminal = job.status, None
        for event in history:
            match event:
                case Partial():
                    # The store's copy of a line may be a later revision than the event's.
                    lines.update((line.seq, _newer(line, lines.get(line.seq))) for line in event.segments)
                    status = "running" if status == "queued" else status
                case Revised():
                    line = event.segment
                    lines[line.seq] = _newer(line, lines.get(line.seq))
                case Progress():
                    progress = JobProgress(seconds_decoded=event.seconds_decoded, duration=event.duration)
                    status = "running" if status == "queued" else status
                case Final() | Failed() | Cancelled():
                    terminal = event
        if terminal is None and job.finished:  # the events may have expired, or not arrived yet: the store says
            terminal = await _terminal_from_store(pool, job)
        if terminal is not None:
            status = _STATUS[type(terminal)]
        seen = self.last_line
        corrected = sorted((line for line in lines.values() if line.seq <= seen and line.revision), key=_line_number)
        fresh = self._new_lines(list(lines.values()))
        self.progress = progress
        pages = [fresh[start : start + PAGE_LINES] for start in range(0, len(fresh), PAGE_LINES)] or [[]]
        first = pages[0]
        out: list[Envelope] = [
            Snapshot(
                job_id=self.job_id,
                seq=self.seq,
                status=status,  # type: ignore[arg-type]
                progress=progress,
                warnings=job.warnings,
                segments=first,
                next_line=(first[-1].seq + 1) if first else self.last_line + 1,
                more_lines=len(pages) > 1,
            )
        ]
        out += [
            Lines(job_id=self.job_id, seq=self.seq, segments=page, more_lines=index < len(pages) - 1)
            for index, page in enumerate(pages[1:], start=1)
        ]
        for line in corrected:
            self.shown[line.seq] = line.revision
            out.append(RevisedEnvelope(job_id=self.job_id, seq=self.seq, segment=line))
        if terminal is not None:
            out.append(self._terminal(terminal))
        return out

    def shared(self, event: JobEvent) -> bool:
        """Whether this viewer's envelope for ``event`` is everyone's: no line of it already sent and
        none to be replaced by a correction this viewer holds; a correction of a line it has."""
        match event:
            case Partial():
                return all(line.seq > self.last_line and line.seq not in self.revisions for line in event.segments)
            case Revised():
                return self._unseen_revision(event)
        return True

    def advance(self, seq: int, event: JobEvent) -> None:
        """Count ``event`` as sent without building its envelope (another viewer's encoding is used)."""
        self.seq = seq
        match event:
            case Partial() if event.segments:
                self.last_line = max(self.last_line, max(line.seq for line in event.segments))
                self.shown.update((line.seq, line.revision) for line in event.segments if line.revision)
            case Revised():
                self.shown[event.segment.seq] = event.segment.revision
            case Progress():
                self.progress = JobProgress(seconds_decoded=event.seconds_decoded, duration=event.duration)
            case Final() | Failed() | Cancelled():
                self.finished = True

    def live(self, seq: int, event: JobEvent) -> Envelope | None:
        """The envelope for one live event, or None when it carries nothing new for this viewer."""
        self.seq = seq
        match event:
            case Progress():
                self.progress = JobProgress(seconds_decoded=event.seconds_decoded, duration=event.duration)
                return ProgressEnvelope(
                    job_id=self.job_id,
                    seq=seq,
                    seconds_decoded=event.seconds_decoded,
                    duration=event.duration,
                    chunks_published=event.chunks_published,
                    input_ended=event.input_ended,
                )
            case Partial():
                segments = self._new_lines(list(event.segments))
                return Lines(job_id=self.job_id, seq=seq, segments=segments) if segments else None
            case Revised():
                line = event.segment
                if line.seq > self.last_line:  # not sent yet: it goes out corrected when it does
                    self.revisions[line.seq] = _newer(line, self.revisions.get(line.seq))
                    return None
                if not self._unseen_revision(event):
                    return None
                self.shown[line.seq] = line.revision
                return RevisedEnvelope(job_id=self.job_id, seq=seq, segment=line)
            case Final() | Failed() | Cancelled():
                return self._terminal(event)
        return None

    def _terminal(self, event: Final | Failed | Cancelled) -> Envelope:
        self.finished = True
        match event:
            case Final():
                return FinalEnvelope(
                    job_id=self.job_id,
                    seq=self.seq,
                    duration=event.duration,
                    segment_count=event.segment_count,
                    usage=event.usage,
                    warnings=event.warnings,
                )
            case Failed():
                return FailedEnvelope(job_id=self.job_id, seq=self.seq, reason=event.reason)
        return CancelledEnvelope(job_id=self.job_id, seq=self.seq, reason=event.reason)

    def notice(self, notice: LiveNotice) -> Envelope | None:
        """The envelope of a live session's notice, or None for an interim older than the one sent."""
        match notice:
            case InterimLine():
                if notice.number <= self.interim:
                    return None
                self.interim = notice.number
                return InterimEnvelope(
                    job_id=self.job_id,
                    seq=self.seq,
                    start=notice.start,
                    end=notice.end,
                    stable=notice.stable,
                    tentative=notice.tentative,
                    chars=notice.chars,
                    next_chunk=notice.next_chunk,
                )
            case Lagging():
                return LaggingEnvelope(
                    job_id=self.job_id,
                    seq=self.seq,
                    delay_s=notice.delay_s,
                    message=f"The transcript is {notice.delay_s:.0f} s behind the audio: this server is busy.",
                )
        return None

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(job_id=self.job_id, seq=self.seq, last_line=self.last_line, progress=self.progress)

    def lagged(self, last_line: int | None = None) -> Lagged:
        line = self.last_line if last_line is None else last_line
        return Lagged(
            job_id=self.job_id,
            seq=self.seq,
            last_line=line,
            message=f"This viewer fell behind; reconnect with after={line} to resume.",
        )

    def error(self, exc: ApiError) -> ErrorEnvelope:
        return ErrorEnvelope(
            job_id=self.job_id,
            seq=self.seq,
            code=exc.code,
            message=exc.message,
            retryable=exc.status >= 500 or exc.status == 429,
        )


def _after(value: str | None) -> int:
    if value is None or value == "":
        return -1
    if len(value) > 12 or not value.lstrip("-").isdigit():
        raise ApiError(400, "bad_request", f"after must be a line number, not {value[:40]!r}.")
    after = int(value)
    if after < -1:
        raise ApiError(400, "bad_request", "after must be -1 or more.")
    return after


async def _events(
    session: Session, viewer: Viewer, heartbeat_s: float, *, follow: bool = False
) -> AsyncIterator[tuple[str, str]]:
    """``(type, JSON text)`` of each live envelope for one viewer, until the job's end (or it lags).

    With ``follow`` it goes on after the end with the ``revised`` messages of later corrections (and
    heartbeats) until the viewer leaves.
    """
    while follow or not session.finished:
        if viewer.purged:
            yield "error", encode(session.error(purged()))
            return
        if viewer.lagged:
            yield "lagged", encode(session.lagged())
            return
        try:
            seq, event = viewer.queue.get_nowait()  # a burst costs no timer per event
        except asyncio.QueueEmpty:
            try:
                async with asyncio.timeout(heartbeat_s):  # a timer, not a task per wait (wait_for makes one)
                    seq, event = await viewer.queue.get()
            except TimeoutError:
                yield "heartbeat", encode(session.heartbeat())
                continue
        if viewer.purged:  # woken by the purge (its marker is not an event of the job)
            continue
        if viewer.lagged:  # what is queued is not all there is: say so rather than send a gap later
            yield "lagged", encode(session.lagged())
            return
        if isinstance(event, InterimLine | Lagging | LiveClaimed):  # a live session's notice: its own envelope
            if not session.finished and (notice := session.notice(event)) is not None:
                yield str(notice.__struct_config__.tag), encode(notice)
            continue
        if session.finished and not isinstance(event, Revised):
            continue  # following after the end: only corrections are news
        shared = session.shared(event)
        if shared and seq in viewer.encoded:
            session.advance(seq, event)
            text = viewer.encoded[seq]
        elif (envelope := session.live(seq, event)) is not None:
            text = encode(envelope)
            if shared:
                viewer.encoded[seq] = text
        else:
            continue
        yield _kind(event), text


_KINDS: dict[type, str] = {
    Progress: "progress",
    Partial: "segments",
    Revised: "revised",
    Final: "final",
    Failed: "failed",
    Cancelled: "cancelled",
}


def _kind(event: JobEvent) -> str:
    return _KINDS[type(event)]


def _key_prefix(connection: Any) -> str | None:
    account = account_of(connection)
    return None if account is None else account.prefix


@contextlib.contextmanager
def _counted(limiter: Limiter, connection: Any) -> Iterator[Stream | None]:
    held = limiter.open_stream(client_address(connection), _key_prefix(connection))
    try:
        yield held
    finally:
        if held is not None:
            held.close()


@websocket("/v1/jobs/{job_id:str}/stream")
async def job_stream(socket: WebSocket[Any, Any, Any], state: State, job_id: FromPath[str]) -> None:
    """The live transcript over a websocket (see the module docstring for the protocol)."""
    rt: Runtime = state.rt
    limiter: Limiter = state.limiter
    # A browser offers its credentials as subprotocols; the answer must name one it offered.
    await socket.accept(subprotocols=token_subprotocol(socket) or key_subprotocol(socket.scope) or None)
    session = Session(job_id, -1)
    if scope_entries(socket.scope).get(BAD_KEY):
        await _refuse(socket, session, bad_key(), CLOSE_UNAUTHORIZED)
        return
    with _counted(limiter, socket) as admitted:
        if admitted is None:
            await _refuse(socket, session, limiter.stream_refusal(_key_prefix(socket)), CLOSE_TOO_MANY)
            return
        reader = asyncio.create_task(_discard_incoming(socket))
        writer = asyncio.create_task(_serve_stream(socket, session, rt, state.feeds))
        try:
            await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)


async def _discard_incoming(socket: WebSocket[Any, Any, Any]) -> None:
    """Read until the client goes: its pongs and close frames are handled below us; messages are ignored."""
    with contextlib.suppress(WebSocketDisconnect):
        while (await socket.receive())["type"] != "websocket.disconnect":
            pass


async def _refuse(socket: WebSocket[Any, Any, Any], session: Session, exc: ApiError, code: int) -> None:
    with contextlib.suppress(WebSocketDisconnect, OSError):
        await socket.send_text(encode(session.error(exc)))
        await socket.close(code=code, reason=exc.code)


async def _serve_stream(socket: WebSocket[Any, Any, Any], session: Session, rt: Runtime, feeds: Feeds) -> None:
    try:
        job = await authorize(socket, session.job_id)
        session.last_line = _after(socket.query_params.get("after"))
        if job.purged_at is not None:
            raise purged()
        if not rt.nc.is_connected:
            raise unavailable("The live stream")
    except ApiError as exc:
        code = CLOSE_TRY_AGAIN_LATER if exc.status >= 500 else _CLOSE_FOR_STATUS.get(exc.status, CLOSE_BAD_REQUEST)
        await _refuse(socket, session, exc, code)
        return
    await forward(socket, session, rt, feeds, state_stalls(socket))


async def forward(
    socket: WebSocket[Any, Any, Any], session: Session, rt: Runtime, feeds: Feeds, stalls: Stalls
) -> None:
    """Send the job's snapshot, then its events, to an accepted and authorized websocket, until the end."""
    try:
        async with feeds.watch(session.job_id) as (history, viewer):
            sent = _Sent(session.last_line)
            try:
                opening = await session.opening(rt.pool, history)
            except ApiError as exc:
                await _refuse(socket, session, exc, _CLOSE_FOR_STATUS.get(exc.status, CLOSE_BAD_REQUEST))
                return
            for envelope in opening:
                if not await stalls.send(socket, encode(envelope)):
                    await _close_lagged(socket, session, sent.line)
                    return
                sent.note(envelope)
            follow = socket.query_params.get("follow") == "revisions"
            async for kind, text in _events(session, viewer, rt.settings.stream_heartbeat_s, follow=follow):
                if not await stalls.send(socket, text):
                    await _close_lagged(socket, session, sent.line)
                    return
                sent.line = session.last_line
                if kind == "lagged":
                    await socket.close(code=CLOSE_LAGGED, reason="lagged")
                    return
                if kind == "error":
                    await socket.close(code=CLOSE_PURGED, reason="purged")
                    return
        await socket.close(code=CLOSE_NORMAL)
    except (WebSocketDisconnect, OSError):
        return
    except UNAVAILABLE:  # NATS or PostgreSQL went away mid-stream: say so; the viewer resumes later
        await _refuse(socket, session, unavailable("The live stream"), CLOSE_TRY_AGAIN_LATER)


class _Sent:
    """The last line the client has been sent, whatever the session has prepared."""

    def __init__(self, line: int) -> None:
        self.line = line

    def note(self, envelope: Envelope) -> None:
        segments = getattr(envelope, "segments", None)
        if segments:
            self.line = max(self.line, segments[-1].seq)


class Stalls:
    """Gives up on websocket sends that wait longer than ``limit_s`` for the client to read.

    One watchdog task for the process, not a timer per send: a timer per send per viewer cost
    the fan-out of 1,000 viewers a third more CPU and doubled its p99 (bench/gateway_load.py).
    """

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.sending: dict[asyncio.Task[Any], float] = {}
        self.given_up: set[asyncio.Task[Any]] = set()

    async def send(self, socket: WebSocket[Any, Any, Any], text: str) -> bool:
        """Send one message; False when the client read nothing for ``limit_s`` (nothing was sent)."""
        task = asyncio.current_task()
        assert task is not None
        self.sending[task] = asyncio.get_running_loop().time()
        try:
            await socket.send_text(text)
        except asyncio.CancelledError:
            if task not in self.given_up:
                raise
            self.given_up.discard(task)
            task.uncancel()
            return False
        finally:
            self.sending.pop(task, None)
        return True

    async def watch(self) -> None:
        """Cancel the sends that have waited too long (run as one task per process)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self.limit_s / 2))
            late = loop.time() - self.limit_s
            for task, started in list(self.sending.items()):
                if started < late and task not in self.given_up:
                    self.given_up.add(task)
                    task.cancel()


def state_stalls(socket: WebSocket[Any, Any, Any]) -> Stalls:
    stalls: Stalls = socket.app.state.stalls
    return stalls


async def _close_lagged(socket: WebSocket[Any, Any, Any], session: Session, last_line: int) -> None:
    """The client stopped reading: its last words go out without waiting for it (see gateway.server)."""
    with contextlib.suppress(WebSocketDisconnect, OSError):
        await socket.send_text(encode(session.lagged(last_line)))
        await socket.close(code=CLOSE_LAGGED, reason="lagged")


@get(
    "/v1/jobs/{job_id:str}/events",
    security=JOB_TOKEN,
    operation_class=EventStreamOperation,
    responses={
        204: ResponseSpec(None, description=_ENDED, generate_examples=False),
        **error_responses(400, 401, 404, 410, 429, 503),
    },
    summary="The live transcript as server-sent events",
)
async def job_events(
    request: Request[Any, Any, Any],
    state: State,
    job_id: FromPath[str],
    last_event_id: Annotated[
        str,
        HeaderParameter(
            name="Last-Event-ID",
            description="Resume after this line number (the last event's id).",
            pattern=r"^(-1|[0-9]{1,12})?$",
        ),
    ] = "",
    after: Annotated[
        int, QueryParameter(description="As Last-Event-ID, for a first request: the last line already seen.", ge=-1)
    ] = -1,
) -> ServerSentEvent | Response[None]:
    """The live transcript as server-sent events; ``Last-Event-ID: N`` resumes after line N.

    A reconnect to an ended job that has already seen its last line gets 204, which stops an
    EventSource from reconnecting.
    """
    job = await authorize(request, job_id)
    if job.purged_at is not None:
        raise purged()
    resumed = bool(last_event_id)
    start = _after(last_event_id) if resumed else after
    rt: Runtime = state.rt
    if not rt.nc.is_connected:
        raise unavailable("The live stream")
    if resumed and job.finished and start >= job.next_segment - 1:
        return Response(None, status_code=204)
    feeds: Feeds = state.feeds
    limiter: Limiter = state.limiter
    held = limiter.open_stream(client_address(request), _key_prefix(request))
    if held is None:
        raise limiter.stream_refusal(_key_prefix(request))

    async def messages() -> AsyncIterator[ServerSentEventMessage]:
        session = Session(job_id, start)
        sent = _Sent(start)  # event ids are the last line sent so far, page by page
        try:
            async with feeds.watch(job_id) as (history, viewer):
                for index, envelope in enumerate(await session.opening(rt.pool, history)):
                    sent.note(envelope)
                    tag = str(envelope.__struct_config__.tag)
                    yield _sse(tag, encode(envelope), sent.line, first=index == 0)
                async for kind, text in _events(session, viewer, rt.settings.stream_heartbeat_s):
                    yield _sse(kind, text, session.last_line)
        except ApiError as exc:
            yield _sse("error", encode(session.error(exc)), sent.line)
        finally:
            held.close()

    stream = messages()
    weakref.finalize(stream, held.close)  # a response never sent: uncounted when its generator goes
    return ServerSentEvent(stream, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _sse(kind: str, text: str, last_line: int, *, first: bool = False) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=text, event=kind, id=last_line, retry=SSE_RETRY_MS if first else None)

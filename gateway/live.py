"""``WS /v1/live``: speak, and read the transcript as it is made.

The client declares its audio in the query (``encoding=linear16&sample_rate=16000&channels=1``,
``encoding=webm`` or ``encoding=ogg``; ``romanization=`` as for ``POST /v1/jobs``) and sends it in
binary frames of at most 64 KiB. A live session is a job (source ``live:<encoding>``):

1. The job is made within the caller's plan (keys mode: a key, the ``key.<KEY>`` subprotocol from a
   browser; live minutes are a quota of their own) and offered to the transcribers on
   ``scribe.live.sessions``. One must take it within ``SCRIBE_LIVE_CLAIM_S``: otherwise ``error``
   ``busy`` and close 1013, never a session that silently falls behind.
2. The first message is ``session``: the job's id, token and links (``page`` included), as a 202
   from ``POST /v1/jobs``. Every other way of reading a job works while the session runs and after.
3. Frames are decoded as they come (:class:`streamer.live.LiveDecoder`, in a thread), written for
   playback, and published to the transcriber as 16 kHz PCM on ``scribe.live.audio.<job>``. A
   sender ahead of real time by more than ``SCRIBE_LIVE_AHEAD_S`` waits: the server stops reading.
4. The socket receives the job's events as ``/v1/jobs/{id}/stream`` does (``snapshot``,
   ``segments``, ``progress``, ``final`` ...), plus ``interim`` and ``lagging``.
5. ``{"type": "close_stream"}``, no frame for ``SCRIBE_LIVE_IDLE_S``, or ``SCRIBE_LIVE_MAX_S`` (or the
   plan's live minutes: with a warning) ends the session: what was heard is transcribed and
   committed, ``final`` comes, then close 1000. A client that drops ends it too; the job keeps what
   it heard. ``{"type": "keep_alive"}`` keeps a quiet session open without audio.

Bad input gets an ``error`` message and a close code: 4400 for a query or frame the service cannot
use (an encoding that does not decode is told within the first 64 KiB), 4401 without a key where
one is needed, 4403 over a quota, 4429 over the client's open streams; the job keeps what it heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import msgspec
import numpy as np
from litestar import WebSocket, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect

from core.messages import (
    ROMANIZATIONS,
    JobOptions,
    LiveStarted,
    Romanization,
)
from core.process import Runtime
from gateway import accounts, budget
from gateway.access import job_token, token_secret
from gateway.accounts import BAD_KEY, Account, account_of, bad_key, key_subprotocol, needs_key, scope_entries
from gateway.envelopes import SessionEnvelope, encode
from gateway.errors import UNAVAILABLE, ApiError, unavailable
from gateway.limits import Limiter
from gateway.stream import (
    _CLOSE_FOR_STATUS,
    CLOSE_BAD_REQUEST,
    CLOSE_TOO_MANY,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORIZED,
    Session,
    Stalls,
    _counted,
    _key_prefix,
    _refuse,
    forward,
    state_stalls,
)
from gateway.submit import job_links
from store import accounts as account_store
from store import repo
from streamer.errors import LiveInputError, human_duration
from streamer.live import MAX_FRAME_BYTES, LiveDecoder, LiveFormat
from streamer.sessions import BUSY, SessionAudio, offer

logger = logging.getLogger(__name__)

CLOSE_FORBIDDEN = 4403
PROGRESS_S = 5.0  # how often the seconds heard are written to the job (quotas count them as they pass)
FINAL_WAIT_S = 120.0  # after the end, how long the socket waits for the transcript's last lines

End = Literal["closed", "idle", "limit", "gone", "refused"]


class ControlMessage(msgspec.Struct):
    """A text frame from the client: ``{"type": "close_stream"}`` or ``{"type": "keep_alive"}``."""

    type: Literal["close_stream", "keep_alive"]


_control = msgspec.json.Decoder(ControlMessage)


class LiveAudio:
    """The client's frames decoded (:class:`streamer.live.LiveDecoder`) into the session's audio."""

    def __init__(self, rt: Runtime, job_id: str, fmt: LiveFormat, folder: Path) -> None:
        self.job_id = job_id
        self.decoder = LiveDecoder(fmt)
        self.out = SessionAudio(rt, job_id, folder)

    @property
    def seconds(self) -> float:
        return self.out.seconds

    def _decode(self, frame: bytes) -> np.ndarray:
        samples = self.decoder.feed(frame)
        self.out.keep(samples)
        return samples

    async def feed(self, frame: bytes) -> None:
        """Decode one frame (in a thread: a container's frame may take milliseconds) and publish what is due.

        Raises:
            LiveInputError: The frame is too large, or the bytes are not the declared encoding.
        """
        await self.out.add(await asyncio.to_thread(self._decode, frame))

    def _close(self) -> np.ndarray:
        tail = self.decoder.close()
        self.out.keep(tail)
        return tail

    async def end(self) -> None:
        with contextlib.suppress(LiveInputError):  # said already, or a cut container: what decoded is kept
            await self.out.add(await asyncio.to_thread(self._close))
        await self.out.end()


@websocket("/v1/live")
async def live_session(socket: WebSocket[Any, Any, Any], state: State) -> None:
    """Live audio in, the job's transcript out (see the module docstring for the protocol)."""
    rt: Runtime = state.rt
    limiter: Limiter = state.limiter
    await socket.accept(subprotocols=key_subprotocol(socket.scope) or None)
    session = Session("", -1)
    account = account_of(socket)
    if scope_entries(socket.scope).get(BAD_KEY):
        await _refuse(socket, session, bad_key(), CLOSE_UNAUTHORIZED)
        return
    if rt.settings.auth == "keys" and account is None:
        message = (
            "Live audio needs an API key: send it as the subprotocol key.<KEY> (a browser) or as "
            "Authorization: Bearer sk_…."
        )
        await _refuse(socket, session, needs_key(message), CLOSE_UNAUTHORIZED)
        return
    with _counted(limiter, socket) as admitted:
        if admitted is None:
            await _refuse(socket, session, limiter.stream_refusal(_key_prefix(socket)), CLOSE_TOO_MANY)
            return
        try:
            fmt = LiveFormat.from_query(socket.query_params)
            options = JobOptions(romanization=_romanization(socket.query_params.get("romanization")))
            if not rt.nc.is_connected:
                raise unavailable("Live audio")
            job_id, limit_s = await _create(rt, fmt, options, account)
        except LiveInputError as exc:
            await _refuse(socket, session, ApiError(400, "bad_audio", exc.reason), CLOSE_BAD_REQUEST)
            return
        except ApiError as exc:
            await _refuse(socket, session, exc, _close_code(exc))
            return
        except UNAVAILABLE:
            await _refuse(socket, session, unavailable("Live audio"), CLOSE_TRY_AGAIN_LATER)
            return
        session.job_id = job_id
        started = LiveStarted(
            job_id=job_id, user_id=None if account is None else account.user, options=options, max_seconds=limit_s
        )
        if not await offer(rt, started):
            await _refuse(socket, session, ApiError(503, "busy", BUSY), CLOSE_TRY_AGAIN_LATER)
            return
        token = job_token(await token_secret(socket), job_id)
        with contextlib.suppress(WebSocketDisconnect, OSError):
            await socket.send_text(
                encode(SessionEnvelope(job_id=job_id, seq=0, token=token, links=job_links(job_id, token)))
            )
        with tempfile.TemporaryDirectory(prefix="scribe-live-") as folder:
            await _run(socket, session, rt, state, LiveAudio(rt, job_id, fmt, Path(folder)), limit_s)


async def _run(
    socket: WebSocket[Any, Any, Any], session: Session, rt: Runtime, state: State, audio: LiveAudio, limit_s: float
) -> None:
    """Audio in and events out at once, until the job's end or the client's."""
    stalls: Stalls = state_stalls(socket)
    reader = asyncio.create_task(_receive(socket, rt, audio, limit_s))
    writer = asyncio.create_task(forward(socket, session, rt, state.feeds, stalls))
    try:
        await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
        if not reader.done():  # the job ended first (cancelled, failed) or the client stopped reading
            await _stop(reader)
            await audio.end()
            return
        end, problem = reader.result()
        if end == "refused" and problem is not None:  # said before the job's end can reach the client
            await _stop(writer)
            await _refuse(socket, session, problem, CLOSE_BAD_REQUEST)
            await audio.end()
            return
        await audio.end()
        if end == "gone":
            return
        with contextlib.suppress(TimeoutError):  # the last lines, final, close 1000 (forward closes)
            async with asyncio.timeout(FINAL_WAIT_S):
                await asyncio.shield(writer)
    finally:
        for task in (reader, writer):
            await _stop(task)


async def _stop(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it to end, cancelling again where a library swallowed the cancellation
    (nats-py's requests can: a feed starting then went on to stream events)."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.2)
    if not task.cancelled():
        task.exception()  # retrieved: an error after the session's end is not news


async def _receive(
    socket: WebSocket[Any, Any, Any], rt: Runtime, audio: LiveAudio, limit_s: float
) -> tuple[End, ApiError | None]:
    """Read frames until the session ends; how it ended (and, when refused, why)."""
    settings = rt.settings
    loop = asyncio.get_running_loop()
    began = loop.time()
    stored_at = began
    try:
        while True:
            try:
                async with asyncio.timeout(settings.live_idle_s):
                    message = await socket.receive()
            except TimeoutError:
                return "idle", None
            if message["type"] == "websocket.disconnect":
                return "gone", None
            frame, text = message.get("bytes"), message.get("text")
            if isinstance(frame, bytes):
                if len(frame) > MAX_FRAME_BYTES:
                    reason = (
                        f"An audio frame of {len(frame):,} bytes is too large: send at most {MAX_FRAME_BYTES:,} "
                        "bytes per message (MediaRecorder's 250 ms slices are well under it)."
                    )
                    return "refused", ApiError(400, "bad_audio", reason)
                try:
                    await audio.feed(frame)
                except LiveInputError as exc:
                    return "refused", ApiError(400, "bad_audio", exc.reason)
            elif isinstance(text, str):
                try:
                    control = _control.decode(text)
                except (msgspec.ValidationError, msgspec.DecodeError):
                    said = text[:60]
                    return "refused", ApiError(
                        400,
                        "bad_request",
                        f'A text message must be {{"type": "close_stream"}} or {{"type": "keep_alive"}}, '
                        f"not {said!r}: send audio as binary messages.",
                    )
                if control.type == "close_stream":
                    return "closed", None
            if audio.seconds >= limit_s:
                await _warn_limit(rt, audio.job_id, limit_s)
                return "limit", None
            now = loop.time()
            if now - stored_at >= PROGRESS_S:
                stored_at = now
                await repo.set_progress(rt.pool, audio.job_id, round(audio.seconds, 3))
            ahead = audio.seconds - (now - began)
            if ahead > settings.live_ahead_s:  # faster than real time: stop reading for a while
                await asyncio.sleep(ahead - settings.live_ahead_s)
    except WebSocketDisconnect:
        return "gone", None


async def _warn_limit(rt: Runtime, job_id: str, limit_s: float) -> None:
    await repo.add_warning(
        rt.pool,
        job_id,
        f"The live session stopped at its limit of {human_duration(limit_s)}: the audio after it was not "
        "transcribed. Start a new session to go on.",
    )


def _romanization(value: str | None) -> Romanization:
    if value is None or value == "":
        return "both"
    if value not in ROMANIZATIONS:
        raise ApiError(
            400, "bad_request", f"romanization must be one of {', '.join(ROMANIZATIONS)}, not {value[:20]!r}."
        )
    return value  # type: ignore[return-value]


def _close_code(exc: ApiError) -> int:
    if exc.status >= 500:
        return CLOSE_TRY_AGAIN_LATER
    return {**_CLOSE_FOR_STATUS, 403: CLOSE_FORBIDDEN}.get(exc.status, CLOSE_BAD_REQUEST)


async def _create(rt: Runtime, fmt: LiveFormat, options: JobOptions, account: Account | None) -> tuple[str, float]:
    """Make the session's job within the caller's plan: its id and how many seconds it may run.

    Raises:
        ApiError: 403 over a quota (live minutes included), 503 past the daily budget when jobs are refused.
    """
    await budget.refuse_when_spent(rt)
    job_id = uuid.uuid4().hex
    limit_s = rt.settings.live_max_s
    title = f"Live session, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    async with rt.pool.acquire() as conn, conn.transaction():
        if account is not None:
            used = await account_store.usage(conn, account.user, lock=True)
            accounts.check_quotas(account.plan, used)
            for cap in (accounts.live_seconds_left(account.plan, used), accounts.max_seconds(account.plan)):
                if cap is not None:
                    limit_s = min(limit_s, cap)
        user = None if account is None else account.user
        await repo.create_job(conn, job_id, f"live:{fmt.encoding}", user_id=user, options=options, title=title)
    return job_id, limit_s

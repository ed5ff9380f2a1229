"""``scribe live``: speak (or play a file) into ``WS /v1/live`` and read the lines as they are made.

Audio comes from stdin (``ffmpeg -loglevel error -f pulse -i default -ac 1 -ar 16000 -f s16le - |
scribe live``, quiet: ffmpeg's progress would garble the redrawn line on the same terminal;
``--encoding``, ``--sample-rate``, ``--channels`` declare it) or from a file decoded here and sent
at real time (``scribe live FILE``; ``--speed`` sends it faster). Committed lines are drawn as
``scribe transcribe`` draws them, with their readings; on a terminal the line in progress is
redrawn in place under them, its unsettled end dimmed. End of input, Ctrl-C or SIGTERM ends the
session: what was heard is transcribed, and the transcript is written in ``--format`` to stdout or
``-o``. A second Ctrl-C leaves at once (exit 130); the job keeps what it heard.

Embedded by default: the servers, the services and a gateway start in this process on a free
loopback port, and the session goes over the same websocket as with ``--server URL`` (a running
gateway; ``--api-key`` or ``SCRIBE_API_KEY`` where it has accounts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import signal
import socket
import sys
import time
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlencode, urlsplit

import msgspec

from core.messages import Segment
from core.settings import Settings
from scribe.cli import Display, _write, job_romanization
from scribe.formats import clock, reading_lines

RATE = 16000
FRAME_S = 0.25
STDIN_FRAME_BYTES = 16 * 1024  # what is read from stdin at a time (under the 64 KiB a frame may hold)
_segments = msgspec.json.Decoder(list[Segment])


class LiveError(Exception):
    """The session was refused or failed: the server's sentence."""


class LiveDisplay(Display):
    """``scribe transcribe``'s lines, with the line in progress drawn under them on a terminal."""

    def __init__(self, stream: TextIO, *, romanization: str, quiet: bool) -> None:
        super().__init__(stream, romanization=romanization, quiet=quiet)
        self.status = ""
        self.heard = 0.0
        self.speaking = False  # a line is in progress (its interim is the status)
        self.closed = False  # all the audio is sent

    def lines(self, segments: list[Segment]) -> None:
        for segment in segments:
            self.line(f"[{clock(segment.start)}] {segment.text}")
            for reading in reading_lines(segment, self.romanization):
                self.line(f"        {reading}")

    def interim(self, stable: str, tentative: str, start: float) -> None:
        """Redraw the line in progress in place: its newest end, on one terminal row (a wrapped row could
        not be cleared), the unsettled part dimmed."""
        self.speaking = bool(stable or tentative)
        if not self.tty or not self.speaking:
            self.listening()
            return
        prefix = f"[{clock(start)}] "
        room = shutil.get_terminal_size().columns - len(prefix) - 2
        stable, tentative = _tail(stable, tentative, room)
        self.status = f"{prefix}{stable}\x1b[2m{tentative}\x1b[0m"
        self.draw()

    def listening(self, heard: float | None = None) -> None:
        """The time sent so far, redrawn while no line is in progress (after the end: that the end is awaited)."""
        self.heard = self.heard if heard is None else heard
        if not self.speaking:
            self.say("transcribing the last words…" if self.closed else f"listening… {clock(self.heard)}")

    def close(self) -> None:
        self.closed = True
        self.listening()

    def say(self, status: str) -> None:
        """A status line of its own (starting, listening, ending) on a terminal."""
        if self.tty:
            self.status = status
            self.draw()


def _columns(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _tail(stable: str, tentative: str, room: int) -> tuple[str, str]:
    """The end of ``stable`` + ``tentative`` that fits in ``room`` terminal columns, led by "…" when cut."""
    if _columns(stable + tentative) <= room:
        return stable, tentative
    whole = stable + tentative
    keep = len(whole)
    while keep and _columns(whole[len(whole) - keep :]) > room - 1:
        keep -= 1
    cut = len(whole) - keep
    return "…" + stable[cut:], tentative[max(0, cut - len(stable)) :]


async def live(args: argparse.Namespace, settings: Settings) -> int:
    """Run one live session on ``--server`` or on an embedded stack; the exit status.

    SIGINT and SIGTERM are taken over for the whole run (:class:`Stops`): outside a session they stop
    it as ``scribe transcribe`` stops (128 + the signal), so the embedded servers stop too.
    """
    server = args.server or settings.server_url
    display = LiveDisplay(sys.stderr, romanization=args.romanization, quiet=args.quiet)
    with Stops(display) as stops:
        try:
            if server:
                return await session(args, server, args.api_key or settings.api_key, display, stops)
            display.say("starting the servers and the speech model…")
            async with _embedded_gateway(settings) as base:
                return await session(args, base, "", display, stops, remote=False)
        except asyncio.CancelledError:
            if not stops.received:
                raise
            display.finish()
            return 128 + stops.received[0]


class Stops:
    """SIGINT and SIGTERM while ``scribe live`` runs.

    During a session the first one ends it as the end of input does (``close_stream``: what was heard
    is transcribed and written); any other cancels the run: the one while it starts, or a second
    Ctrl-C from someone who will not wait for the last lines (the job keeps what it heard). The
    cancellation is repeated every second until the run has ended, for the reason given in
    :func:`scribe.cli.interruptible` (Python 3.11 can lose one).
    """

    def __init__(self, display: LiveDisplay) -> None:
        self.display = display
        self.ending = asyncio.Event()
        self.in_session = False
        self.received: list[int] = []
        self.cancelling = False
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()

    def __enter__(self) -> Stops:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals off the main thread
                self._loop.add_signal_handler(sig, self._on, sig)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.remove_signal_handler(sig)

    def _on(self, sig: int) -> None:
        self.received.append(sig)
        if self.in_session and len(self.received) == 1:
            self.ending.set()
            self.display.line("scribe: ending the session: transcribing what was heard (Ctrl-C again to leave now)")
            return
        if not self.cancelling:
            self.cancelling = True
            self._cancel()

    def _cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            self._loop.call_later(1.0, self._cancel)


@contextlib.asynccontextmanager
async def _embedded_gateway(settings: Settings) -> AsyncIterator[str]:
    """Every service and a gateway on a free loopback port, in this process; yields its base URL."""
    from gateway import server as gateway_server
    from gateway.app import create_app
    from scribe.runtime import SERVICES, runtime

    async with runtime(settings, name="scribe-live") as rt:
        await rt.start(SERVICES)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        cfg = rt.settings.with_(gateway_host="127.0.0.1", gateway_port=port)
        server = gateway_server.Server(gateway_server.config(create_app(cfg), cfg, host="127.0.0.1", port=port))
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
                if serving.done():
                    serving.result()
                await asyncio.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await serving


def _query(args: argparse.Namespace) -> dict[str, str]:
    if args.input:  # a file: decoded here, sent as 16 kHz mono PCM
        query = {"encoding": "linear16", "sample_rate": str(RATE), "channels": "1"}
    elif args.encoding == "linear16":
        query = {"encoding": "linear16", "sample_rate": str(args.sample_rate), "channels": str(args.channels)}
    else:
        query = {"encoding": args.encoding}
    query["romanization"] = job_romanization(args.romanization)
    return query


async def _file_frames(path: Path, speed: float) -> AsyncIterator[bytes]:
    """A media file as 250 ms linear16 frames, paced at ``speed`` times real time."""
    from faster_whisper import decode_audio

    samples = await asyncio.to_thread(decode_audio, str(path))
    pcm = (samples.clip(-1.0, 1.0) * 32767).astype("<i2").tobytes()
    step = int(RATE * FRAME_S) * 2
    began = time.monotonic()
    for index, at in enumerate(range(0, len(pcm), step)):
        yield pcm[at : at + step]
        await asyncio.sleep(max(0.0, began + (index + 1) * FRAME_S / speed - time.monotonic()))


async def _stdin_frames() -> AsyncIterator[bytes]:
    """Standard input as it comes, in frames of at most 16 KiB (the pipe paces it)."""
    stdin = sys.stdin.buffer
    read = getattr(stdin, "read1", stdin.read)  # read1: what has arrived, without waiting for a full frame
    while chunk := await asyncio.to_thread(read, STDIN_FRAME_BYTES):
        yield chunk


async def session(
    args: argparse.Namespace, base: str, api_key: str, display: LiveDisplay, stops: Stops, *, remote: bool = True
) -> int:
    """One session against the gateway at ``base``: send, draw, then write the transcript."""
    import websockets

    parts = urlsplit(base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    url = f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/v1/live?{urlencode(_query(args))}"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    frames = _file_frames(Path(args.input), args.speed) if args.input else _stdin_frames()
    job_id = ""
    try:
        async with websockets.connect(url, additional_headers=headers, max_size=4 * 1024 * 1024) as ws:
            first = json.loads(await ws.recv())
            if first["type"] != "session":
                raise LiveError(_refusal(first, api_key))
            job_id, token = first["job_id"], first["token"]
            if not args.quiet and remote:  # an embedded gateway's page goes with this process
                display.line(f"scribe: live session {job_id}: {base.rstrip('/')}{first['links']['page']}")
            display.listening(0.0)
            stops.in_session = True
            sender = asyncio.create_task(_send(ws, frames, stops.ending, display, _bytes_per_second(args)))
            try:
                final = await _receive(ws, display)
            finally:
                stops.in_session = False
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sender
    except LiveError as exc:
        display.finish()
        print(f"scribe: {exc}", file=sys.stderr)
        return 1
    except (OSError, websockets.WebSocketException) as exc:
        display.finish()
        if job_id:
            print(f"scribe: the connection to {base} was lost ({exc}); the job keeps what was heard", file=sys.stderr)
        else:
            print(f"scribe: could not open a live session at {base} ({exc})", file=sys.stderr)
        return 1
    for warning in final.get("warnings") or []:
        print(f"scribe: warning: {warning}", file=sys.stderr)
    import httpx

    from scribe.remote import RemoteError, RemoteJob

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60.0) as http:
        try:
            text = await RemoteJob(http, job_id, token).transcript(args.format, args.romanization)
        except (RemoteError, httpx.HTTPError) as exc:
            print(f"scribe: {exc}", file=sys.stderr)
            return 1
    await _write(args, text, f"live session {job_id}")
    return 0


def _bytes_per_second(args: argparse.Namespace) -> int | None:
    """What one second of the audio sent takes (None for a container: the clock measures it instead)."""
    if args.input:
        return 2 * RATE
    return 2 * args.sample_rate * args.channels if args.encoding == "linear16" else None


async def _send(
    ws: Any, frames: AsyncIterator[bytes], ending: asyncio.Event, display: LiveDisplay, rate: int | None
) -> None:
    """Send frames until they run out or Ctrl-C; then ``close_stream``."""
    sent = 0
    began = time.monotonic()
    async for frame in frames:
        await ws.send(frame)
        sent += len(frame)
        display.listening(sent / rate if rate else time.monotonic() - began)
        if ending.is_set():
            break
    await ws.send(json.dumps({"type": "close_stream"}))
    display.close()


def _refusal(message: dict[str, Any], api_key: str) -> str:
    """The server's sentence for a refused session, and what to do about a missing key."""
    said = str(message.get("message") or message.get("reason") or message)
    if message.get("code") == "unauthorized" and not api_key:
        said += " Set SCRIBE_API_KEY to your key (sk_…), or pass --api-key."
    return said


async def _receive(ws: Any, display: LiveDisplay) -> dict[str, Any]:
    """Draw the session's messages until its terminal one, which is returned (``final``).

    Raises:
        LiveError: The server refused or failed the session.
    """
    committed = -1
    async for text in ws:
        message = json.loads(text)
        kind = message["type"]
        if kind in ("snapshot", "segments"):
            lines = _segments.decode(json.dumps(message["segments"]))
            display.lines(lines)
            committed = max([committed, *(line.chunk_seq for line in lines)])
            display.interim("", "", 0.0)
        elif kind == "interim" and message["next_chunk"] > committed:
            display.interim(message["stable"], message["tentative"], message["start"])
        elif kind == "lagging":
            display.line(f"scribe: {message['message']}")
        elif kind == "final":
            display.finish()
            return dict(message)
        elif kind in ("failed", "cancelled", "error"):
            raise LiveError(message.get("reason") or message.get("message") or kind)
    raise LiveError("the server closed the session before its end; what was heard is kept")

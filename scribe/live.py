"""``scribe live``: speak (or play a file) into ``WS /v1/live`` and read the lines as they are made.

Audio comes from stdin (``ffmpeg -f pulse -i default -ac 1 -ar 16000 -f s16le - | scribe live``;
``--encoding``, ``--sample-rate``, ``--channels`` declare it) or from a file decoded here and sent
at real time (``scribe live FILE``; ``--speed`` sends it faster). Committed lines are drawn as
``scribe transcribe`` draws them, with their readings; on a terminal the line in progress is
redrawn in place under them, its unsettled end dimmed. End of input, or Ctrl-C, ends the session:
what was heard is transcribed, and the transcript is written in ``--format`` to stdout or ``-o``.

Embedded by default: the servers, the services and a gateway start in this process on a free
loopback port, and the session goes over the same websocket as with ``--server URL`` (a running
gateway; ``SCRIBE_API_KEY`` where it has accounts).
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
from scribe.formats import clock

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

    def lines(self, segments: list[Segment]) -> None:
        for segment in segments:
            self.line(f"[{clock(segment.start)}] {segment.text}")
            for reading in _readings(segment, self.romanization):
                self.line(f"        {reading}")

    def interim(self, stable: str, tentative: str, start: float) -> None:
        """Redraw the line in progress in place: its newest end, on one terminal row (a wrapped row could
        not be cleared), the unsettled part dimmed."""
        if not self.tty:
            return
        if not stable and not tentative:
            self.status = f"listening… {clock(self.heard)}"
            self.draw()
            return
        prefix = f"[{clock(start)}] "
        room = shutil.get_terminal_size().columns - len(prefix) - 2
        stable, tentative = _tail(stable, tentative, room)
        self.status = f"{prefix}{stable}\x1b[2m{tentative}\x1b[0m"
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


def _readings(segment: Segment, romanization: str) -> list[str]:
    from scribe.formats import reading_lines

    return reading_lines(segment, romanization)


async def live(args: argparse.Namespace, settings: Settings) -> int:
    """Run one live session on ``--server`` or on an embedded stack; the exit status."""
    server = args.server or settings.server_url
    if server:
        return await session(args, server, settings.api_key)
    async with _embedded_gateway(settings) as base:
        return await session(args, base, "", remote=False)


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


async def session(args: argparse.Namespace, base: str, api_key: str, *, remote: bool = True) -> int:
    """One session against the gateway at ``base``: send, draw, then write the transcript."""
    import websockets

    parts = urlsplit(base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    url = f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/v1/live?{urlencode(_query(args))}"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    display = LiveDisplay(sys.stderr, romanization=args.romanization, quiet=args.quiet)
    ending = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, ending.set)  # a first Ctrl-C ends the session, keeping it
    frames = _file_frames(Path(args.input), args.speed) if args.input else _stdin_frames()
    try:
        async with websockets.connect(url, additional_headers=headers, max_size=4 * 1024 * 1024) as ws:
            first = json.loads(await ws.recv())
            if first["type"] != "session":
                raise LiveError(first.get("message") or str(first))
            job_id, token = first["job_id"], first["token"]
            if not args.quiet and remote:  # an embedded gateway's page goes with this process
                print(f"scribe: live session {job_id}: {base.rstrip('/')}{first['links']['page']}", file=sys.stderr)
            sender = asyncio.create_task(_send(ws, frames, ending, display))
            try:
                final = await _receive(ws, display)
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sender
    except LiveError as exc:
        display.finish()
        print(f"scribe: {exc}", file=sys.stderr)
        return 1
    except (OSError, websockets.WebSocketException) as exc:
        display.finish()
        print(f"scribe: the connection to {base} failed or was lost ({exc}); what was heard is kept", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
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


async def _send(ws: Any, frames: AsyncIterator[bytes], ending: asyncio.Event, display: LiveDisplay) -> None:
    """Send frames until they run out or Ctrl-C; then ``close_stream``."""
    sent = 0
    async for frame in frames:
        await ws.send(frame)
        sent += len(frame)
        display.heard = sent / (2 * RATE)
        if ending.is_set():
            break
    await ws.send(json.dumps({"type": "close_stream"}))


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

"""The ``scribe`` command.

``scribe transcribe INPUT`` runs the whole pipeline in this process on the embedded stack
(or on SCRIBE_NATS_URL / SCRIBE_DATABASE_URL), shows progress and the partial lines live on
stderr, and writes the final transcript to stdout or a file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TextIO

import msgspec

from core import logs
from core.messages import (
    Cancelled,
    Char,
    Failed,
    Final,
    JobEvent,
    JobOptions,
    Partial,
    Progress,
    Revised,
    Romanization,
)
from core.settings import Settings, is_loopback
from core.text import READING_LINES
from romanizer.romanize import Romanizer
from scribe import admin, client, costs
from scribe.embedded import EmbeddedError
from scribe.formats import FORMATS, clock, reading_lines, render
from store import repo

SERVICE_NAMES = ("streamer", "transcriber", "romanizer")

logger = logging.getLogger(__name__)


class Display:
    """Draws a job's events on stderr: a progress bar and the lines as they come.

    On a terminal the bar is redrawn in place under the lines; elsewhere only the lines
    are written.
    """

    def __init__(self, stream: TextIO, *, romanization: str = "both", quiet: bool = False) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.quiet = quiet
        self.romanization = romanization
        self.started = time.monotonic()
        self.status = "starting…"
        self.duration: float | None = None
        self.decoded = 0.0
        self.published = 0
        self.done = 0
        self.ended = False

    def show(self, event: JobEvent) -> None:
        """Draw one event."""
        match event:
            case Progress():
                self.duration = event.duration or self.duration
                self.decoded, self.published, self.ended = (
                    event.seconds_decoded,
                    event.chunks_published,
                    event.input_ended,
                )
            case Partial():
                self.done = event.chunks_done
                for segment in event.segments:
                    self.line(f"[{clock(segment.start)}] {segment.text}")
                    for reading in reading_lines(segment, self.romanization):
                        self.line(f"        {reading}")
            case Revised():
                self.line(f"line {event.segment.seq} corrected: {event.segment.text}")
                for reading in reading_lines(event.segment, self.romanization):
                    self.line(f"        {reading}")
            case Final() | Failed() | Cancelled():
                self.finish()
                if isinstance(event, Final) and event.usage.cache_hit and event.segment_count and not self.quiet:
                    self.stream.write(
                        "scribe: transcribed before with the same settings: answered from the cache, billed nothing "
                        "(--fresh transcribes again)\n"
                    )
                return
        self.progress()

    def line(self, text: str) -> None:
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\r\x1b[2K")
        self.stream.write(text + "\n")
        self.draw()

    def progress(self) -> None:
        total = f"{self.published}" if self.ended else f"{self.published}+"
        fraction = 0.0
        if self.duration:
            fraction = (self.decoded / self.duration) * 0.5 + (self.done / max(self.published, 1)) * 0.5
        self.status = (
            f"{_bar(fraction)} audio {clock(self.decoded)}/{clock(self.duration or self.decoded)}"
            f"  chunks {self.done}/{total}  {time.monotonic() - self.started:.0f}s"
        )
        self.draw()

    def draw(self) -> None:
        if self.tty and not self.quiet and self.status:
            self.stream.write("\r\x1b[2K" + self.status)
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()


def _bar(fraction: float, width: int = 24) -> str:
    filled = int(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


async def transcribe(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here: loading the services (faster-whisper, PyAV, yt-dlp) takes about a second
    # that `scribe romanize` should not pay.
    from scribe.runtime import SERVICES, runtime
    from streamer.service import Streamer

    display = Display(sys.stderr, romanization=args.romanization, quiet=args.quiet)
    display.draw()
    async with runtime(settings, name="scribe-cli", one_shot=True) as rt:
        await rt.start(SERVICES)
        job_id = uuid.uuid4().hex
        source = args.input
        if args.local and settings.nats_url:
            # Shared servers: another process's streamer may take the job, so the file goes as an upload.
            file = await asyncio.to_thread(Path(source).open, "rb")
            try:
                source = await client.upload(rt.js, file)
            finally:
                file.close()
        elif args.local:  # our own embedded servers: only this process's streamer reads the path
            next(s for s in rt.services if isinstance(s, Streamer)).allow_local_file(job_id, source)
        if not settings.nats_url:  # an embedded one-shot NATS: nothing plays the audio back after this run
            next(s for s in rt.services if isinstance(s, Streamer)).playback = False
        options = JobOptions(romanization=job_romanization(args.romanization), fresh=args.fresh)
        await client.submit(rt.js, source, options=options, job_id=job_id)
        async with contextlib.aclosing(client.follow(rt.js, job_id)) as events:
            async for event in events:
                display.show(event)
        if isinstance(event, Failed | Cancelled):
            print(f"scribe: {event.reason}", file=sys.stderr)
            return 1
        transcript = await repo.transcript(rt.pool, job_id)
    assert transcript is not None
    for warning in transcript.warnings:
        print(f"scribe: warning: {warning}", file=sys.stderr)
    text = render(transcript, args.format, args.romanization)
    await _write(args, text, f"{len(transcript.segments)} lines, job {job_id}")
    return 0


async def transcribe_remote(args: argparse.Namespace, server: str, api_key: str = "") -> int:
    """``scribe transcribe --server URL``: the same output, with the pipeline on a gateway (which
    may need ``SCRIBE_API_KEY``)."""
    import httpx

    from scribe.remote import RemoteError, RemoteJob

    display = Display(sys.stderr, romanization=args.romanization, quiet=args.quiet)
    display.draw()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=server, headers=headers, timeout=httpx.Timeout(60.0, read=600.0)) as http:
        try:
            job = await RemoteJob.submit(
                http,
                args.input,
                local=args.local,
                romanization=job_romanization(args.romanization),
                fresh=args.fresh,
            )
            async for event in job.events():
                display.show(event)
            if isinstance(event, Failed | Cancelled):
                print(f"scribe: {event.reason}", file=sys.stderr)
                return 1
            for warning in await job.warnings():
                print(f"scribe: warning: {warning}", file=sys.stderr)
            text = await job.transcript(args.format, args.romanization)
        except (RemoteError, httpx.HTTPError) as exc:
            print(f"scribe: {exc}", file=sys.stderr)
            return 1
    await _write(args, text, f"job {job.job_id} on {server}")
    return 0


def job_romanization(reading_lines: str) -> Romanization:
    """The job option nearest the reading lines asked for (the option names fewer; every line has every reading)."""
    nearest: dict[str, Romanization] = {"jyutping": "jyutping", "yale": "yale", "yale_numeric": "yale"}
    return nearest.get(reading_lines, "both")


async def _write(args: argparse.Namespace, text: str, what: str) -> None:
    """The transcript to ``-o`` (saying so, with ``what``) or to stdout."""
    if args.output:
        await asyncio.to_thread(Path(args.output).write_text, text, encoding="utf-8")
        print(f"scribe: wrote {args.output} ({what})", file=sys.stderr)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def refuse_early(args: argparse.Namespace, settings: Settings) -> str | None:
    """Check the input before anything heavy starts (servers, model): the refusal, or None.

    A path is made absolute (``args.input``) and marked local (``args.local``).
    """
    from streamer.errors import InputError
    from streamer.source import is_local_path, precheck

    args.local = is_local_path(args.input)
    if args.local:
        args.input = str(Path(args.input).expanduser().resolve())
    try:
        precheck(
            args.input,
            allow_private=settings.allow_private_urls,
            max_duration_s=settings.max_duration_s,
            max_bytes=settings.max_download_bytes,
        )
    except InputError as exc:
        return exc.reason
    return None


def refuse_live_early(args: argparse.Namespace) -> str | None:
    """``scribe live``'s input checked before anything starts: the refusal, or None."""
    from streamer.errors import LiveInputError
    from streamer.live import LiveFormat

    if args.speed <= 0:
        return "--speed must be above 0"
    if args.input:
        return None if Path(args.input).is_file() else f"there is no file at {args.input}"
    if sys.stdin.isatty():
        return (
            "scribe live reads raw audio from stdin: pipe it in "
            "(ffmpeg -loglevel error -f pulse -i default -ac 1 -ar 16000 -f s16le - | scribe live), or name a "
            "media file"
        )
    try:
        LiveFormat(args.encoding, args.sample_rate, args.channels)  # the gateway's own check, before it starts
    except LiveInputError as exc:
        return f"--sample-rate or --channels: {exc.reason}"
    return None


def stop_on_signals() -> asyncio.Event:
    """An event SIGTERM and SIGINT set, from now on: the command stops the same way on both.

    SIGTERM is how systemd, Docker and ``timeout`` stop a process; left to its default it would
    end this one at once, with the embedded PostgreSQL left running. A signal that comes while
    the command starts is kept until it has started, and then stops it.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def up(settings: Settings, host: str, port: int) -> None:
    """``scribe up``: every service and the gateway in this process, until Ctrl-C or SIGTERM.

    Either signal stops it in order: the gateway finishes the requests in hand, the services
    drain, then the embedded servers stop.
    """
    stop = stop_on_signals()
    from gateway.app import create_app
    from gateway.server import raise_open_files_limit, serve
    from scribe.runtime import SERVICES, runtime

    raise_open_files_limit()  # before anything opens files: each connection is one
    async with runtime(settings, name="scribe-up") as rt:
        if stop.is_set():
            return
        await rt.start(SERVICES)
        if stop.is_set():
            return

        def started() -> None:
            if settings.auth == "none" and not is_loopback(host):
                print(
                    f"warning: the gateway listens on {host} without accounts (SCRIBE_AUTH=none): anyone who can "
                    "reach this address may use it. Set SCRIBE_AUTH=keys and make keys with `scribe keys create`.",
                    file=sys.stderr,
                )
            shown = f"[{host}]" if ":" in host else host
            print(f"viewer:  http://{shown}:{port}/  (open it in a browser; the API is under /v1, OpenAPI at /schema)")
            print(f"nats:    {rt.settings.nats_url}  (integrators: subscribe to scribe.events.>)", flush=True)

        app = create_app(rt.settings.with_(gateway_host=host, gateway_port=port))
        await serve(app, rt.settings, host=host, port=port, stop=stop, on_started=started)


async def servers(settings: Settings) -> None:
    """``scribe servers``: the embedded NATS and PostgreSQL for services started as separate processes."""
    from scribe.embedded import infrastructure

    stop = stop_on_signals()
    async with infrastructure(settings) as running:
        if stop.is_set():
            return
        print(f"SCRIBE_NATS_URL={running.nats_url}")
        print(f"SCRIBE_DATABASE_URL={running.database_url}", flush=True)
        await stop.wait()


async def interruptible(work: Coroutine[Any, Any, int]) -> int:
    """Run ``work`` (``scribe transcribe``) to its end or until Ctrl-C or SIGTERM: the exit status.

    Either signal cancels the run, so the embedded servers stop and their folders are removed on
    the way out; the status is then 128 + the signal (130, 143), as for a process the signal ended.
    On Python 3.11 a cancellation that comes just as an awaited reply does can be lost
    (``asyncio.wait_for`` returns the reply; fixed in 3.12), and the run would go on as if no
    signal had come: a signal as the run opens its database pool meets this about one time in
    three. So the cancellation is repeated every second until the run has ended. Stopping the
    servers and removing the folders are synchronous exit callbacks, which no cancellation
    interrupts; a drain that takes longer is cut short, which a run being abandoned can afford.
    """
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def cancel() -> None:
        if not task.done():
            task.cancel()
            loop.call_later(1.0, cancel)

    def stop(sig: int) -> None:
        if not received:
            cancel()
        received.append(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)
    try:
        return await task
    except asyncio.CancelledError:
        if not received:
            raise
        return 128 + received[0]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scribe", description="Cantonese transcription with Jyutping and Yale.")
    commands = parser.add_subparsers(dest="command", required=True)

    t = commands.add_parser("transcribe", help="transcribe a media file or URL")
    t.add_argument("input", help="a local audio/video file or an http(s) URL (YouTube and other sites)")
    t.add_argument("--format", "-f", choices=FORMATS, default="txt")
    t.add_argument("--output", "-o", help="write the transcript here instead of stdout")
    t.add_argument(
        "--romanization",
        "-r",
        choices=READING_LINES,
        default="both",
        help="the reading lines under the characters: Jyutping, Yale with tone marks, Yale with tone numbers "
        "(yale_numeric), Jyutping and Yale (both, the default), or none (txt, srt, vtt and the live lines; "
        "json and csv carry every reading)",
    )
    t.add_argument(
        "--fresh",
        action="store_true",
        help="transcribe again even if this video or file was transcribed before with the same settings "
        "(otherwise the stored transcript is replayed at once, billed nothing)",
    )
    t.add_argument("--quiet", "-q", action="store_true", help="no progress or live lines on stderr")
    t.add_argument("--verbose", "-v", action="store_true", help="log what the services do")
    t.add_argument("--server", help="a running gateway to send the job to (default SCRIBE_SERVER_URL; none: run here)")

    v = commands.add_parser(
        "live",
        help="transcribe live audio from stdin (raw PCM by default) or a file played at real time",
        description="Speak Cantonese and read it as it is said: "
        "ffmpeg -loglevel error -f pulse -i default -ac 1 -ar 16000 -f s16le - | scribe live. End of input, "
        "Ctrl-C or SIGTERM ends the session (a second Ctrl-C leaves at once); the transcript is then written "
        "like scribe transcribe's.",
    )
    v.add_argument("input", nargs="?", help="a media file sent at real time (default: raw audio from stdin)")
    v.add_argument("--encoding", choices=("linear16", "webm", "ogg"), default="linear16", help="stdin's audio")
    v.add_argument("--sample-rate", type=int, default=16000, help="stdin's sample rate for linear16 (8000-48000)")
    v.add_argument("--channels", type=int, default=1, help="stdin's channels for linear16 (1 or 2)")
    v.add_argument("--speed", type=float, default=1.0, help="send a file this many times faster than real time")
    v.add_argument("--format", "-f", choices=FORMATS, default="txt")
    v.add_argument("--output", "-o", help="write the transcript here instead of stdout")
    v.add_argument("--romanization", "-r", choices=READING_LINES, default="both", help="as for scribe transcribe")
    v.add_argument("--quiet", "-q", action="store_true", help="no live lines on stderr")
    v.add_argument("--verbose", "-v", action="store_true", help="log what the services do")
    v.add_argument("--server", help="a running gateway (default SCRIBE_SERVER_URL; none: run everything here)")
    v.add_argument("--api-key", default="", help="the key a gateway with accounts needs (default SCRIBE_API_KEY)")

    r = commands.add_parser("romanize", help="romanize text lines from stdin, one JSON object per line")
    r.add_argument("--digits", action="store_true", help="keep digits as written instead of reading them")

    for name in SERVICE_NAMES:
        commands.add_parser(
            name, help=f"run the {name} service until SIGTERM, on SCRIBE_NATS_URL and SCRIBE_DATABASE_URL"
        )
    commands.add_parser("all", help="run every service in one process until SIGTERM (embedded servers if unset)")
    commands.add_parser("servers", help="start the embedded NATS and PostgreSQL and print their URLs")
    u = commands.add_parser(
        "up", help="the whole stack: every service and the HTTP gateway (embedded servers if unset)"
    )
    u.add_argument("--host", default=None, help="gateway address (default SCRIBE_GATEWAY_HOST, 127.0.0.1)")
    u.add_argument("--port", type=int, default=None, help="gateway port (default SCRIBE_GATEWAY_PORT, 8000)")
    admin.add_parsers(commands)
    costs.add_parser(commands)
    return parser


class RomanizedLine(msgspec.Struct):
    """What ``scribe romanize`` writes for one input line."""

    text: str
    chars: list[Char]


def romanize(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    """``scribe romanize``: one JSON object per input line, one entry per character."""
    romanizer = Romanizer(read_numbers=not args.digits)
    encode = msgspec.json.Encoder().encode
    for line in stdin:
        text = line.rstrip("\r\n")
        stdout.write(encode(RomanizedLine(text, romanizer.read(text).chars)).decode("utf-8") + "\n")
    stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "romanize":  # needs no settings, bus or database
        raise SystemExit(romanize(args, sys.stdin, sys.stdout))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = Settings.for_program("scribe")
    if args.command == "transcribe":
        fmt = "text" if settings.log_format == "auto" else settings.log_format
        logs.configure("INFO" if args.verbose else "ERROR", fmt, tracebacks=args.verbose)
        if (refusal := refuse_early(args, settings)) is not None:
            print(f"scribe: {refusal}", file=sys.stderr)
            raise SystemExit(1)
        server = args.server or settings.server_url
        try:
            code = asyncio.run(
                interruptible(
                    transcribe_remote(args, server, settings.api_key) if server else transcribe(args, settings)
                )
            )
        except KeyboardInterrupt:
            code = 130
        except Exception as exc:  # no traceback on a user's terminal unless asked for
            if args.verbose:
                raise
            print(f"scribe: {type(exc).__name__}: {exc} (run again with --verbose for details)", file=sys.stderr)
            code = 1
        raise SystemExit(code)
    if args.command == "live":
        fmt = "text" if settings.log_format == "auto" else settings.log_format
        logs.configure("INFO" if args.verbose else "ERROR", fmt, tracebacks=args.verbose)
        if (refusal := refuse_live_early(args)) is not None:
            print(f"scribe: {refusal}", file=sys.stderr)
            raise SystemExit(1)
        from scribe.live import live

        try:
            code = asyncio.run(live(args, settings))
        except KeyboardInterrupt:
            code = 130
        except EmbeddedError as exc:
            print(f"scribe: {exc}", file=sys.stderr)
            code = 1
        raise SystemExit(code)
    if args.command in ("keys", "plans", "costs"):
        logs.configure("WARNING", settings.log_format)
        try:
            command = {"keys": admin.keys, "plans": admin.plans, "costs": costs.report}[args.command]
            raise SystemExit(asyncio.run(command(args, settings)))
        except EmbeddedError as exc:
            print(f"scribe: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
    logs.configure(settings.log_level, settings.log_format)
    try:
        # Ctrl-C before a command has taken the signals over (Python still importing) stops it
        # before anything has started.
        with contextlib.suppress(KeyboardInterrupt):
            run(args, settings)
    except EmbeddedError as exc:  # a server that would not start, or a data folder in use: one line says why
        print(f"scribe: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def run(args: argparse.Namespace, settings: Settings) -> None:
    """The commands that run until SIGTERM or Ctrl-C: ``up``, ``servers``, ``all`` and the services."""
    if args.command == "servers":
        asyncio.run(servers(settings))
        return
    if args.command == "up":
        host = args.host or settings.gateway_host
        asyncio.run(up(settings, host, settings.gateway_port if args.port is None else args.port))
        return
    if args.command in SERVICE_NAMES and not (settings.nats_url and settings.database_url):
        print(
            f"scribe {args.command}: set SCRIBE_NATS_URL and SCRIBE_DATABASE_URL: services started one by one share "
            "one NATS and one PostgreSQL (`scribe servers` starts both and prints their URLs; `scribe all` runs "
            "every service in one process on embedded servers)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    from scribe.runtime import serve

    asyncio.run(serve(settings, SERVICE_NAMES if args.command == "all" else [args.command]))

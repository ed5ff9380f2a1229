"""The ``scribe`` command.

``scribe transcribe INPUT`` runs the whole pipeline in this process on the embedded stack
(or on SCRIBE_NATS_URL / SCRIBE_DATABASE_URL), shows progress and the partial lines live on
stderr, and writes the final transcript to stdout or a file.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import TextIO

from nats.aio.msg import Msg
from nats.js import api as js_api

from scribe import bus, logs, subjects
from scribe.formats import render
from scribe.messages import Failed, Final, JobOptions, JobSubmitted, Partial, Progress, job_event_decoder
from scribe.runtime import SERVICES, Runtime, runtime, serve
from scribe.settings import Settings, SettingsError
from store import repo

logger = logging.getLogger(__name__)

FORMATS = ("txt", "json", "srt", "vtt", "csv")
ROMANIZATIONS = ("jyutping", "yale", "both")


class Display:
    """Progress bar and live lines on stderr; plain lines when stderr is not a terminal."""

    def __init__(self, stream: TextIO, quiet: bool = False) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.quiet = quiet
        self.status = ""
        self.started = time.monotonic()

    def line(self, text: str) -> None:
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\r\x1b[2K")
        self.stream.write(text + "\n")
        self._draw()

    def progress(self, status: str) -> None:
        self.status = status
        self._draw()

    def _draw(self) -> None:
        if self.tty and not self.quiet and self.status:
            self.stream.write("\r\x1b[2K" + self.status)
        self.stream.flush()

    def done(self) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"


def _bar(fraction: float, width: int = 24) -> str:
    filled = int(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


async def run_job(
    rt: Runtime, source: str, *, options: JobOptions, display: Display, job_id: str | None = None
) -> tuple[str, Final | Failed]:
    """Submit one job and follow its events until it ends."""
    job_id = job_id or uuid.uuid4().hex
    await repo.create_job(rt.pool, job_id, source, user_id=None, options=options)
    events: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_event(msg: Msg) -> None:
        await events.put(msg.data)

    # Subscribe before submitting: the events stream also replays anything already sent.
    sub = await rt.js.subscribe(
        subjects.events(job_id),
        cb=on_event,
        ordered_consumer=True,
        deliver_policy=js_api.DeliverPolicy.ALL,
    )
    await bus.publish(
        rt.js, subjects.JOBS_SUBMITTED, JobSubmitted(job_id=job_id, source=source, options=options), msg_id=job_id
    )
    duration: float | None = None
    decoded = 0.0
    published: int = 0
    done = 0
    ended = False
    try:
        while True:
            event = job_event_decoder.decode(await events.get())
            match event:
                case Progress():
                    duration = event.duration or duration
                    decoded, published, ended = event.seconds_decoded, event.chunks_published, event.input_ended
                case Partial():
                    done = event.chunks_done
                    for segment in event.segments:
                        display.line(f"[{_clock(segment.start)}] {segment.text}")
                        if options.romanization in ("jyutping", "both"):
                            display.line(f"        {segment.jyutping}")
                        if options.romanization in ("yale", "both"):
                            display.line(f"        {segment.yale}")
                case Final() | Failed():
                    display.done()
                    return job_id, event
            total = f"{published}" if ended else f"{published}+"
            fraction = (decoded / duration) * 0.5 + (done / max(published, 1)) * 0.5 if duration else 0.0
            display.progress(
                f"{_bar(fraction)} audio {_clock(decoded)}/{_clock(duration or decoded)}"
                f"  chunks {done}/{total}  {time.monotonic() - display.started:.0f}s"
            )
    finally:
        await sub.unsubscribe()


async def transcribe(args: argparse.Namespace, settings: Settings) -> int:
    display = Display(sys.stderr, quiet=args.quiet)
    source = args.input
    display.progress("starting…")
    async with runtime(settings, name="scribe-cli") as rt:
        await rt.start(SERVICES)
        job_id, outcome = await run_job(rt, source, options=JobOptions(romanization=args.romanization), display=display)
        if isinstance(outcome, Failed):
            print(f"scribe: {outcome.reason}", file=sys.stderr)
            return 1
        transcript = await repo.transcript(rt.pool, job_id)
    assert transcript is not None
    text = render(transcript, args.format, args.romanization)
    if args.output:
        await asyncio.to_thread(Path(args.output).write_text, text, encoding="utf-8")
        print(f"scribe: wrote {args.output} ({len(transcript.segments)} lines, job {job_id})", file=sys.stderr)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scribe", description="Cantonese transcription with Jyutping and Yale.")
    commands = parser.add_subparsers(dest="command", required=True)

    t = commands.add_parser("transcribe", help="transcribe a media file or URL")
    t.add_argument("input", help="a local audio/video file or an http(s) URL (YouTube and other sites)")
    t.add_argument("--format", "-f", choices=FORMATS, default="txt")
    t.add_argument("--output", "-o", help="write the transcript here instead of stdout")
    t.add_argument("--romanization", "-r", choices=ROMANIZATIONS, default="both")
    t.add_argument("--quiet", "-q", action="store_true", help="no progress or live lines on stderr")
    t.add_argument("--verbose", "-v", action="store_true", help="log what the services do")

    r = commands.add_parser("romanize", help="romanize text lines from stdin, one JSON object per line")
    r.add_argument("--digits", action="store_true", help="keep digits as written instead of reading them")

    for name in (*SERVICES, "all"):
        commands.add_parser(name, help=f"run the {name} service(s) until SIGTERM")
    return parser


def romanize(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    """``scribe romanize``: one JSON object per input line, one entry per character."""
    import msgspec

    from romanizer.g2p import G2P, read_line

    g2p = G2P(read_numbers=not args.digits)
    encode = msgspec.json.Encoder().encode
    for line in stdin:
        stdout.write(encode(read_line(g2p, line.rstrip("\r\n"))).decode("utf-8") + "\n")
    stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "romanize":  # needs no settings, bus or database
        raise SystemExit(romanize(args, sys.stdin, sys.stdout))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"scribe: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    if args.command == "transcribe":
        if "://" not in args.input:  # the streamer may run elsewhere: send an absolute path
            args.input = str(Path(args.input).expanduser().resolve())
        logs.configure("INFO" if args.verbose else "WARNING", settings.log_format or "text")
        try:
            code = asyncio.run(transcribe(args, settings))
        except KeyboardInterrupt:
            code = 130
        raise SystemExit(code)
    logs.configure(settings.log_level, settings.log_format)
    asyncio.run(serve(settings, SERVICES if args.command == "all" else [args.command]))

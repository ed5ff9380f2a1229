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
import sys
import time
from pathlib import Path
from typing import TextIO

import msgspec

from core import logs
from core.messages import ROMANIZATIONS, Char, Failed, Final, JobEvent, JobOptions, Partial, Progress
from core.settings import Settings
from romanizer.romanize import Romanizer
from scribe import client
from scribe.formats import FORMATS, clock, render
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
                    if self.romanization in ("jyutping", "both"):
                        self.line(f"        {segment.jyutping}")
                    if self.romanization in ("yale", "both"):
                        self.line(f"        {segment.yale}")
            case Final() | Failed():
                self.finish()
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

    display = Display(sys.stderr, romanization=args.romanization, quiet=args.quiet)
    display.draw()
    async with runtime(settings, name="scribe-cli") as rt:
        await rt.start(SERVICES)
        job_id = await client.submit(rt.js, args.input, options=JobOptions(romanization=args.romanization))
        async with contextlib.aclosing(client.follow(rt.js, job_id)) as events:
            async for event in events:
                display.show(event)
        if isinstance(event, Failed):
            print(f"scribe: {event.reason}", file=sys.stderr)
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

    for name in (*SERVICE_NAMES, "all"):
        commands.add_parser(name, help=f"run the {name} service(s) until SIGTERM")
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
        if "://" not in args.input:  # the streamer may run elsewhere: send an absolute path
            args.input = str(Path(args.input).expanduser().resolve())
        logs.configure(
            "INFO" if args.verbose else "WARNING", "text" if settings.log_format == "auto" else settings.log_format
        )
        try:
            code = asyncio.run(transcribe(args, settings))
        except KeyboardInterrupt:
            code = 130
        raise SystemExit(code)
    from scribe.runtime import serve

    logs.configure(settings.log_level, settings.log_format)
    asyncio.run(serve(settings, SERVICE_NAMES if args.command == "all" else [args.command]))

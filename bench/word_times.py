"""What word times cost the speech model alone, chunk by chunk, and where the cost comes from.

Prints figures; it is not a test. The meeting (``ktdc_meeting_2025-01-06_other_matters.mp3``,
looped to ``--minutes`` as ``bench.pipeline`` does) is cut as the streamer cuts it
(``streamer.chunker.Chunker`` with the settings' chunk lengths and silence level; silent pieces
are not sent), and every chunk goes through the real ``LocalBackend`` twice, with
``SCRIBE_ASR_WORD_TIMES`` off and on, alternating which goes first. For each it prints the
decoding time, the 30 s windows faster-whisper decoded and its temperature fallbacks (a window
decoded again, hotter, because the text looked like a loop; both counted from faster-whisper's
debug log), the characters, and the chunk's last segment: with word times on, a window that
ends without a closing timestamp is followed by one starting at its last word's end
(faster-whisper's ``seek`` to ``last_word_end``), which at a chunk's end is a fraction of a
second of trailing audio.

Run from the repository root (about 4 minutes on 2 cores for 10 minutes of audio)::

    .venv/bin/python -m bench.word_times
    .venv/bin/python -m bench.word_times --minutes 4.63 --threads 1
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ctranslate2
from faster_whisper import decode_audio

from bench.asr_eval import SEED, _wav_bytes
from bench.contenders import build_input
from core.messages import RawSegment
from core.settings import Settings
from streamer.chunker import Chunker, Piece
from tests.paths import AUDIO
from transcriber.local import LocalBackend
from transcriber.model import load_model

MEETING = "ktdc_meeting_2025-01-06_other_matters.mp3"


class _Windows(logging.Handler):
    """Counts faster-whisper's windows ("Processing segment at") and temperature fallbacks."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.windows = self.fallbacks = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = str(record.msg)
        self.windows += message.startswith("Processing segment at")
        self.fallbacks += "threshold is not met" in message


def count_windows() -> _Windows:
    """A handler on faster-whisper's logger (set to DEBUG, kept from the root)."""
    counter = _Windows()
    log = logging.getLogger("faster_whisper")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(counter)
    return counter


@dataclass
class Decode:
    """One chunk decoded one way."""

    seconds: float
    windows: int
    fallbacks: int
    chars: int
    last: RawSegment | None


def chunks(audio: Path, settings: Settings) -> list[Piece]:
    """The pieces the streamer would send to ASR (the silent ones left out)."""
    min_s, max_s = settings.chunk_lengths
    chunker = Chunker(
        min_s=min_s, max_s=max_s, silence_dbfs=settings.silence_dbfs, first_max_s=settings.chunk_first_max_s
    )
    samples = decode_audio(str(audio))
    return [p for p in [*chunker.feed(samples), *chunker.flush()] if not p.silent]


async def decode(backend: LocalBackend, piece: Piece, counter: _Windows) -> Decode:
    """Transcribe one piece, counting faster-whisper's windows and fallbacks."""
    counter.windows = counter.fallbacks = 0
    started = time.perf_counter()
    result = await backend.transcribe(_wav_bytes(piece.samples), duration=piece.duration)
    seconds = time.perf_counter() - started
    chars = sum(len("".join(s.text.split())) for s in result.segments)
    last = result.segments[-1] if result.segments else None
    return Decode(seconds, counter.windows, counter.fallbacks, chars, last)


def cell(d: Decode) -> str:
    last = f"{d.last.start:.1f}-{d.last.end:.1f} {d.last.text[-16:]}" if d.last else "-"
    return f"{d.seconds:5.1f} s {d.windows:>2} win {d.fallbacks:>2} fb {d.chars:>4} ch  last {last}"


async def run(args: argparse.Namespace) -> None:
    settings = Settings.from_env().with_(asr_threads=args.threads, asr_workers=1)
    audio, audio_s = build_input(args.data / MEETING, args.minutes, args.cache)
    pieces = chunks(audio, settings)
    print(f"input: {audio} ({audio_s:.0f} s), {len(pieces)} chunks with sound; {args.threads} threads")
    model = load_model(settings)
    backends = {wt: LocalBackend(model, settings.with_(asr_word_times=wt)) for wt in (False, True)}
    counter = count_windows()
    totals = {wt: Decode(0.0, 0, 0, 0, None) for wt in (False, True)}
    ctranslate2.set_random_seed(SEED)
    for i, piece in enumerate(pieces):
        done: dict[bool, Decode] = {}
        for wt in (False, True) if i % 2 == 0 else (True, False):
            done[wt] = await decode(backends[wt], piece, counter)
            total = totals[wt]
            total.seconds += done[wt].seconds
            total.windows += done[wt].windows
            total.fallbacks += done[wt].fallbacks
            total.chars += done[wt].chars
        print(f"chunk {i:>2} {piece.offset:5.0f} s +{piece.duration:3.0f} s  off: {cell(done[False])}")
        print(f"{'':>21}on:  {cell(done[True])}")
    off, on = totals[False], totals[True]
    print(
        f"\nword times off: {off.seconds:.1f} s, {off.windows} windows, {off.fallbacks} fallbacks, {off.chars} chars"
        f"\nword times on:  {on.seconds:.1f} s, {on.windows} windows, {on.fallbacks} fallbacks, {on.chars} chars"
        f"\non / off: {on.seconds / off.seconds:.2f} x the decoding time"
    )


def main(argv: list[str] | None = None) -> int:
    """Decode the chunks both ways and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the looped input (default 10)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads for each decode")
    parser.add_argument("--data", type=Path, default=AUDIO, help="the audio data folder")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "cantonesescribe-bench", help="the looped input"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"bench/word_times.py: {shlex.join(sys.argv)}")
    print(f"machine: {os.cpu_count()} cores; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    asyncio.run(run(args))
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

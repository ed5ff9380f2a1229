"""Lines from a model without timestamps (issue 18, section 6): placed text against the local model's times.

Prints figures; it is not a test. gpt-4o-transcribe and gpt-4o-mini-transcribe answer a chunk
with text alone; :mod:`transcriber.placement` times its sentences on the speech Silero VAD finds
in the chunk (:mod:`transcriber.speech`). The paid API cannot be called from here, so the local
model stands in for it: each chunk goes through the real ``LocalBackend`` (the embedded Whisper
base, word times on), whose segments are the reference, and whose text alone (the segments' texts
joined, as ``tests/fake_openai.py`` answers ``json``) is what a json-only model would return.

Inputs: the 26 clips of ``manifest.tsv`` and the 4'38" meeting, each cut into the chunks the
streamer sends (``streamer.media`` pieces with the chunk lengths given, silent pieces and those
without speech left out as ``streamer.speech.has_speech`` does, FLAC as ``streamer.encode``).

Versions, each made into lines by the romanizer (``romanizer.service.romanize_chunk``, which cuts
a segment too long for a line at sentence and clause ends), except the first:

- ``one per chunk``: the text as one line spanning the chunk (the backend's segment before);
- ``by characters``: that segment through the romanizer, which is what users saw before: it cuts
  sentences and shares the chunk's time out by character count, with no VAD (the baseline);
- ``speech share``: the text shared out by weight over the VAD's speech regions only
  (``place(..., pause_weight=0)``);
- ``placed``: :func:`transcriber.placement.place` as the backend runs it (pauses snapped to
  sentence and clause ends);
- ``local, timed``: the local model's own segments and word times through the romanizer (the
  reference; its lengths for comparison).

Figures per version: line lengths in characters (letters and digits, as ``MAX_LINE_CHARS`` counts
them) and seconds (median, p90, max); the error of each line's start (absolute, median and p90)
against (1) when the local model says the line's first character is spoken (its word times, the
texts aligned letter by letter; the figure that tells whether a line shows when it is said), for
all lines, a chunk's first lines and the others, (2) the nearest start of a local line, and (3)
the nearest start of a local segment (Whisper's own segments: often a whole 10-20 s chunk, so this
one is coarse). Also the local model's character error rate on the clips cut to each length
(scored as bench/asr_eval.py does, loops collapsed as the romanizer does).

A chunk's first line is not a fair test of the reference: Whisper puts the first word at the
start of the audio faster-whisper's own VAD hands it, padded by 400 ms, so the local model's first
word comes a median 0.37 s before the speech (the bench prints this for each chunk length; by the
signal level, speech in sherpa_yue-0, -4 and -11 starts at 0.45-0.5 s, where Silero puts it, not at
0.05-0.14 s where Whisper does). The ``by characters`` baseline starts a chunk's first line at 0,
right where that bias puts the reference; ``placed`` starts it at the VAD's onset. Compare the
later lines.

What was looked at while designing: the meeting's first two minutes (chunks starting before
120 s), at 10-20 s and 40-60 s chunks: the weights in ``transcriber.placement`` are statistics of the
local model's word times there. The rest of the meeting and the 26 clips were not looked at: the
tables give them apart. The local model's text stands in for a json-only model's: Whisper base
drops stretches of speech in long chunks (in one 48 s chunk of the meeting, 20 s of speech have no
text), which no placement by character count can time.

Run from the repository root (about 8 minutes on 2 cores for three chunk lengths)::

    .venv/bin/python -m bench.untimed_lines
    .venv/bin/python -m bench.untimed_lines --chunks 10-20 --cache /tmp/untimed  # keep the decodes
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import os
import shlex
import sys
import time
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import ctranslate2
import msgspec
import numpy as np

from bench.asr_eval import SEED, edit_distance, normalise, read_clips
from core.messages import MAX_LINE_CHARS, RawSegment, Segment
from core.settings import Settings
from romanizer.cleanup import collapse_loops
from romanizer.romanize import Romanizer
from romanizer.service import romanize_chunk
from streamer.encode import encode_chunk
from streamer.media import open_media
from streamer.speech import has_speech
from tests.fake_openai import whisper_model_for_tests
from tests.paths import AUDIO
from transcriber.asr import raw_segments
from transcriber.local import LocalBackend
from transcriber.placement import place
from transcriber.speech import PLACEMENT_VAD, speech_regions

MEETING = "ktdc_meeting_2025-01-06_other_matters.mp3"
SEEN_UNTIL_S = 120.0  # the meeting's chunks starting before this were looked at while designing
CHUNKS = ("40-60", "10-20", "5-10")
VERSIONS = ("one per chunk", "by characters", "speech share", "placed", "local, timed")


class Chunk(msgspec.Struct, frozen=True):
    """One chunk as the streamer would send it, with what the local model and the VAD made of it."""

    source: str
    offset: float
    duration: float
    regions: list[tuple[float, float]] | None
    reference: list[RawSegment]


@dataclass(frozen=True)
class Line:
    """A line on its chunk's timeline."""

    start: float
    end: float
    text: str
    starts: tuple[float | None, ...] = ()  # each letter's start, for the reference's lines


# --- chunks ---------------------------------------------------------------------------------------


def pieces(path: Path, min_s: float, max_s: float, settings: Settings) -> Iterator[tuple[float, float, bytes]]:
    """``(offset, duration, flac)`` of each piece the streamer would send to ASR."""
    with open_media(path, max_duration_s=settings.max_duration_s) as reader:
        for piece in reader.pieces(
            min_s=min_s, max_s=max_s, silence_dbfs=settings.silence_dbfs, first_max_s=settings.chunk_first_max_s
        ):
            if piece.silent or not has_speech(piece.samples):
                continue
            yield piece.offset, piece.duration, encode_chunk(piece.samples, codec="flac")[1]


async def decode(
    backend: LocalBackend, sources: Sequence[Path], lengths: str, settings: Settings, cache: Path | None
) -> list[Chunk]:
    """Every chunk of ``sources`` cut to ``lengths`` ("10-20" seconds), decoded, or read from ``cache``."""
    stored = cache / f"chunks-{lengths}.json" if cache else None
    if stored is not None and stored.exists():
        return msgspec.json.decode(stored.read_bytes(), type=list[Chunk])
    min_s, max_s = (float(x) for x in lengths.split("-"))
    ctranslate2.set_random_seed(SEED)
    out: list[Chunk] = []
    for path in sources:
        for offset, duration, audio in pieces(path, min_s, max_s, settings):
            result = await backend.transcribe(audio, duration=duration)
            out.append(Chunk(path.name, offset, duration, speech_regions(audio), result.segments))
    if stored is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_bytes(msgspec.json.encode(out))
    return out


# --- versions -------------------------------------------------------------------------------------


def lines_of(romanizer: Romanizer, raw: list[RawSegment]) -> list[Line]:
    """The romanizer's lines of one chunk's segments."""
    return [_line(s) for s in romanize_chunk(romanizer, raw, chunk_seq=0, first_seq=0, previous=[])]


def _line(segment: Segment) -> Line:
    starts = tuple(c.start for c in segment.chars if _letter(c.char))
    return Line(segment.start, segment.end, segment.text, starts)


def versions(romanizer: Romanizer, chunk: Chunk) -> dict[str, list[Line]]:
    """Each version's lines of one chunk."""
    text = "".join(s.text for s in chunk.reference)
    regions = chunk.regions or []
    whole = raw_segments([(0.0, chunk.duration, text)], chunk.duration)
    return {
        "one per chunk": [Line(0.0, chunk.duration, romanizer.normalise(text))] if text.strip() else [],
        "by characters": lines_of(romanizer, whole),
        "speech share": lines_of(
            romanizer, raw_segments(place(text, regions, chunk.duration, pause_weight=0.0), chunk.duration)
        ),
        "placed": lines_of(romanizer, raw_segments(place(text, regions, chunk.duration), chunk.duration)),
        "local, timed": lines_of(romanizer, chunk.reference),
    }


# --- measures -------------------------------------------------------------------------------------


def _letter(char: str) -> bool:
    return unicodedata.category(char)[0] in "LN"


def letters(text: str) -> str:
    """Letters and digits, as the line limit counts them."""
    return "".join(c for c in text if _letter(c))


def same_char_errors(lines: Sequence[Line], reference: Sequence[Line]) -> list[tuple[bool, float]]:
    """Each line's start minus when the local model says its first letter is spoken (where it says),
    with whether the line is its chunk's first."""
    ref_text = "".join(letters(x.text) for x in reference)
    ref_starts = [s for x in reference for s in x.starts]
    if len(ref_starts) != len(ref_text):  # a line whose letters and chars disagree: no reference here
        return []
    text, first = "", []
    for line in lines:
        if letters(line.text):
            first.append((len(text), line.start))
            text += letters(line.text)
    matched: dict[int, int] = {}
    for a, b, n in difflib.SequenceMatcher(None, text, ref_text, autojunk=False).get_matching_blocks():
        matched.update((a + i, b + i) for i in range(n))
    out = []
    for at, start in first:
        if at in matched and (spoken := ref_starts[matched[at]]) is not None:
            out.append((at == 0, start - spoken))
    return out


def nearest_errors(lines: Sequence[Line], points: Sequence[float]) -> list[float]:
    """Each line's start minus the nearest of ``points``."""
    return [min((x.start - p for p in points), key=abs) for x in lines if points]


@dataclass
class Figures:
    """One version's lines and start errors over a set of chunks."""

    chars: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    first: list[float] = field(default_factory=list)  # same character, a chunk's first line
    later: list[float] = field(default_factory=list)  # same character, the other lines
    near_line: list[float] = field(default_factory=list)
    near_segment: list[float] = field(default_factory=list)

    def add(self, lines: Sequence[Line], reference: Sequence[Line], segments: Sequence[RawSegment]) -> None:
        self.chars += [len(letters(x.text)) for x in lines]
        self.seconds += [x.end - x.start for x in lines]
        for first, error in same_char_errors(lines, reference):
            (self.first if first else self.later).append(error)
        self.near_line += nearest_errors(lines, [x.start for x in reference])
        self.near_segment += nearest_errors(lines, [s.start for s in segments])


def q(values: Sequence[float], at: float) -> float:
    return float(np.percentile(values, at * 100)) if values else float("nan")


def spread(values: Sequence[float], digits: int) -> str:
    return (
        f"{q(values, 0.5):>5.{digits}f} {q(values, 0.9):>5.{digits}f} {max(values, default=float('nan')):>5.{digits}f}"
    )


def errors(values: Sequence[float]) -> str:
    """Count, then the median and p90 of the absolute values."""
    absolute = [abs(v) for v in values]
    return f"{len(values):>4} {q(absolute, 0.5):>5.2f} {q(absolute, 0.9):>5.2f}"


def print_lengths(title: str, figures: dict[str, Figures]) -> None:
    print(f"\n{title}: characters and seconds per line (p50, p90, max), lines over {MAX_LINE_CHARS} characters")
    print(
        f"  {'version':<14} {'lines':>5} {'chars p50':>9} {'p90':>5} {'max':>5}"
        f" {'s p50':>5} {'p90':>5} {'max':>5} {'over':>4}"
    )
    for name, f in figures.items():
        print(
            f"  {name:<14} {len(f.chars):>5} {spread(f.chars, 0):>21} {spread(f.seconds, 1):>17}"
            f" {sum(c > MAX_LINE_CHARS for c in f.chars):>4}"
        )


def print_timing(title: str, figures: dict[str, Figures]) -> None:
    print(f"\n{title}: line start errors, absolute seconds (n, p50, p90)")
    print(
        f"  {'version':<14} {'same char, all':>16}  {'first lines':>16}  {'later lines':>16}"
        f"  {'near local line':>16}  {'near local seg':>16}"
    )
    for name, f in figures.items():
        if name == "local, timed":
            continue
        print(
            f"  {name:<14} {errors(f.first + f.later):>16}  {errors(f.first):>16}  {errors(f.later):>16}"
            f"  {errors(f.near_line):>16}  {errors(f.near_segment):>16}"
        )


def group(chunk: Chunk) -> str:
    if chunk.source != MEETING:
        return "26 clips (not looked at)"
    if chunk.offset < SEEN_UNTIL_S:
        return f"meeting, chunks before {SEEN_UNTIL_S:.0f} s (looked at)"
    return f"meeting, chunks from {SEEN_UNTIL_S:.0f} s (not looked at)"


def clip_cer(chunks: Sequence[Chunk], references: dict[str, str]) -> float:
    """The local model's character error rate on the clips, their chunks' texts joined, loops collapsed as the
    romanizer does (bench/asr_eval.py's "shown" figure)."""
    said: dict[str, str] = {}
    for chunk in chunks:
        if chunk.source in references:
            text = "".join(collapse_loops(s.text) for s in chunk.reference)
            said[chunk.source] = said.get(chunk.source, "") + text
    wrong = sum(edit_distance(normalise(ref), normalise(said.get(name, ""))) for name, ref in references.items())
    return wrong / max(1, sum(len(normalise(ref)) for ref in references.values()))


def report(romanizer: Romanizer, chunks: Sequence[Chunk], lengths: str, references: dict[str, str]) -> None:
    groups: dict[str, dict[str, Figures]] = {}
    placing = 0.0
    early: list[float] = []  # the local model's first word against the VAD's first onset
    for chunk in chunks:
        started = time.perf_counter()
        made = versions(romanizer, chunk)
        placing += time.perf_counter() - started
        reference = made["local, timed"]
        for name in ("all", group(chunk)):
            table = groups.setdefault(name, {v: Figures() for v in VERSIONS})
            for version, lines in made.items():
                table[version].add(lines, reference, chunk.reference)
        words = [w for s in chunk.reference for w in s.words]
        if words and chunk.regions:
            early.append(words[0].start - chunk.regions[0][0])
    seconds = [c.duration for c in chunks]
    print(
        f"\n=== chunks of {lengths} s: {len(chunks)} chunks, {sum(seconds):.0f} s "
        f"(median {q(seconds, 0.5):.1f} s); the five versions made in {placing:.1f} s"
    )
    print(
        f"the local model's first word starts {-q(early, 0.5):.2f} s (median) before the VAD's first onset "
        f"({sum(e < -0.3 for e in early)} of {len(early)} chunks more than 0.3 s before)"
    )
    print(f"the local model's character error rate on the 26 clips cut so: {clip_cer(chunks, references):.3f}")
    print_lengths("all chunks", groups["all"])
    for name in sorted(groups, key=lambda g: (g != "all", g)):
        print_timing(name, groups[name])


def main(argv: list[str] | None = None) -> int:
    """Decode, place and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=AUDIO, help="folder with manifest.tsv, the clips and the meeting")
    parser.add_argument("--chunks", default=",".join(CHUNKS), help="chunk lengths to cut to, MIN-MAX seconds each")
    parser.add_argument("--cache", type=Path, help="keep the decoded chunks here and reuse them")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"bench/untimed_lines.py: {shlex.join(sys.argv)}")
    print(f"machine: {os.cpu_count()} cores; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    vad = PLACEMENT_VAD
    print(
        f"placement VAD: threshold {vad.threshold}, min speech {vad.min_speech_duration_ms} ms, "
        f"min silence {vad.min_silence_duration_ms} ms, pad {vad.speech_pad_ms} ms"
    )
    settings = Settings(asr_threads=os.cpu_count() or 1, asr_workers=1)
    backend = LocalBackend(whisper_model_for_tests(), settings)
    clips = read_clips(args.data)
    sources = [clip.path for clip in clips] + [args.data / MEETING]
    romanizer = Romanizer()
    for lengths in args.chunks.split(","):
        started = time.perf_counter()
        chunks = asyncio.run(decode(backend, sources, lengths, settings, args.cache))
        print(f"\n(decoded, or read from --cache, in {time.perf_counter() - started:.0f} s)")
        report(romanizer, chunks, lengths, {clip.name: clip.reference for clip in clips})
    return 0


if __name__ == "__main__":
    sys.exit(main())

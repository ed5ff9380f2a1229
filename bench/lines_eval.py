"""Character times, uncertainty marks and line lengths of issue 16, before and after, in one run.

Prints figures; it is not a test. Three measures:

1. **Line times** against an independent speech detector. The 26 reference clips go through
   the real code path (``LocalBackend`` on the clip's bytes, then
   ``romanizer.service.romanize_chunk``), each decoded twice, alternating: with word times off
   and on (``SCRIBE_ASR_WORD_TIMES``). "before" is what the code before issue 16 made of the
   word-times-off segments: one line per kept segment starting at the segment's ``start``
   (:func:`old_lines`, the old ``romanize_chunk`` without the readings); "after" is
   ``romanize_chunk`` on the word-times-on segments, a line starting at its first timed
   character; "after, word times off" is ``romanize_chunk`` on the word-times-off segments
   (times shared out by character count). The meeting
   (``ktdc_meeting_2025-01-06_other_matters.mp3``) goes through ``scribe transcribe --format
   json`` instead: the code before issue 16 (commit 840c49f in a git worktree, run with this
   venv's Python with the worktree first on the path, which is checked) and this checkout with
   word times on and off.

   Where speech starts: Silero VAD as faster-whisper ships it
   (``faster_whisper.vad.get_speech_timestamps``) with Silero's own defaults except the
   padding (threshold 0.5, speech at least 250 ms, silences from 100 ms, no padding), on the
   decoded 16 kHz audio; an onset is the start of a speech region, an offset its end. Each
   line's start is compared with the nearest onset and its end with the nearest offset:
   share within 0.3 s, median and p90 of the absolute error, over all lines and over the
   lines with an onset (offset) within 1 s, with their median signed error (negative: the
   line starts, or ends, before the speech does). A line cut inside continuous speech (at a
   clause end without a pause) has no onset near it to be measured against: the first
   figures count it as far off, the second leave it out. "chance" is the share of the
   timeline within 0.3 s of an onset: a start put at random lands that close that often. A
   line's start is its first timed character's (``Segment.start``; the segment's before).

   The clips also give the shown text's CER with word times off and on, the decoding time
   of each, and the text that only word times on wrote at the end of a clip.
2. **Uncertainty marks** on the 26 clips (word times on): the hypothesis characters (of the
   lines users read) and the reference go through OpenCC ``t2s``, lose everything but letters
   and digits, and are aligned by an edit-distance backtrace; a hypothesis character is wrong
   when it is substituted or inserted. For each threshold a character is marked when its
   ``Char.confidence`` is below it. Nothing is tuned on this data.
3. **Line lengths** on the meeting: characters (letters and digits, as
   ``core.messages.MAX_LINE_CHARS`` counts them) and seconds per line, before and after.

Run from the repository root (about 8 minutes on 2 cores; three ``scribe transcribe`` runs
of the 4'38" meeting and two decodes of each clip)::

    .venv/bin/python -m bench.lines_eval
    .venv/bin/python -m bench.lines_eval --skip-meeting        # the clips only (3-5 minutes)
    .venv/bin/python -m bench.lines_eval --before /tmp/before  # an existing checkout of 840c49f
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import ctranslate2
import msgspec
import numpy as np
from faster_whisper import decode_audio
from faster_whisper.vad import VadOptions, get_speech_timestamps

from bench.asr_eval import SEED, Clip, edit_distance, normalise, read_clips
from bench.contenders import scribe_command
from bench.measure import worktree
from core.messages import MAX_LINE_CHARS, MAX_LINE_SECONDS, Char, RawSegment, Segment
from core.settings import Settings
from romanizer.cleanup import collapse_loops, drop_hallucinations
from romanizer.romanize import Romanizer
from romanizer.service import romanize_chunk
from tests.paths import AUDIO
from transcriber.local import LocalBackend
from transcriber.model import load_model

REPO = Path(__file__).resolve().parent.parent
BEFORE_COMMIT = "840c49f"  # the last commit before issue 16
MEETING = "ktdc_meeting_2025-01-06_other_matters.mp3"
TOLERANCE_S = 0.3
MATCH_S = 1.0  # a line start farther than this from any onset is inside speech (a cut) or where none was found
THRESHOLDS = (0.3, 0.4, 0.5, 0.6)
SAMPLE_RATE = 16000
# Silero's own defaults (faster-whisper's are for cropping audio before ASR), with no padding: where speech begins.
DETECTOR = VadOptions(threshold=0.5, min_speech_duration_ms=250, min_silence_duration_ms=100, speech_pad_ms=0)
_segments_decoder = msgspec.json.Decoder(list[Segment])


@dataclass(frozen=True)
class Line:
    """A transcript line as this bench needs it."""

    start: float
    end: float
    text: str
    chars: Sequence[Char] = ()


@dataclass(frozen=True)
class Speech:
    """Where the detector found speech in one recording."""

    onsets: list[float]
    offsets: list[float]
    duration: float


@dataclass
class Version:
    """The lines one version of the code made of a set of recordings, with each recording's speech."""

    name: str
    lines: list[tuple[Speech, Line]]


# --- lines --------------------------------------------------------------------------------


def old_lines(romanizer: Romanizer, raw: list[RawSegment]) -> list[Line]:
    """The lines the code before issue 16 made of one chunk: one per kept segment, with the segment's times."""
    normalised = [collapse_loops(romanizer.normalise(s.text)) for s in raw]
    keep = drop_hallucinations(normalised, [])
    return [Line(s.start, s.end, text) for s, text, k in zip(raw, normalised, keep, strict=True) if k and text.strip()]


def new_lines(romanizer: Romanizer, raw: list[RawSegment]) -> list[Line]:
    """The lines ``romanize_chunk`` makes of one chunk."""
    segments = romanize_chunk(romanizer, raw, chunk_seq=0, first_seq=0, previous=[])
    return transcript_lines(segments)


def transcript_lines(segments: Sequence[Segment]) -> list[Line]:
    """A transcript's segments as lines."""
    return [Line(s.start, s.end, s.text, s.chars) for s in segments]


# --- speech -------------------------------------------------------------------------------


def detect_speech(samples: np.ndarray) -> Speech:
    """Silero VAD's speech regions in 16 kHz samples (:data:`DETECTOR`)."""
    regions = get_speech_timestamps(samples, DETECTOR, sampling_rate=SAMPLE_RATE)
    return Speech(
        onsets=[r["start"] / SAMPLE_RATE for r in regions],
        offsets=[r["end"] / SAMPLE_RATE for r in regions],
        duration=len(samples) / SAMPLE_RATE,
    )


def nearest_error(at: float, points: Sequence[float]) -> float | None:
    """``at`` minus the nearest of ``points`` (negative: ``at`` is early), or None without points."""
    if not points:
        return None
    return min((at - p for p in points), key=abs)


def near_share(points: Sequence[float], duration: float, tolerance: float = TOLERANCE_S) -> float:
    """Seconds of [0, duration] within ``tolerance`` of one of ``points``."""
    covered, reach = 0.0, 0.0
    for p in sorted(points):
        lo, hi = max(reach, p - tolerance, 0.0), min(p + tolerance, duration)
        covered += max(0.0, hi - lo)
        reach = max(reach, hi)
    return covered


# --- figures ------------------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q * 100)) if values else float("nan")


def error_cells(errors: Sequence[float], signed: bool = False) -> str:
    """Count, share within the tolerance, median and p90 absolute error, and the median signed error."""
    if not errors:
        return f"{0:>5} {'-':>6} {'-':>6} {'-':>6}" + (f" {'-':>6}" if signed else "")
    absolute = [abs(e) for e in errors]
    within = sum(1 for e in absolute if e <= TOLERANCE_S) / len(errors)
    cells = f"{len(errors):>5} {within:>6.0%} {quantile(absolute, 0.5):>6.2f} {quantile(absolute, 0.9):>6.2f}"
    return cells + (f" {quantile(errors, 0.5):>+6.2f}" if signed else "")


def timing_errors(version: Version, edge: str) -> list[float]:
    """Signed errors of the lines' starts (against onsets) or ends (against offsets)."""
    out: list[float] = []
    for speech, line in version.lines:
        if edge == "start":
            error = nearest_error(line.start, speech.onsets)
        else:
            error = nearest_error(line.end, speech.offsets)
        if error is not None:
            out.append(error)
    return out


def print_timing(title: str, versions: Sequence[Version], recordings: Sequence[Speech]) -> None:
    """The line-start and line-end tables of one set of recordings: all lines, and those near a detected edge."""
    duration = sum(s.duration for s in recordings)
    chance = sum(near_share(s.onsets, s.duration) for s in recordings) / max(duration, 1e-9)
    onsets = sum(len(s.onsets) for s in recordings)
    print(
        f"\n{title}: {len(recordings)} recording(s), {duration:.0f} s, {onsets} speech onsets "
        f"({onsets / max(duration, 1e-9) * 60:.0f} a minute); chance of a start within {TOLERANCE_S} s of an "
        f"onset: {chance:.0%}"
    )
    width = max(len(v.name) for v in versions)
    print(
        f"  {'':<{width + 27}} {'all lines':<26}   lines with one within {MATCH_S:g} s\n"
        f"  {'line':<5} {'against':<20} {'version':<{width}} {'lines':>5} {'<=0.3s':>6} {'med|e|':>6} {'p90|e|':>6}   "
        f"{'lines':>5} {'<=0.3s':>6} {'med|e|':>6} {'p90|e|':>6} {'med e':>6}"
    )
    for edge, against in (("start", "the nearest onset"), ("end", "the nearest offset")):
        for version in versions:
            errors = timing_errors(version, edge)
            near = [e for e in errors if abs(e) <= MATCH_S]
            print(
                f"  {edge:<5} {against:<20} {version.name:<{width}} {error_cells(errors)}   "
                f"{error_cells(near, signed=True)}"
            )


# --- uncertainty --------------------------------------------------------------------------


def wrong_flags(reference: str, hypothesis: str) -> list[bool]:
    """For each hypothesis character, whether an edit-distance alignment makes it a substitution or insertion."""
    n, m = len(reference), len(hypothesis)
    cost = np.zeros((n + 1, m + 1), dtype=np.int32)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(
                cost[i - 1, j - 1] + (reference[i - 1] != hypothesis[j - 1]), cost[i - 1, j] + 1, cost[i, j - 1] + 1
            )
    wrong = [False] * m
    i, j = n, m
    while j > 0:
        if i > 0 and cost[i, j] == cost[i - 1, j - 1] + (reference[i - 1] != hypothesis[j - 1]):
            wrong[j - 1] = reference[i - 1] != hypothesis[j - 1]
            i, j = i - 1, j - 1
        elif cost[i, j] == cost[i, j - 1] + 1:
            wrong[j - 1] = True  # inserted
            j -= 1
        else:
            i -= 1  # a deleted reference character: nothing to mark
    return wrong


def scored_chars(lines: Sequence[Line]) -> list[tuple[str, float | None]]:
    """The lines' characters in one script, letters and digits only, each with its confidence."""
    out: list[tuple[str, float | None]] = []
    for line in lines:
        for char in line.chars:
            for letter in normalise(char.char):  # t2s of one character: one character, or none for punctuation
                out.append((letter, char.confidence))
    return out


@dataclass
class Marks:
    """Characters with a confidence, and which are wrong."""

    confidences: list[float]
    wrong: list[bool]
    untimed: int = 0  # characters without a confidence (left out)


def add_clip(marks: Marks, reference: str, lines: Sequence[Line]) -> None:
    """Align one clip's hypothesis to its reference and add its characters to ``marks``."""
    chars = scored_chars(lines)
    flags = wrong_flags(normalise(reference), "".join(c for c, _ in chars))
    for (_char, confidence), wrong in zip(chars, flags, strict=True):
        if confidence is None:
            marks.untimed += 1
        else:
            marks.confidences.append(confidence)
            marks.wrong.append(wrong)


def print_marks(marks: Marks) -> None:
    """The threshold table."""
    total, wrong_total = len(marks.wrong), sum(marks.wrong)
    print(
        f"\nUncertainty marks (26 clips, word times on): {total} characters with a confidence, {wrong_total} wrong "
        f"({wrong_total / max(total, 1):.0%}); {marks.untimed} without a confidence left out"
    )
    print(f"  {'threshold':>9} {'marked':>7} {'wrong|marked':>13} {'wrong|unmarked':>15} {'wrong caught':>13}")
    for threshold in THRESHOLDS:
        marked = [w for c, w in zip(marks.confidences, marks.wrong, strict=True) if c < threshold]
        unmarked = [w for c, w in zip(marks.confidences, marks.wrong, strict=True) if c >= threshold]
        print(
            f"  {threshold:>9.1f} {len(marked) / max(total, 1):>7.0%} {_share(marked):>13} {_share(unmarked):>15} "
            f"{sum(marked) / max(wrong_total, 1):>13.0%}"
        )


def _share(flags: Sequence[bool]) -> str:
    return f"{sum(flags) / len(flags):.0%} of {len(flags)}" if flags else "-"


# --- the clips ----------------------------------------------------------------------------


CLIP_VERSIONS = ("before", "after", "after, word times off")


@dataclass
class ClipRun:
    """What the clips gave: each version's lines, the speech, the marks, and per word-times setting (off, on)
    the shown text's edit distance to the references and the decoding time."""

    versions: dict[str, Version] = field(default_factory=lambda: {n: Version(n, []) for n in CLIP_VERSIONS})
    speech: list[Speech] = field(default_factory=list)
    marks: Marks = field(default_factory=lambda: Marks([], []))
    edits: dict[bool, int] = field(default_factory=lambda: {False: 0, True: 0})
    decode_s: dict[bool, float] = field(default_factory=lambda: {False: 0.0, True: 0.0})
    ref_chars: int = 0
    tails: list[tuple[str, str]] = field(default_factory=list)  # (clip, text only word times on added at the end)


async def decode(backend: LocalBackend, clip: Clip, seconds: float) -> tuple[list[RawSegment], float]:
    """One clip through the backend: its segments and the wall time."""
    audio = await asyncio.to_thread(clip.path.read_bytes)
    started = time.perf_counter()
    result = await backend.transcribe(audio, duration=seconds, filename=clip.name)
    return result.segments, time.perf_counter() - started


async def run_clips(clips: Sequence[Clip], threads: int) -> ClipRun:
    """Decode every clip with word times off and on (alternating which goes first) and collect the figures."""
    settings = Settings.from_env().with_(asr_threads=threads, asr_workers=1)
    model = load_model(settings)
    backends = {wt: LocalBackend(model, settings.with_(asr_word_times=wt)) for wt in (False, True)}
    romanizer = Romanizer()
    run = ClipRun()
    ctranslate2.set_random_seed(SEED)
    for i, clip in enumerate(clips):
        samples = decode_audio(str(clip.path), sampling_rate=SAMPLE_RATE)
        speech = detect_speech(samples)
        run.speech.append(speech)
        raw: dict[bool, list[RawSegment]] = {}
        for wt in (False, True) if i % 2 == 0 else (True, False):
            raw[wt], seconds = await decode(backends[wt], clip, len(samples) / SAMPLE_RATE)
            run.decode_s[wt] += seconds
        lines = {
            "before": old_lines(romanizer, raw[False]),
            "after": new_lines(romanizer, raw[True]),
            "after, word times off": new_lines(romanizer, raw[False]),
        }
        for name, made in lines.items():
            run.versions[name].lines.extend((speech, line) for line in made)
        add_clip(run.marks, clip.reference, lines["after"])
        compare_texts(run, clip, off=lines["after, word times off"], on=lines["after"])
        print(f"  {clip.name}: {len(lines['before'])} lines before, {len(lines['after'])} after", file=sys.stderr)
    return run


def compare_texts(run: ClipRun, clip: Clip, *, off: Sequence[Line], on: Sequence[Line]) -> None:
    """Add the shown texts' edit distances to the reference, and the text only word times on wrote at the end."""
    reference = normalise(clip.reference)
    run.ref_chars += len(reference)
    shown = {False: normalise("".join(x.text for x in off)), True: normalise("".join(x.text for x in on))}
    for wt, text in shown.items():
        run.edits[wt] += edit_distance(reference, text)
    if len(shown[True]) > len(shown[False]) and shown[True].startswith(shown[False]):
        run.tails.append((clip.name, shown[True][len(shown[False]) :]))


# --- the meeting --------------------------------------------------------------------------


@contextlib.contextmanager
def before_checkout(existing: Path | None) -> Iterator[Path]:
    """The code before issue 16: ``existing``, or a git worktree of :data:`BEFORE_COMMIT` removed afterwards."""
    if existing is not None:
        yield existing
        return
    with worktree(BEFORE_COMMIT, "scribe-lines-before-") as folder:
        yield folder


def check_imports(code: Path, env: dict[str, str]) -> None:
    """Stop unless the Python run in ``code`` imports the services from there (not from this checkout)."""
    probe = "import romanizer.service, scribe.cli, transcriber.local; print(romanizer.service.__file__)"
    found = subprocess.run(
        [sys.executable, "-c", probe], cwd=code, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(code.resolve()):
        raise SystemExit(f"bench: the code in {code} imports {found}, not its own")
    print(f"before: {BEFORE_COMMIT} in {code} (imports {found})")


def transcribe(command: list[str], audio: Path, env: dict[str, str], cwd: Path) -> tuple[list[Segment], float]:
    """``scribe transcribe AUDIO --format json`` with ``command``: the transcript's segments and the wall time."""
    with tempfile.TemporaryDirectory(prefix="scribe-lines-") as tmp:
        output = Path(tmp) / "transcript.json"
        argv = [*command, "transcribe", str(audio), "--format", "json", "--quiet", "-o", str(output)]
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0 or not output.is_file():
            raise SystemExit(f"bench: {shlex.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        document = msgspec.json.decode(output.read_bytes())
    return _segments_decoder.decode(msgspec.json.encode(document["segments"])), wall


def run_meeting(audio: Path, before: Path) -> tuple[dict[str, list[Line]], Speech]:
    """The meeting through ``scribe transcribe``: before (the worktree), after with word times on and off."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SCRIBE_ASR_WORKERS": "2", "SCRIBE_ASR_THREADS": "1"}
    before_env = {**env, "PYTHONPATH": str(before)}
    check_imports(before, before_env)
    runs = {
        "before": ([sys.executable, "-m", "scribe"], before_env, before),
        "after": (scribe_command(), {**env, "SCRIBE_ASR_WORD_TIMES": "true"}, REPO),
        "after, word times off": (scribe_command(), {**env, "SCRIBE_ASR_WORD_TIMES": "false"}, REPO),
    }
    out: dict[str, list[Line]] = {}
    for name, (command, child_env, cwd) in runs.items():
        segments, wall = transcribe(command, audio, child_env, cwd)
        print(f"  meeting, {name}: {len(segments)} lines in {wall:.1f} s", file=sys.stderr)
        out[name] = transcript_lines(segments)
    speech = detect_speech(decode_audio(str(audio), sampling_rate=SAMPLE_RATE))
    return out, speech


def letters(text: str) -> int:
    """Letters and digits, as the line limit counts them (no punctuation, no spaces)."""
    return sum(1 for c in text if unicodedata.category(c)[0] in "LN")


def print_lengths(versions: dict[str, list[Line]]) -> None:
    """Characters and seconds per line, and the lines over the limits."""
    print(
        f"\nLine lengths on the meeting ({MEETING}): characters (letters and digits) and seconds per line; "
        f"limits {MAX_LINE_CHARS} characters, {MAX_LINE_SECONDS:g} s"
    )
    print(
        f"  {'version':<24} {'chars':>6} {'lines':>5} {'chars p50':>9} {'p90':>5} {'max':>4} {f'>{MAX_LINE_CHARS}':>4} "
        f"{'s p50':>6} {'p90':>5} {'max':>5} {f'>{MAX_LINE_SECONDS:g} s':>5}"
    )
    for name, lines in versions.items():
        chars = [letters(line.text) for line in lines]
        seconds = [line.end - line.start for line in lines]
        print(
            f"  {name:<24} {sum(chars):>6} {len(lines):>5} {quantile(chars, 0.5):>9.0f} {quantile(chars, 0.9):>5.0f} "
            f"{max(chars, default=0):>4} {sum(c > MAX_LINE_CHARS for c in chars):>4} {quantile(seconds, 0.5):>6.1f} "
            f"{quantile(seconds, 0.9):>5.1f} {max(seconds, default=0):>5.1f} "
            f"{sum(s > MAX_LINE_SECONDS for s in seconds):>5}"
        )
    for name in ("after", "after, word times off"):
        long = [
            x for x in versions.get(name, []) if letters(x.text) > MAX_LINE_CHARS or x.end - x.start > MAX_LINE_SECONDS
        ]
        for line in long:
            print(
                f"  over a limit ({name}): {line.start:.1f}-{line.end:.1f} s, {letters(line.text)} chars: {line.text}"
            )


# --- main ---------------------------------------------------------------------------------


def print_clip_summary(run: ClipRun) -> None:
    print(
        f"\nClips: CER of the shown text {run.edits[False] / run.ref_chars:.3f} with word times off, "
        f"{run.edits[True] / run.ref_chars:.3f} on ({run.ref_chars} reference characters); decoding "
        f"{run.decode_s[False]:.1f} s off, {run.decode_s[True]:.1f} s on (alternating which goes first)"
    )
    print(f"{len(run.tails)} clips end in text only word times on wrote (after the text word times off wrote):")
    for name, tail in run.tails:
        print(f"  {name}: {tail}")


def main(argv: list[str] | None = None) -> int:
    """Run the measures and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=AUDIO, help="folder with manifest.tsv, the clips and the meeting")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads for the clips' decodes")
    parser.add_argument("--before", type=Path, help=f"a checkout of {BEFORE_COMMIT} (default: a temporary worktree)")
    parser.add_argument("--skip-meeting", action="store_true", help="the clips only")
    parser.add_argument("--skip-clips", action="store_true", help="the meeting only")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"bench/lines_eval.py: {shlex.join(sys.argv)}")
    print(f"machine: {os.cpu_count()} cores; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"speech detector: Silero VAD (faster_whisper.vad), threshold {DETECTOR.threshold}, "
        f"min speech {DETECTOR.min_speech_duration_ms} ms, min silence {DETECTOR.min_silence_duration_ms} ms, "
        f"pad {DETECTOR.speech_pad_ms} ms"
    )
    if not args.skip_clips:
        clips = read_clips(args.data)
        run = asyncio.run(run_clips(clips, args.threads))
        print_timing("Line times, 26 reference clips", list(run.versions.values()), run.speech)
        print_marks(run.marks)
        print_clip_summary(run)
    if not args.skip_meeting:
        with before_checkout(args.before) as before:
            meeting, speech = run_meeting(args.data / MEETING, before)
        versions = [Version(name, [(speech, line) for line in lines]) for name, lines in meeting.items()]
        print_timing(f"Line times, the meeting ({MEETING}, scribe transcribe)", versions, [speech])
        print_lengths(meeting)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The media fuzzer's full matrix on long inputs, with decode time and peak memory per case.

Prints figures; it is not a test (``tests/unit/test_media_fuzz.py`` checks behaviour on short
clips). The cases are those of ``bench.fuzz_cases``, built from 30 s of speech per format, plus
10 minutes of white noise and digital silence, plus the 4'38" KTDC meeting MP3 with the same bit
flips and cuts as the other sources. Each case is decoded by ``open_media`` with the service's
duration limit and chunk settings.

Every case runs in a fresh process (multiprocessing "spawn"), so a segfault in FFmpeg shows up as
a crash of that case and the memory figure is the case's own: the growth of the child's peak RSS
(VmHWM, reset through ``/proc/self/clear_refs`` just before opening the input; ``ru_maxrss`` where
that is not possible) over its RSS at that moment, i.e. what decoding added on top of the imports.
A case still running after ``--timeout`` seconds is killed and counted as hung.

Run from the repository root::

    .venv/bin/python -m bench.fuzz_media
    .venv/bin/python -m bench.fuzz_media --speech-s 10 --noise-s 60 --only mp3

Exits with status 1 when any case crashed or hung.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import psutil

from bench.fuzz_cases import Case, Corpus, Kind, Outcome, decode
from core.settings import Settings
from tests.media import MEETING

KINDS: tuple[Kind, ...] = ("refused", "salvaged", "clean", "crashed", "hung")
# Outcomes that meet each expectation (see bench.fuzz_cases.Expect); "sound" also needs audio out.
MEETS: dict[str, tuple[Kind, ...]] = {
    "clean": ("clean",),
    "salvage": ("salvaged",),
    "sound": ("clean", "salvaged"),
    "refused": ("refused",),
    "any": ("refused", "salvaged", "clean"),
}
MESSAGE_WIDTH = 90


@dataclass
class CaseRun:
    """One case's outcome, with the time and memory its decoding took."""

    case: Case
    outcome: Outcome
    decode_s: float
    rss_growth_mb: float


def _child(path: str, max_duration_s: float, piece_options: dict[str, float], conn: Connection) -> None:
    """Decode one input in this fresh process and send back the outcome, time and memory growth."""
    rss_before = _reset_peak_rss()
    started = time.perf_counter()
    outcome = decode(Path(path), max_duration_s=max_duration_s, piece_options=piece_options)
    decode_s = time.perf_counter() - started
    conn.send((outcome, decode_s, max(0, _peak_rss() - rss_before) / 1e6))
    conn.close()


def _reset_peak_rss() -> int:
    """Reset this process's peak RSS to its current RSS (Linux ``clear_refs``), and return that.

    Without the reset the peak would be that of the imports, which spawning and unpickling reach.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # then the peak is ru_maxrss, including the imports'
    return int(psutil.Process().memory_info().rss)


def _peak_rss() -> int:
    """Peak RSS in bytes since the reset: VmHWM, or ru_maxrss where /proc has no such line."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def measure(case: Case, path: Path, settings: Settings, timeout_s: float) -> CaseRun:
    """Decode ``path`` in a fresh process; a hang or a dead process is an outcome, not an error."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    min_s, max_s = settings.chunk_lengths
    piece_options = {
        "min_s": min_s,
        "max_s": max_s,
        "silence_dbfs": settings.silence_dbfs,
        "first_max_s": settings.chunk_first_max_s,
    }
    process = context.Process(
        target=_child, args=(str(path), settings.max_duration_s, piece_options, sender), name=case.name
    )
    started = time.perf_counter()
    process.start()
    sender.close()  # the child holds the only writer: its death ends the pipe
    result = _receive(receiver, timeout_s)
    hung = result is None and process.is_alive()
    if hung:
        process.kill()
    process.join()
    receiver.close()
    if result is not None:
        outcome, decode_s, growth_mb = result
        return CaseRun(case, outcome, decode_s, growth_mb)
    elapsed = time.perf_counter() - started
    if hung:
        return CaseRun(case, Outcome(kind="hung", message=f"killed after {timeout_s:g} s"), elapsed, 0.0)
    message = f"the decoding process died with exit code {process.exitcode}"
    return CaseRun(case, Outcome(kind="crashed", error="ProcessDied", message=message), elapsed, 0.0)


def _receive(receiver: Connection, timeout_s: float) -> tuple[Outcome, float, float] | None:
    """The child's result, or None when it sent nothing in time or died first."""
    try:
        if receiver.poll(timeout_s):
            result: tuple[Outcome, float, float] = receiver.recv()
            return result
    except EOFError:  # the child died without sending: a native crash
        pass
    return None


def met(case: Case, outcome: Outcome) -> bool:
    """Whether the outcome is what the case expects."""
    audio_needed = case.expect in ("clean", "salvage", "sound")
    return outcome.kind in MEETS[case.expect] and (outcome.samples > 0 or not audio_needed)


def print_row(row: CaseRun, name_width: int) -> None:
    outcome = row.outcome
    mark = " " if met(row.case, outcome) else "!"
    message = " ".join(outcome.message.split())
    if len(message) > MESSAGE_WIDTH:
        message = message[: MESSAGE_WIDTH - 3] + "..."
    print(
        f"{row.case.name:<{name_width}}  {row.case.expect:<7} {mark}{outcome.kind:<8} {outcome.decoded_s:8.1f} "
        f"{row.decode_s:9.2f} {row.rss_growth_mb:8.1f}  {message}",
        flush=True,
    )


def print_header(name_width: int) -> None:
    print(
        f"{'case':<{name_width}}  {'expect':<7} {'kind':<9}{'audio s':>8} {'decode s':>9} {'peak MB':>8}  message",
        flush=True,
    )


def summarize(rows: list[CaseRun]) -> str:
    """The summary line: how many cases of each kind."""
    counts = Counter(row.outcome.kind for row in rows)
    return (
        f"cases tried {len(rows)}, refused {counts['refused']}, salvaged {counts['salvaged']}, "
        f"clean {counts['clean']}, crashed {counts['crashed']}, hung {counts['hung']}"
    )


def print_findings(rows: list[CaseRun]) -> None:
    """Tracebacks of the crashes, and the cases whose outcome is not the expected one."""
    for row in rows:
        if row.outcome.kind == "crashed":
            print(f"\n--- {row.case.name}: {row.outcome.message}\n{row.outcome.traceback}", end="")
    unmet = [row.case.name for row in rows if not met(row.case, row.outcome)]
    print(f"\nexpectations not met ('!' above): {len(unmet)}" + (f": {', '.join(unmet)}" if unmet else ""))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech-s", type=float, default=30.0, help="seconds of speech per format (default 30)")
    parser.add_argument("--noise-s", type=float, default=600.0, help="seconds of noise and silence (default 600)")
    parser.add_argument("--long", type=Path, default=MEETING, help="a long real recording to mutate too")
    parser.add_argument("--no-long", action="store_true", help="leave the long recording out")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a case counts as hung")
    parser.add_argument("--only", default="", help="run only the cases whose name contains this")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the matrix and print the table; returns 1 when a case crashed or hung."""
    args = parse_args(argv)
    settings = Settings()
    min_s, max_s = settings.chunk_lengths
    extra = {} if args.no_long else {"meeting-mp3": args.long}
    corpus = Corpus(speech_s=args.speech_s, noise_s=args.noise_s, extra_sources=extra)
    cases = [case for case in corpus.cases() if args.only in case.name]
    print(
        f"{len(cases)} cases; speech {args.speech_s:.0f} s, noise and silence {args.noise_s:.0f} s; "
        f"limit {settings.max_duration_s:.0f} s; pieces {min_s:.0f}-{max_s:.0f} s"
    )
    name_width = max(len(case.name) for case in cases)
    print_header(name_width)
    rows: list[CaseRun] = []
    with tempfile.TemporaryDirectory(prefix="fuzz-media-") as folder:
        for case in cases:
            path = Path(folder) / case.name.replace("/", "__")
            path.write_bytes(case.make())
            rows.append(measure(case, path, settings, args.timeout))
            print_row(rows[-1], name_width)
            path.unlink()
    print_findings(rows)
    print(summarize(rows))
    return 1 if any(row.outcome.kind in ("crashed", "hung") for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

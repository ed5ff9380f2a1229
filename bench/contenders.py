"""The input and the contenders of ``bench.pipeline``: two bare faster-whisper baselines and ``scribe transcribe``.

A baseline runs in a child process, ``bench/pipeline.py --child KIND`` (:func:`child_main`),
which prints its figures as one JSON line; the pipeline runs as ``scribe transcribe``. Both are
measured from outside with :func:`bench.measure.run_measured`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import shlex
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import Measured, run_measured
from core.settings import Settings

SAMPLE_RATE = 16000
BATCH_SIZE = 8
BASELINES = ("sequential", "batched")
# cli.Display's plain live line: "[mm:ss] text", or "[h:mm:ss] text" from an hour on.
PARTIAL_LINE = re.compile(r"^\[(?:\d+:)?\d{2,}:\d{2}\] ")
CHILD_SCRIPT = Path(__file__).resolve().with_name("pipeline.py")  # run with --child KIND for a baseline


# --- input --------------------------------------------------------------------------------


def build_input(source: Path, minutes: float, cache_dir: Path) -> tuple[Path, float]:
    """Loop ``source`` to ``minutes`` of 16 kHz mono audio and write it once as MP3 (cached).

    Args:
        source: The recording to loop.
        minutes: The length of the result.
        cache_dir: Where the result is kept between runs.

    Returns:
        The MP3 file and its duration in seconds.
    """
    target_samples = round(minutes * 60 * SAMPLE_RATE)
    stat = source.stat()
    out = cache_dir / f"{source.stem}_loop_{minutes:g}min_{stat.st_size}_{int(stat.st_mtime)}.mp3"
    if out.is_file() and out.stat().st_size > 0:
        return out, target_samples / SAMPLE_RATE
    cache_dir.mkdir(parents=True, exist_ok=True)
    _write_mp3(_decode_looped(source, target_samples), out)
    return out, target_samples / SAMPLE_RATE


def _decode_looped(source: Path, target_samples: int) -> Any:
    """``source`` as 16 kHz mono s16 samples (a numpy array), repeated and cut to ``target_samples``."""
    import av
    import numpy as np

    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    pieces: list[Any] = []
    with av.open(str(source)) as container:
        for frame in container.decode(audio=0):
            pieces.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
    pieces.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    once = np.concatenate(pieces)
    if once.size == 0:
        raise SystemExit(f"bench: {source} decodes to no audio")
    return np.resize(once, target_samples)  # repeats the recording, cut at the target length


def _write_mp3(samples: Any, out: Path) -> None:
    """Encode 16 kHz mono s16 ``samples`` as a 32 kbit/s MP3 at ``out`` (through a temporary file)."""
    import av

    fd, tmp_name = tempfile.mkstemp(prefix=out.stem + ".", suffix=".mp3.tmp", dir=out.parent)
    os.close(fd)
    try:
        with av.open(tmp_name, "w", format="mp3") as container:
            stream = container.add_stream("libmp3lame", rate=SAMPLE_RATE, layout="mono")
            stream.bit_rate = 32000
            for start in range(0, len(samples), SAMPLE_RATE):
                block = samples[start : start + SAMPLE_RATE].reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(block, format="s16p", layout="mono")
                frame.sample_rate = SAMPLE_RATE
                frame.pts = start
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        os.replace(tmp_name, out)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


# --- baselines (child side) ---------------------------------------------------------------


def decode_options(settings: Settings, model: Any) -> dict[str, Any]:
    """The decoding options of ``LocalBackend`` that apply to a whole-file transcription.

    Args:
        settings: ``asr_prompt``, ``asr_beam_size``, ``asr_suppress_written``.
        model: The loaded ``WhisperModel`` (its tokenizer gives the suppress list).

    Returns:
        Keyword arguments for ``transcribe``.
    """
    from transcriber.local import decode_options
    from transcriber.model import written_chinese_suppress_tokens

    suppress = written_chinese_suppress_tokens(model.hf_tokenizer) if settings.asr_suppress_written else [-1]
    return decode_options(settings, suppress)


class _FallbackCounter(logging.Handler):
    """Counts faster-whisper's "threshold is not met" debug records (a window decoded again, hotter)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Count the record if it is a temperature fallback."""
        if "threshold is not met" in record.msg:
            self.count += 1


def _count_fallbacks() -> _FallbackCounter:
    """A handler on faster-whisper's logger (set to DEBUG, kept from the root) counting temperature fallbacks."""
    counter = _FallbackCounter()
    log = logging.getLogger("faster_whisper")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(counter)
    return counter


def _transcribe(kind: str, model: Any, audio: Path, options: dict[str, Any]) -> Iterable[Any]:
    """The lazy segment generator of baseline ``kind`` (the decoding happens while it is consumed)."""
    from faster_whisper import BatchedInferencePipeline

    if kind == "batched":
        segments, _info = BatchedInferencePipeline(model).transcribe(str(audio), batch_size=BATCH_SIZE, **options)
    else:
        segments, _info = model.transcribe(str(audio), vad_filter=True, **options)
    return segments


def _consume(segments: Iterable[Any]) -> tuple[float | None, int, int]:
    """Consume ``segments``: epoch of the first, number with text, characters of text (whitespace dropped)."""
    first: float | None = None
    count = chars = 0
    for segment in segments:  # lazy: the decoding happens while this loop runs
        first = first or time.time()
        text = "".join(segment.text.split())
        if text:
            count += 1
            chars += len(text)
    return first, count, chars


def child_main(kind: str, audio: Path, model_dir: Path, threads: int) -> None:
    """Run one baseline in this (child) process and print its figures as one JSON line on stdout.

    Args:
        kind: ``sequential`` or ``batched``.
        audio: The input file.
        model_dir: The CTranslate2 model folder.
        threads: CPU threads for CTranslate2.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    started = time.time()
    fallbacks = _count_fallbacks()
    from faster_whisper import WhisperModel

    settings = Settings.from_env()
    imported = time.time()
    model = WhisperModel(
        str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads, num_workers=1, local_files_only=True
    )
    loaded = time.time()
    options = decode_options(settings, model)
    first, count, chars = _consume(_transcribe(kind, model, audio, options))
    done = time.time()
    figures = {
        "started": started,
        "imported": imported,
        "loaded": loaded,
        "first_segment": first,
        "done": done,
        "segments": count,
        "chars": chars,
        "suppress_tokens": len(options["suppress_tokens"]),
        "fallbacks": fallbacks.count,
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    print(json.dumps(figures), flush=True)


# --- the runs (parent side) ---------------------------------------------------------------


@dataclass
class Run:
    """The figures of one run of one contender."""

    name: str
    wall_s: float
    model_s: float | None  # baselines: model load excluded, transcription with the generator consumed
    load_s: float | None  # baselines: process start to model loaded
    first_s: float | None  # pipeline: first partial line; baselines: first segment (from process start)
    segments: int
    chars: int
    partial_lines: int | None
    fallbacks: int | None  # baselines: windows decoded again at a higher temperature
    cpu_s: float
    peak_rss_mb: float  # the child process itself (wait4)
    peak_rss_mb_by_name: dict[str, float]
    processes_by_name: dict[str, int]
    peak_total_rss_mb: float
    peak_total_pss_mb: float
    notes: list[str]


def _fail(what: str, measured: Measured) -> RuntimeError:
    """The error for a failed run: exit code, command and the last stderr lines."""
    tail = "\n".join(f"    {line}" for _at, line in measured.stderr_lines[-25:])
    return RuntimeError(
        f"{what} failed (exit code {measured.returncode}) after {measured.wall_s:.1f} s\n"
        f"  command: {shlex.join(measured.command)}\n  last stderr lines:\n{tail}"
    )


def _baseline_command(kind: str, audio: Path, model_dir: Path, threads: int) -> list[str]:
    """The argv of a baseline's child process: the entry script with ``--child``."""
    return [
        sys.executable,
        str(CHILD_SCRIPT),
        "--child",
        kind,
        "--child-input",
        str(audio),
        "--child-model",
        str(model_dir),
        "--threads",
        str(threads),
    ]


def run_baseline(kind: str, audio: Path, model_dir: Path, threads: int, env: dict[str, str], timeout_s: float) -> Run:
    """Run one baseline in a child process (the entry script with ``--child``)."""
    command = _baseline_command(kind, audio, model_dir, threads)
    measured = run_measured(command, env, root_name=kind, timeout_s=timeout_s)
    lines = [line for line in measured.stdout.splitlines() if line.startswith("{")]
    if measured.returncode != 0 or not lines:
        raise _fail(f"baseline {kind}", measured)
    return _baseline_run(kind, measured, json.loads(lines[-1]))


def _baseline_run(kind: str, measured: Measured, figures: dict[str, Any]) -> Run:
    """A baseline's run from the outside measurements and the figures its child printed."""
    start = measured.started_epoch
    first = figures["first_segment"]
    return Run(
        name=kind,
        wall_s=measured.wall_s,
        model_s=figures["done"] - figures["loaded"],
        load_s=figures["loaded"] - start,
        first_s=None if first is None else first - start,
        segments=figures["segments"],
        chars=figures["chars"],
        partial_lines=None,
        fallbacks=figures["fallbacks"],
        cpu_s=measured.cpu_s,
        peak_rss_mb=measured.root_maxrss_mb,
        peak_rss_mb_by_name={kind: measured.root_maxrss_mb},
        processes_by_name=measured.processes_by_name,
        peak_total_rss_mb=max(measured.peak_total_rss_mb, measured.root_maxrss_mb),
        peak_total_pss_mb=measured.peak_total_pss_mb,
        notes=measured.notes,
    )


def scribe_command() -> list[str]:
    """The ``scribe`` console script beside this Python (the venv's), else ``python -m``-style."""
    script = Path(sys.executable).parent / "scribe"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from scribe.cli import main; main()"]


class _PartialLines:
    """Counts the pipeline's live partial lines on stderr and keeps when the first one came."""

    def __init__(self) -> None:
        self.count = 0
        self.first: float | None = None

    def on_line(self, at: float, line: str) -> None:
        """``run_measured``'s callback: ``at`` seconds since start, one stderr line."""
        if PARTIAL_LINE.match(line):
            self.count += 1
            if self.first is None:
                self.first = at


def run_pipeline(audio: Path, threads: int, env: dict[str, str], settings: Settings, timeout_s: float) -> Run:
    """Run ``scribe transcribe INPUT --format json -o FILE`` and measure it."""
    partials = _PartialLines()
    pgdata = None if settings.database_url else settings.data_dir / "postgres"
    with tempfile.TemporaryDirectory(prefix="scribe-bench-") as tmp:
        output = Path(tmp) / "transcript.json"
        command = [*scribe_command(), "transcribe", str(audio), "--format", "json", "-o", str(output)]
        # The same CPU threads in all: the pipeline spends them on chunks side by side.
        child_env = {**env, "SCRIBE_ASR_WORKERS": str(threads), "SCRIBE_ASR_THREADS": "1"}
        measured = run_measured(
            command, child_env, root_name="scribe", pgdata=pgdata, timeout_s=timeout_s, on_line=partials.on_line
        )
        if measured.returncode != 0 or not output.is_file():
            raise _fail("scribe transcribe", measured)
        document = json.loads(output.read_text(encoding="utf-8"))
    return _pipeline_run(measured, document.get("segments", []), partials)


def _pipeline_run(measured: Measured, segments: list[dict[str, Any]], partials: _PartialLines) -> Run:
    """The pipeline's run from the outside measurements, the transcript's segments and the partial lines."""
    chars = sum(len("".join(str(s.get("text", "")).split())) for s in segments)
    by_name = dict(measured.peak_rss_mb_by_name)
    by_name["scribe"] = max(by_name.get("scribe", 0.0), measured.root_maxrss_mb)
    return Run(
        name="pipeline",
        wall_s=measured.wall_s,
        model_s=None,
        load_s=None,
        first_s=partials.first,
        segments=len(segments),
        chars=chars,
        partial_lines=partials.count,
        fallbacks=None,
        cpu_s=measured.cpu_s,
        peak_rss_mb=measured.root_maxrss_mb,
        peak_rss_mb_by_name=by_name,
        processes_by_name=measured.processes_by_name,
        peak_total_rss_mb=measured.peak_total_rss_mb,
        peak_total_pss_mb=measured.peak_total_pss_mb,
        notes=measured.notes,
    )

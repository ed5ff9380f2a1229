"""End-to-end speed and memory of ``scribe transcribe`` on a long recording, against bare faster-whisper.

Prints figures; it is not a test. In one run, on the same input, model folder, compute type
(int8) and CPU thread count, it measures:

* ``sequential``: ``WhisperModel.transcribe(path, vad_filter=True)``, the generator consumed;
* ``batched``: ``faster_whisper.BatchedInferencePipeline(model).transcribe(path, batch_size=8)``;
* ``pipeline``: ``scribe transcribe INPUT --format json -o FILE`` (embedded NATS + PostgreSQL +
  every service in one process), with the same thread count spent as ``SCRIBE_ASR_WORKERS``
  one-thread decodes side by side (``SCRIBE_ASR_THREADS=1``).

The baselines decode like ``transcriber.backends.LocalBackend``: language "zh", the initial
prompt and beam size from the settings, no conditioning on previous text, and the
written-Chinese ``suppress_tokens`` list built by ``transcriber.model``. Each run is its own
child process; wall time is from process start to exit. Peak memory: ``ru_maxrss`` of the
child from ``os.wait4`` (exact) plus psutil sampling every 0.2 s of the process tree and of
the embedded PostgreSQL server (``pg_ctl`` daemonizes it, so it is found through
``<data_dir>/postgres/postmaster.pid``).

The input is the 4'38" KTDC meeting looped to ``--minutes`` (default 10) and written once as
16 kHz mono MP3 into a cache folder. The pipeline reuses the default data folder, so the
embedded model is already joined (the bench joins it first) and PostgreSQL's cluster
already exists: a first run on a fresh machine takes some seconds more.

Run from the repository root::

    .venv/bin/python bench/pipeline.py                 # 10 minutes of audio, all cores
    .venv/bin/python bench/pipeline.py --minutes 1 --runs 3 --json bench-pipeline.json
    .venv/bin/python bench/pipeline.py --skip-baselines --threads 2
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import re
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402 - after the sys.path set-up, like the project imports below

from scribe.settings import Settings  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "audio"
SOURCE_NAME = "ktdc_meeting_2025-01-06_other_matters.mp3"
SAMPLE_RATE = 16000
BATCH_SIZE = 8
BASELINES = ("sequential", "batched")
SAMPLE_EVERY_S = 0.2
PARTIAL_LINE = re.compile(r"^\[\d{2,}:\d{2}\] ")  # cli.Display's plain live line: "[mm:ss] text"

# Targets (DESIGN.md "Performance" and the product brief).
MAX_VS_SEQUENTIAL = 1.15
MAX_FIRST_PARTIAL_S = 8.0
BRIEF_AUDIO_S = 600.0  # "under 3 minutes for a 10-minute video"
BRIEF_WALL_S = 180.0


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
    import av
    import numpy as np

    target_samples = round(minutes * 60 * SAMPLE_RATE)
    stat = source.stat()
    out = cache_dir / f"{source.stem}_loop_{minutes:g}min_{stat.st_size}_{int(stat.st_mtime)}.mp3"
    if out.is_file() and out.stat().st_size > 0:
        return out, target_samples / SAMPLE_RATE
    cache_dir.mkdir(parents=True, exist_ok=True)

    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    pieces: list[Any] = []
    with av.open(str(source)) as container:
        for frame in container.decode(audio=0):
            pieces.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
    pieces.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    once = np.concatenate(pieces)
    if once.size == 0:
        raise SystemExit(f"bench: {source} decodes to no audio")
    looped = np.resize(once, target_samples)  # repeats the recording, cut at the target length

    fd, tmp_name = tempfile.mkstemp(prefix=out.stem + ".", suffix=".mp3.tmp", dir=cache_dir)
    os.close(fd)
    try:
        with av.open(tmp_name, "w", format="mp3") as container:
            stream = container.add_stream("libmp3lame", rate=SAMPLE_RATE, layout="mono")
            stream.bit_rate = 32000
            for start in range(0, target_samples, SAMPLE_RATE):
                block = looped[start : start + SAMPLE_RATE].reshape(1, -1)
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
    return out, target_samples / SAMPLE_RATE


# --- baselines (child side) ---------------------------------------------------------------


def decode_options(settings: Settings, model: Any) -> dict[str, Any]:
    """The decoding options of ``LocalBackend`` that apply to a whole-file transcription.

    Args:
        settings: ``asr_prompt``, ``asr_beam_size``, ``asr_suppress_written``.
        model: The loaded ``WhisperModel`` (its tokenizer gives the suppress list).

    Returns:
        Keyword arguments for ``transcribe``.
    """
    from transcriber.backends import decode_options
    from transcriber.model import written_chinese_suppress_tokens

    suppress = written_chinese_suppress_tokens(model.hf_tokenizer) if settings.asr_suppress_written else [-1]
    return decode_options(settings, suppress)


class _FallbackCounter(logging.Handler):
    """Counts faster-whisper's "threshold is not met" debug records (a window decoded again, hotter)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "threshold is not met" in record.msg:
            self.count += 1


def _count_fallbacks() -> _FallbackCounter:
    counter = _FallbackCounter()
    log = logging.getLogger("faster_whisper")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(counter)
    return counter


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
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    settings = Settings.from_env()
    imported = time.time()
    model = WhisperModel(
        str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads, num_workers=1, local_files_only=True
    )
    loaded = time.time()
    options = decode_options(settings, model)
    if kind == "batched":
        segments, _info = BatchedInferencePipeline(model).transcribe(str(audio), batch_size=BATCH_SIZE, **options)
    else:
        segments, _info = model.transcribe(str(audio), vad_filter=True, **options)
    first: float | None = None
    count = chars = 0
    for segment in segments:  # lazy: the decoding happens while this loop runs
        first = first or time.time()
        text = "".join(segment.text.split())
        if text:
            count += 1
            chars += len(text)
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


# --- measuring a child process (parent side) ----------------------------------------------


@dataclass
class Measured:
    """What one child process did, as seen from outside."""

    command: list[str]
    returncode: int
    wall_s: float
    started_epoch: float
    stdout: str
    stderr_lines: list[tuple[float, str]]  # (seconds since start, line)
    root_maxrss_mb: float  # ru_maxrss of the child from wait4 (exact peak)
    cpu_s: float  # user + system CPU of the child (and the children it waited for), from wait4
    peak_rss_mb_by_name: dict[str, float]  # per process name: peak of the sum over processes of that name
    processes_by_name: dict[str, int]  # most processes of that name seen at once
    peak_total_rss_mb: float  # peak of the sum at one instant
    peak_total_pss_mb: float  # same with PSS (shared pages split between processes)
    samples: int
    notes: list[str] = field(default_factory=list)


def _postmaster(pgdata: Path | None) -> psutil.Process | None:
    """The PostgreSQL server using ``pgdata``, from its ``postmaster.pid``."""
    if pgdata is None:
        return None
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        return psutil.Process(pid)
    except (OSError, ValueError, psutil.Error):
        return None


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


def run_measured(
    command: list[str],
    env: dict[str, str],
    *,
    root_name: str,
    pgdata: Path | None = None,
    timeout_s: float = 3600.0,
    on_line: Callable[[float, str], None] | None = None,
) -> Measured:
    """Run ``command``, time it from start to exit, and sample the memory of its processes.

    Args:
        command: The child's argv.
        env: Its environment.
        root_name: The name the child process itself is reported under.
        pgdata: A PostgreSQL data folder whose server counts as part of the run.
        timeout_s: Interrupt (SIGINT, then SIGKILL) the child after this long.
        on_line: Called with (seconds since start, line) for each stderr line as it arrives.

    Returns:
        The measurements.
    """
    notes: list[str] = []
    before = _postmaster(pgdata)
    if before is not None:
        notes.append(f"a PostgreSQL server on {pgdata} was already running (pid {before.pid}) and is counted")
    stdout_chunks: list[str] = []
    stderr_lines: list[tuple[float, str]] = []
    peaks: dict[str, float] = {}
    counts: dict[str, int] = {}
    peak_total = peak_pss = 0.0
    samples = 0
    finished = threading.Event()

    started_epoch = time.time()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None

    def read_stdout() -> None:
        assert proc.stdout is not None
        stdout_chunks.append(proc.stdout.read())

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            at = time.perf_counter() - t0
            line = line.rstrip("\n")
            stderr_lines.append((at, line))
            if on_line is not None:
                on_line(at, line)

    def sample() -> None:
        nonlocal peak_total, peak_pss, samples
        try:
            root = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not finished.is_set():
            procs = {p.pid: p for p in _tree(root)}
            server = _postmaster(pgdata)
            if server is not None:
                procs.update((p.pid, p) for p in _tree(server))
            by_name: dict[str, float] = {}
            number: dict[str, int] = {}
            total = pss = 0.0
            for pid, p in procs.items():
                try:
                    name = root_name if pid == proc.pid else p.name()
                    try:
                        info = p.memory_full_info()
                        rss, shared = info.rss, info.pss
                    except psutil.AccessDenied:
                        rss = p.memory_info().rss
                        shared = rss
                except psutil.Error:
                    continue
                by_name[name] = by_name.get(name, 0.0) + rss / 2**20
                number[name] = number.get(name, 0) + 1
                total += rss / 2**20
                pss += shared / 2**20
            for name, mb in by_name.items():
                peaks[name] = max(peaks.get(name, 0.0), mb)
                counts[name] = max(counts.get(name, 0), number[name])
            peak_total, peak_pss = max(peak_total, total), max(peak_pss, pss)
            samples += 1
            finished.wait(SAMPLE_EVERY_S)

    threads = [threading.Thread(target=fn, daemon=True) for fn in (read_stdout, read_stderr, sample)]
    for thread in threads:
        thread.start()

    def interrupt() -> None:
        notes.append(f"timed out after {timeout_s:.0f} s: interrupted")
        try:
            os.killpg(proc.pid, signal.SIGINT)  # scribe cleans up (stops NATS and PostgreSQL) on Ctrl-C
            time.sleep(20)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout_s, interrupt)
    timer.daemon = True
    timer.start()
    # wait4 rather than Popen.wait: it gives this child's own peak RSS.
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    finished.set()
    for thread in threads:
        thread.join(timeout=10)
    return Measured(
        command=command,
        returncode=proc.returncode,
        wall_s=wall,
        started_epoch=started_epoch,
        stdout="".join(stdout_chunks),
        stderr_lines=stderr_lines,
        root_maxrss_mb=usage.ru_maxrss / 1024,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb_by_name=peaks,
        processes_by_name=counts,
        peak_total_rss_mb=peak_total,
        peak_total_pss_mb=peak_pss,
        samples=samples,
        notes=notes,
    )


# --- the runs -----------------------------------------------------------------------------


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
    tail = "\n".join(f"    {line}" for _at, line in measured.stderr_lines[-25:])
    return RuntimeError(
        f"{what} failed (exit code {measured.returncode}) after {measured.wall_s:.1f} s\n"
        f"  command: {shlex.join(measured.command)}\n  last stderr lines:\n{tail}"
    )


def run_baseline(kind: str, audio: Path, model_dir: Path, threads: int, env: dict[str, str], timeout_s: float) -> Run:
    """Run one baseline in a child process (this script with ``--child``)."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        kind,
        "--child-input",
        str(audio),
        "--child-model",
        str(model_dir),
        "--threads",
        str(threads),
    ]
    measured = run_measured(command, env, root_name=kind, timeout_s=timeout_s)
    lines = [line for line in measured.stdout.splitlines() if line.startswith("{")]
    if measured.returncode != 0 or not lines:
        raise _fail(f"baseline {kind}", measured)
    figures = json.loads(lines[-1])
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


def run_pipeline(audio: Path, threads: int, env: dict[str, str], settings: Settings, timeout_s: float) -> Run:
    """Run ``scribe transcribe INPUT --format json -o FILE`` and measure it."""
    first: list[float] = []
    partials = 0

    def on_line(at: float, line: str) -> None:
        nonlocal partials
        if PARTIAL_LINE.match(line):
            partials += 1
            if not first:
                first.append(at)

    pgdata = None if settings.database_url else settings.data_dir / "postgres"
    with tempfile.TemporaryDirectory(prefix="scribe-bench-") as tmp:
        output = Path(tmp) / "transcript.json"
        command = [*scribe_command(), "transcribe", str(audio), "--format", "json", "-o", str(output)]
        # The same CPU threads in all: the pipeline spends them on chunks side by side.
        child_env = {**env, "SCRIBE_ASR_WORKERS": str(threads), "SCRIBE_ASR_THREADS": "1"}
        measured = run_measured(
            command, child_env, root_name="scribe", pgdata=pgdata, timeout_s=timeout_s, on_line=on_line
        )
        if measured.returncode != 0 or not output.is_file():
            raise _fail("scribe transcribe", measured)
        document = json.loads(output.read_text(encoding="utf-8"))
    segments = document.get("segments", [])
    chars = sum(len("".join(str(s.get("text", "")).split())) for s in segments)
    by_name = dict(measured.peak_rss_mb_by_name)
    by_name["scribe"] = max(by_name.get("scribe", 0.0), measured.root_maxrss_mb)
    return Run(
        name="pipeline",
        wall_s=measured.wall_s,
        model_s=None,
        load_s=None,
        first_s=first[0] if first else None,
        segments=len(segments),
        chars=chars,
        partial_lines=partials,
        fallbacks=None,
        cpu_s=measured.cpu_s,
        peak_rss_mb=measured.root_maxrss_mb,
        peak_rss_mb_by_name=by_name,
        processes_by_name=measured.processes_by_name,
        peak_total_rss_mb=measured.peak_total_rss_mb,
        peak_total_pss_mb=measured.peak_total_pss_mb,
        notes=measured.notes,
    )


# --- report -------------------------------------------------------------------------------


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(runs: list[Run]) -> dict[str, Any]:
    """Median figures of the runs of one contender (peak memory: the maximum)."""
    names: set[str] = set()
    for run in runs:
        names.update(run.peak_rss_mb_by_name)
    return {
        "name": runs[0].name,
        "runs": len(runs),
        "wall_s": _median([r.wall_s for r in runs]),
        "wall_s_min": min(r.wall_s for r in runs),
        "wall_s_max": max(r.wall_s for r in runs),
        "model_s": _median([r.model_s for r in runs]),
        "load_s": _median([r.load_s for r in runs]),
        "first_s": _median([r.first_s for r in runs]),
        "segments": _median([float(r.segments) for r in runs]),
        "chars": _median([float(r.chars) for r in runs]),
        "partial_lines": _median([None if r.partial_lines is None else float(r.partial_lines) for r in runs]),
        "fallbacks": _median([None if r.fallbacks is None else float(r.fallbacks) for r in runs]),
        "cpu_s": _median([r.cpu_s for r in runs]),
        "peak_rss_mb_by_name": {n: max(r.peak_rss_mb_by_name.get(n, 0.0) for r in runs) for n in sorted(names)},
        "processes_by_name": {n: max(r.processes_by_name.get(n, 0) for r in runs) for n in sorted(names)},
        "peak_total_rss_mb": max(r.peak_total_rss_mb for r in runs),
        "peak_total_pss_mb": max(r.peak_total_pss_mb for r in runs),
    }


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(summaries: list[dict[str, Any]], audio_s: float) -> None:
    """Print one line per contender."""
    sequential = next((s for s in summaries if s["name"] == "sequential"), None)
    header = (
        f"{'name':<11} {'wall s':>8} {'x RT':>6} {'vs seq':>7} {'cpu s':>7} {'load s':>7} {'model s':>8} "
        f"{'first s':>8} {'segs':>5} {'chars':>6} {'peak RSS MB (per process)'}"
    )
    print(header)
    print("-" * len(header))
    for s in summaries:
        ratio = s["wall_s"] / sequential["wall_s"] if sequential else None
        memory = ", ".join(
            f"{name}{'' if s['processes_by_name'].get(name, 1) <= 1 else ' x' + str(s['processes_by_name'][name])} "
            f"{mb:.0f}"
            for name, mb in sorted(s["peak_rss_mb_by_name"].items(), key=lambda item: -item[1])
        )
        if len(s["peak_rss_mb_by_name"]) > 1:
            memory += f"; total {s['peak_total_rss_mb']:.0f} (PSS {s['peak_total_pss_mb']:.0f})"
        print(
            f"{s['name']:<11} {s['wall_s']:>8.1f} {audio_s / s['wall_s']:>6.2f} {_fmt(ratio, '.2f'):>7} "
            f"{s['cpu_s']:>7.1f} {_fmt(s['load_s']):>7} {_fmt(s['model_s']):>8} {_fmt(s['first_s']):>8} "
            f"{s['segments']:>5.0f} {s['chars']:>6.0f} {memory}"
        )
    if any(s["runs"] > 1 for s in summaries):
        spread = ", ".join(f"{s['name']} {s['wall_s_min']:.1f}-{s['wall_s_max']:.1f}" for s in summaries)
        print(f"(medians of {summaries[0]['runs']} runs; wall s min-max: {spread}; peak memory: the maximum)")
    print(
        "wall: process start to exit. cpu: user+system CPU seconds of the child process (wait4; the pipeline's\n"
        "figure leaves out the PostgreSQL server, which pg_ctl daemonizes). load: process start to model loaded.\n"
        "model: transcription with the generator consumed (decode + VAD + Whisper). first: pipeline: first\n"
        "partial line on stderr; baselines: first segment out of the generator. Memory: the child's own peak\n"
        "from wait4; the pipeline's nats-server/postgres figures are sampled every 0.2 s (postgres RSS counts\n"
        "its shared buffers once per process: PSS is the fairer total)."
    )
    fallbacks = [f"{s['name']} {s['fallbacks']:.0f}" for s in summaries if s["fallbacks"] is not None]
    if fallbacks:
        print(f"temperature fallbacks (30 s windows decoded again, hotter): {', '.join(fallbacks)}")


def check_targets(summaries: list[dict[str, Any]], audio_s: float) -> list[dict[str, Any]]:
    """Compare the pipeline against the targets; returns one row per target."""
    by_name = {s["name"]: s for s in summaries}
    pipeline = by_name.get("pipeline")
    if pipeline is None:
        return []
    wall = pipeline["wall_s"]
    rows: list[dict[str, Any]] = []

    def row(target: str, value: str, ok: bool | None, kind: str = "must") -> None:
        verdict = "n/a" if ok is None else ("ok" if ok else ("MISSED" if kind == "must" else "not yet"))
        rows.append({"target": target, "value": value, "ok": ok, "kind": kind, "verdict": verdict})

    sequential, batched = by_name.get("sequential"), by_name.get("batched")
    if sequential:
        ratio = wall / sequential["wall_s"]
        row(f"end-to-end <= {MAX_VS_SEQUENTIAL} x sequential", f"{ratio:.2f} x", ratio <= MAX_VS_SEQUENTIAL)
    else:
        row(f"end-to-end <= {MAX_VS_SEQUENTIAL} x sequential", "no baseline run", None)
    if batched:
        ratio = wall / batched["wall_s"]
        row("beat batched (aim)", f"{ratio:.2f} x batched", ratio < 1.0, kind="aim")
    else:
        row("beat batched (aim)", "no baseline run", None, kind="aim")
    first = pipeline["first_s"]
    row(f"first partial <= {MAX_FIRST_PARTIAL_S:g} s", f"{_fmt(first)} s", None if first is None else first <= 8.0)
    needed_rt = BRIEF_AUDIO_S / BRIEF_WALL_S
    rt = audio_s / wall
    if abs(audio_s - BRIEF_AUDIO_S) < 1.0:
        row("10-minute recording in < 3 min (brief)", f"{wall:.1f} s", wall < BRIEF_WALL_S)
    else:
        row(
            "10-minute recording in < 3 min (brief; projected from x RT)",
            f"{rt:.2f} x RT (needs >= {needed_rt:.2f}; ~{BRIEF_AUDIO_S / rt:.0f} s for 10 min)",
            rt >= needed_rt,
        )
    print("\nTargets (pipeline):")
    for r in rows:
        print(f"  {r['target']:<60} {r['value']:<44} {r['verdict']}")
    for baseline in (sequential, batched):
        if baseline and baseline["fallbacks"] and pipeline["chars"] and baseline["chars"] < 0.7 * pipeline["chars"]:
            print(
                f"  warning: {baseline['name']} fell back to higher temperatures {baseline['fallbacks']:.0f} times and "
                f"kept {baseline['chars']:.0f} characters against the pipeline's {pipeline['chars']:.0f}: it is slow "
                "because it decoded badly, so the ratio flatters the pipeline"
            )
    return rows


def machine() -> dict[str, Any]:
    """The machine and library versions, for the README."""
    import ctranslate2
    import faster_whisper

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "system": platform.platform(),
        "python": platform.python_version(),
        "faster_whisper": faster_whisper.__version__,
        "ctranslate2": ctranslate2.__version__,
    }


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Time `scribe transcribe` on a long recording against bare faster-whisper (same run, same model).",
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the looped input (default 10)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads for every contender")
    parser.add_argument("--skip-baselines", action="store_true", help="run the pipeline only")
    parser.add_argument("--runs", type=int, default=1, help="runs of each contender (medians are shown)")
    parser.add_argument("--json", type=Path, help="save the figures here")
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help=f"the audio data folder (default {DEFAULT_DATA})"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "cantonesescribe-bench",
        help="where the looped input is kept between runs",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up on one run after this many seconds")
    parser.add_argument("--child", choices=BASELINES, help=argparse.SUPPRESS)
    parser.add_argument("--child-input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.threads < 1 or args.runs < 1:
        parser.error("--minutes, --threads and --runs must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    """Build the input, run the contenders, print (and optionally save) the figures."""
    args = parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # keep the figures in order with the messages on stderr
    if args.child:
        child_main(args.child, args.child_input, args.child_model, args.threads)
        return 0

    from transcriber.backends import local_model_name
    from transcriber.model import ensure_model

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    env = dict(os.environ)
    settings = Settings.from_env()
    source = args.data / SOURCE_NAME
    if not source.is_file():
        print(f"bench: {source} not found (use --data DIR)", file=sys.stderr)
        return 2

    info = machine()
    command_line = shlex.join([sys.executable, *sys.argv])
    print(f"bench/pipeline.py: {command_line}")
    print(
        f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), {info['memory_gb']} GB; "
        f"load average {' '.join(map(str, info['load_average']))}; {info['system']}"
    )
    print(f"python {info['python']}, faster-whisper {info['faster_whisper']}, ctranslate2 {info['ctranslate2']}")

    started = time.perf_counter()
    audio, audio_s = build_input(source, args.minutes, args.cache)
    built = time.perf_counter() - started
    model_dir = ensure_model(settings)  # joined here, before any timing, if not yet cached
    print(f"input: {audio} ({audio_s:.0f} s = {SOURCE_NAME} looped; ready in {built:.1f} s)")
    print(
        f"model: {local_model_name(settings)} ({model_dir}), int8, {args.threads} threads; "
        f"language zh, beam {settings.asr_beam_size}, prompt {settings.asr_prompt!r}, "
        f"written-Chinese suppression {'on' if settings.asr_suppress_written else 'off'}, VAD on, "
        f"batched batch_size {BATCH_SIZE}"
    )
    print(
        f"pipeline: {shlex.join([*scribe_command(), 'transcribe', str(audio), '--format', 'json', '-o', 'TMP'])} "
        f"with SCRIBE_ASR_WORKERS={args.threads} SCRIBE_ASR_THREADS=1; data dir {settings.data_dir} reused "
        "(model already joined, PostgreSQL cluster kept)"
    )
    print()

    contenders = [] if args.skip_baselines else list(BASELINES)
    contenders.append("pipeline")
    runs: dict[str, list[Run]] = {name: [] for name in contenders}
    failures: list[str] = []
    for number in range(1, args.runs + 1):
        for name in contenders:
            if name in failures:
                continue
            label = f"run {number}/{args.runs}: {name}"
            print(f"{label} ...", end="", flush=True)
            try:
                if name == "pipeline":
                    run = run_pipeline(audio, args.threads, env, settings, args.timeout)
                else:
                    run = run_baseline(name, audio, model_dir, args.threads, env, args.timeout)
            except RuntimeError as exc:
                print(" FAILED")
                print(f"bench: {exc}", file=sys.stderr)
                failures.append(name)
                continue
            runs[name].append(run)
            extra = f", first partial {_fmt(run.first_s)} s" if name == "pipeline" else ""
            print(f" {run.wall_s:.1f} s{extra}, {run.segments} segments")
            for note in run.notes:
                print(f"  note: {note}")

    summaries = [summarize(r) for r in runs.values() if r]
    load_after = [round(x, 2) for x in os.getloadavg()]
    print(
        f"\nload average after the runs: {' '.join(map(str, load_after))} (other work on the machine skews the figures)"
    )
    if summaries:
        print(f"Audio: {audio_s:.0f} s ({audio_s / 60:g} min). Threads: {args.threads}.")
        print_table(summaries, audio_s)
    targets = check_targets(summaries, audio_s)
    if "pipeline" in failures:
        print(
            "\nbench: the pipeline run failed (see above): `scribe transcribe` does not work on this checkout yet.",
            file=sys.stderr,
        )

    if args.json:
        document = {
            "command": command_line,
            "machine": info,
            "load_average_after": load_after,
            "input": {"file": str(audio), "seconds": audio_s, "source": SOURCE_NAME},
            "model": {"name": local_model_name(settings), "path": str(model_dir), "compute_type": "int8"},
            "threads": args.threads,
            "decoding": {
                "language": "zh",
                "beam_size": settings.asr_beam_size,
                "initial_prompt": settings.asr_prompt,
                "suppress_written": settings.asr_suppress_written,
                "batch_size": BATCH_SIZE,
            },
            "summaries": summaries,
            "targets": targets,
            "runs": {name: [asdict(r) for r in rs] for name, rs in runs.items()},
            "failures": failures,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"\nfigures saved to {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())

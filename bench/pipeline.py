"""End-to-end speed and memory of ``scribe transcribe`` on a long recording, against bare faster-whisper.

Prints figures; it is not a test. In one run, on the same input, model folder, compute type
(int8) and CPU thread count, it measures:

* ``sequential``: ``WhisperModel.transcribe(path, vad_filter=True)``, the generator consumed;
* ``batched``: ``faster_whisper.BatchedInferencePipeline(model).transcribe(path, batch_size=8)``;
* ``pipeline``: ``scribe transcribe INPUT --format json -o FILE`` (embedded NATS + PostgreSQL +
  every service in one process), with the same thread count spent as ``SCRIBE_ASR_WORKERS``
  one-thread decodes side by side (``SCRIBE_ASR_THREADS=1``).

The baselines decode like ``transcriber.local.LocalBackend``: language "zh", the initial
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

Run from the repository root (``bench/pipeline.py`` as a script works too)::

    .venv/bin/python -m bench.pipeline                 # 10 minutes of audio, all cores
    .venv/bin/python -m bench.pipeline --minutes 1 --runs 3 --json bench-pipeline.json
    .venv/bin/python -m bench.pipeline --skip-baselines --threads 2
    .venv/bin/python -m bench.pipeline --skip-baselines --compare-word-times --runs 2

``--compare-word-times`` runs the pipeline twice a round instead of once, with
``SCRIBE_ASR_WORD_TIMES=false`` ("words-off") and ``=true`` ("words-on"), the order swapped every
other round (off, on, on, off, ...) so that a drift in the machine's load falls on both, and
prints the cost of word times: the ratio of the median wall times (target at most 1.10).

The code: this module (command line, the sequence of a bench), ``bench.contenders`` (the
input, the baselines' child process, the runs), ``bench.measure`` (running a child and
measuring its process tree), ``bench.report`` (medians, table, targets).
"""

# ruff: noqa: E402 - the imports of bench and the project come after the sys.path set-up
from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a script, the child of a baseline has only bench/ on its path

from bench.contenders import (
    BASELINES,
    BATCH_SIZE,
    Run,
    build_input,
    child_main,
    run_baseline,
    run_pipeline,
    scribe_command,
)
from bench.report import check_targets, fmt, machine, print_table, summarize
from core.settings import Settings

DEFAULT_DATA = REPO.parent / "shared" / "data" / "audio"
SOURCE_NAME = "ktdc_meeting_2025-01-06_other_matters.mp3"
# --compare-word-times: the pipeline with SCRIBE_ASR_WORD_TIMES set each way (issue 16).
WORD_TIMES = {"words-off": "false", "words-on": "true"}
MAX_WORD_TIMES_COST = 1.10  # wall time with word times over without


# --- command line -------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    """The command line's parser; the ``--child*`` options (hidden) run one baseline in a child process."""
    parser = argparse.ArgumentParser(
        description="Time `scribe transcribe` on a long recording against bare faster-whisper (same run, same model).",
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the looped input (default 10)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads for every contender")
    parser.add_argument("--skip-baselines", action="store_true", help="run the pipeline only")
    parser.add_argument(
        "--compare-word-times",
        action="store_true",
        help="run the pipeline with SCRIBE_ASR_WORD_TIMES=false and =true, alternating, instead of once",
    )
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
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.threads < 1 or args.runs < 1:
        parser.error("--minutes, --threads and --runs must be positive")
    return args


# --- set-up -------------------------------------------------------------------------------


@dataclass
class Bench:
    """What every run shares: the command line, the environment, the machine, the input and the model."""

    args: argparse.Namespace
    env: dict[str, str]
    settings: Settings
    command_line: str
    info: dict[str, Any]
    audio: Path
    audio_s: float
    model_dir: Path
    model_name: str


def print_machine(command_line: str, info: dict[str, Any]) -> None:
    """The command line, the machine and the library versions."""
    print(f"bench/pipeline.py: {command_line}")
    print(
        f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), {info['memory_gb']} GB; "
        f"load average {' '.join(map(str, info['load_average']))}; {info['system']}"
    )
    print(f"python {info['python']}, faster-whisper {info['faster_whisper']}, ctranslate2 {info['ctranslate2']}")


def print_setup(bench: Bench, built_s: float) -> None:
    """The input, the model and its decoding options, and the pipeline's command."""
    settings, audio = bench.settings, bench.audio
    print(f"input: {audio} ({bench.audio_s:.0f} s = {SOURCE_NAME} looped; ready in {built_s:.1f} s)")
    print(
        f"model: {bench.model_name} ({bench.model_dir}), int8, {bench.args.threads} threads; "
        f"language zh, beam {settings.asr_beam_size}, prompt {settings.asr_prompt!r}, "
        f"written-Chinese suppression {'on' if settings.asr_suppress_written else 'off'}, VAD on, "
        f"batched batch_size {BATCH_SIZE}"
    )
    print(
        f"pipeline: {shlex.join([*scribe_command(), 'transcribe', str(audio), '--format', 'json', '-o', 'TMP'])} "
        f"with SCRIBE_ASR_WORKERS={bench.args.threads} SCRIBE_ASR_THREADS=1; data dir {settings.data_dir} reused "
        "(model already joined, PostgreSQL cluster kept)"
    )
    print()


def prepare(args: argparse.Namespace) -> Bench | None:
    """Print the machine, build the input, make sure the model is there; None if the source recording is missing."""
    from transcriber.local import local_model_name
    from transcriber.model import ensure_model

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    env = dict(os.environ)
    settings = Settings.from_env()
    source = args.data / SOURCE_NAME
    if not source.is_file():
        print(f"bench: {source} not found (use --data DIR)", file=sys.stderr)
        return None
    info = machine()
    command_line = shlex.join([sys.executable, *sys.argv])
    print_machine(command_line, info)
    started = time.perf_counter()
    audio, audio_s = build_input(source, args.minutes, args.cache)
    built_s = time.perf_counter() - started
    model_dir = ensure_model(settings)  # joined here, before any timing, if not yet cached
    bench = Bench(args, env, settings, command_line, info, audio, audio_s, model_dir, local_model_name(settings))
    print_setup(bench, built_s)
    return bench


# --- the runs -----------------------------------------------------------------------------


@dataclass
class Results:
    """The runs of every contender, the contenders that failed, and the figures made of them."""

    runs: dict[str, list[Run]]
    failures: list[str]
    summaries: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    word_times: dict[str, Any] = field(default_factory=dict)
    load_after: list[float] = field(default_factory=list)


def run_contender(bench: Bench, name: str) -> Run:
    """One run of contender ``name``; RuntimeError if it fails."""
    args = bench.args
    if name == "pipeline":
        return run_pipeline(bench.audio, args.threads, bench.env, bench.settings, args.timeout)
    if name in WORD_TIMES:
        env = {**bench.env, "SCRIBE_ASR_WORD_TIMES": WORD_TIMES[name]}
        return replace(run_pipeline(bench.audio, args.threads, env, bench.settings, args.timeout), name=name)
    return run_baseline(name, bench.audio, bench.model_dir, args.threads, bench.env, args.timeout)


def run_one(bench: Bench, name: str, number: int) -> Run | None:
    """Run contender ``name`` once, printing a progress line and its notes; None (and why, on stderr) if it fails."""
    print(f"run {number}/{bench.args.runs}: {name} ...", end="", flush=True)
    try:
        run = run_contender(bench, name)
    except RuntimeError as exc:
        print(" FAILED")
        print(f"bench: {exc}", file=sys.stderr)
        return None
    extra = f", first partial {fmt(run.first_s)} s" if name == "pipeline" or name in WORD_TIMES else ""
    print(f" {run.wall_s:.1f} s{extra}, {run.segments} segments")
    for note in run.notes:
        print(f"  note: {note}")
    return run


def run_contenders(bench: Bench) -> Results:
    """``--runs`` rounds of every contender (the baselines first); a contender that fails is not run again.

    With ``--compare-word-times`` the two pipelines swap places every other round (ABBA).
    """
    baselines = [] if bench.args.skip_baselines else list(BASELINES)
    pipelines = list(WORD_TIMES) if bench.args.compare_word_times else ["pipeline"]
    results = Results(runs={name: [] for name in [*baselines, *pipelines]}, failures=[])
    for number in range(1, bench.args.runs + 1):
        for name in [*baselines, *(pipelines if number % 2 else reversed(pipelines))]:
            if name in results.failures:
                continue
            run = run_one(bench, name, number)
            if run is None:
                results.failures.append(name)
            else:
                results.runs[name].append(run)
    return results


# --- report -------------------------------------------------------------------------------


def report(bench: Bench, results: Results) -> None:
    """Summarize the runs into ``results`` and print the load average, the table and the targets."""
    results.summaries = [summarize(r) for r in results.runs.values() if r]
    results.load_after = [round(x, 2) for x in os.getloadavg()]
    print(
        f"\nload average after the runs: {' '.join(map(str, results.load_after))} "
        "(other work on the machine skews the figures)"
    )
    if results.summaries:
        print(f"Audio: {bench.audio_s:.0f} s ({bench.audio_s / 60:g} min). Threads: {bench.args.threads}.")
        print_table(results.summaries, bench.audio_s)
    results.targets = check_targets(results.summaries, bench.audio_s)
    if bench.args.compare_word_times:
        results.word_times = word_times_cost(results.summaries)
    if "pipeline" in results.failures:
        print(
            "\nbench: the pipeline run failed (see above): `scribe transcribe` does not work on this checkout yet.",
            file=sys.stderr,
        )


def word_times_cost(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Print what word times cost the pipeline: median wall time on over off, CPU, peak memory of the process."""
    by_name = {s["name"]: s for s in summaries}
    off, on = by_name.get("words-off"), by_name.get("words-on")
    if off is None or on is None:
        return {}
    ratio = on["wall_s"] / off["wall_s"]
    cost = {
        "wall_ratio": round(ratio, 3),
        "cpu_ratio": round(on["cpu_s"] / off["cpu_s"], 3),
        "scribe_peak_rss_mb": {n: s["peak_rss_mb_by_name"].get("scribe") for n, s in (("off", off), ("on", on))},
        "ok": ratio <= MAX_WORD_TIMES_COST,
    }
    verdict = "ok" if cost["ok"] else "MISSED"
    print(
        f"\nWord times (SCRIBE_ASR_WORD_TIMES): wall {on['wall_s']:.1f} s on against {off['wall_s']:.1f} s off = "
        f"{ratio:.3f} x (target <= {MAX_WORD_TIMES_COST:.2f} x: {verdict}); CPU {on['cpu_s']:.1f} s against "
        f"{off['cpu_s']:.1f} s; peak RSS of scribe {cost['scribe_peak_rss_mb']['on']:.0f} MB against "
        f"{cost['scribe_peak_rss_mb']['off']:.0f} MB; characters {on['chars']:.0f} against {off['chars']:.0f}"
    )
    return cost


def document(bench: Bench, results: Results) -> dict[str, Any]:
    """Everything about the bench, for ``--json``."""
    settings = bench.settings
    return {
        "command": bench.command_line,
        "machine": bench.info,
        "load_average_after": results.load_after,
        "input": {"file": str(bench.audio), "seconds": bench.audio_s, "source": SOURCE_NAME},
        "model": {"name": bench.model_name, "path": str(bench.model_dir), "compute_type": "int8"},
        "threads": bench.args.threads,
        "decoding": {
            "language": "zh",
            "beam_size": settings.asr_beam_size,
            "initial_prompt": settings.asr_prompt,
            "suppress_written": settings.asr_suppress_written,
            "batch_size": BATCH_SIZE,
        },
        "summaries": results.summaries,
        "targets": results.targets,
        "word_times": results.word_times,
        "runs": {name: [asdict(r) for r in rs] for name, rs in results.runs.items()},
        "failures": results.failures,
    }


def save_json(bench: Bench, results: Results, path: Path) -> None:
    """Write :func:`document` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document(bench, results), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nfigures saved to {path}")


# --- main ---------------------------------------------------------------------------------


def run_bench(args: argparse.Namespace) -> int:
    """Build the input, run the contenders, print (and optionally save) the figures; 1 if a contender failed."""
    bench = prepare(args)
    if bench is None:
        return 2
    results = run_contenders(bench)
    report(bench, results)
    if args.json:
        save_json(bench, results, args.json)
    return 1 if results.failures else 0


def main(argv: list[str] | None = None) -> int:
    """Run the bench, or with ``--child`` one baseline in this (child) process."""
    args = parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # keep the figures in order with the messages on stderr
    if args.child:
        child_main(args.child, args.child_input, args.child_model, args.threads)
        return 0
    return run_bench(args)


if __name__ == "__main__":
    raise SystemExit(main())

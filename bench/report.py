"""The figures of ``bench.pipeline``: medians per contender, the table, the targets check, the machine."""

from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path
from typing import Any

import psutil

from bench.contenders import Run

# Targets (DESIGN.md "Performance" and the product brief).
MAX_VS_SEQUENTIAL = 1.15
MAX_FIRST_PARTIAL_S = 8.0
BRIEF_AUDIO_S = 600.0  # "under 3 minutes for a 10-minute video"
BRIEF_WALL_S = 180.0

NOTES = (
    "wall: process start to exit. cpu: user+system CPU seconds of the child process (wait4; the pipeline's\n"
    "figure leaves out the PostgreSQL server, which pg_ctl daemonizes). load: process start to model loaded.\n"
    "model: transcription with the generator consumed (decode + VAD + Whisper). first: pipeline: first\n"
    "partial line on stderr; baselines: first segment out of the generator. Memory: the child's own peak\n"
    "from wait4; the pipeline's nats-server/postgres figures are sampled every 0.2 s (postgres RSS counts\n"
    "its shared buffers once per process: PSS is the fairer total)."
)


# --- summary ------------------------------------------------------------------------------


def _median(values: list[float | None]) -> float | None:
    """The median of the values present, or None."""
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


# --- table --------------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".1f") -> str:
    """``value`` formatted, or "-" if there is none."""
    return "-" if value is None else format(value, spec)


def _memory_cell(s: dict[str, Any]) -> str:
    """The peak RSS column: per process name, largest first (" xN" for N processes), then the totals."""
    memory = ", ".join(
        f"{name}{'' if s['processes_by_name'].get(name, 1) <= 1 else ' x' + str(s['processes_by_name'][name])} {mb:.0f}"
        for name, mb in sorted(s["peak_rss_mb_by_name"].items(), key=lambda item: -item[1])
    )
    if len(s["peak_rss_mb_by_name"]) > 1:
        memory += f"; total {s['peak_total_rss_mb']:.0f} (PSS {s['peak_total_pss_mb']:.0f})"
    return memory


def _print_footer(summaries: list[dict[str, Any]]) -> None:
    """The lines under the table: the spread over runs, what the columns mean, the temperature fallbacks."""
    if any(s["runs"] > 1 for s in summaries):
        spread = ", ".join(f"{s['name']} {s['wall_s_min']:.1f}-{s['wall_s_max']:.1f}" for s in summaries)
        print(f"(medians of {summaries[0]['runs']} runs; wall s min-max: {spread}; peak memory: the maximum)")
    print(NOTES)
    fallbacks = [f"{s['name']} {s['fallbacks']:.0f}" for s in summaries if s["fallbacks"] is not None]
    if fallbacks:
        print(f"temperature fallbacks (30 s windows decoded again, hotter): {', '.join(fallbacks)}")


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
        print(
            f"{s['name']:<11} {s['wall_s']:>8.1f} {audio_s / s['wall_s']:>6.2f} {fmt(ratio, '.2f'):>7} "
            f"{s['cpu_s']:>7.1f} {fmt(s['load_s']):>7} {fmt(s['model_s']):>8} {fmt(s['first_s']):>8} "
            f"{s['segments']:>5.0f} {s['chars']:>6.0f} {_memory_cell(s)}"
        )
    _print_footer(summaries)


# --- targets ------------------------------------------------------------------------------


def _row(target: str, value: str, ok: bool | None, kind: str = "must") -> dict[str, Any]:
    """One target's row; its verdict is ok, MISSED (a must) or not yet (an aim), or n/a without a figure."""
    verdict = "n/a" if ok is None else ("ok" if ok else ("MISSED" if kind == "must" else "not yet"))
    return {"target": target, "value": value, "ok": ok, "kind": kind, "verdict": verdict}


def _baseline_rows(
    wall: float, sequential: dict[str, Any] | None, batched: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The targets against the baselines: within ``MAX_VS_SEQUENTIAL`` of sequential, and beating batched (aim)."""
    target = f"end-to-end <= {MAX_VS_SEQUENTIAL} x sequential"
    if sequential:
        ratio = wall / sequential["wall_s"]
        rows = [_row(target, f"{ratio:.2f} x", ratio <= MAX_VS_SEQUENTIAL)]
    else:
        rows = [_row(target, "no baseline run", None)]
    if batched:
        ratio = wall / batched["wall_s"]
        rows.append(_row("beat batched (aim)", f"{ratio:.2f} x batched", ratio < 1.0, kind="aim"))
    else:
        rows.append(_row("beat batched (aim)", "no baseline run", None, kind="aim"))
    return rows


def _first_partial_row(first: float | None) -> dict[str, Any]:
    """The target on the first partial line."""
    ok = None if first is None else first <= MAX_FIRST_PARTIAL_S
    return _row(f"first partial <= {MAX_FIRST_PARTIAL_S:g} s", f"{fmt(first)} s", ok)


def _brief_row(wall: float, audio_s: float) -> dict[str, Any]:
    """The brief's target: measured on 10 minutes of audio, else projected from the real-time factor."""
    needed_rt = BRIEF_AUDIO_S / BRIEF_WALL_S
    rt = audio_s / wall
    if abs(audio_s - BRIEF_AUDIO_S) < 1.0:
        return _row("10-minute recording in < 3 min (brief)", f"{wall:.1f} s", wall < BRIEF_WALL_S)
    return _row(
        "10-minute recording in < 3 min (brief; projected from x RT)",
        f"{rt:.2f} x RT (needs >= {needed_rt:.2f}; ~{BRIEF_AUDIO_S / rt:.0f} s for 10 min)",
        rt >= needed_rt,
    )


def _warn_bad_baselines(pipeline: dict[str, Any], baselines: list[dict[str, Any] | None]) -> None:
    """Warn about a baseline slowed by temperature fallbacks that also kept much less text than the pipeline."""
    for baseline in baselines:
        if baseline and baseline["fallbacks"] and pipeline["chars"] and baseline["chars"] < 0.7 * pipeline["chars"]:
            print(
                f"  warning: {baseline['name']} fell back to higher temperatures {baseline['fallbacks']:.0f} times and "
                f"kept {baseline['chars']:.0f} characters against the pipeline's {pipeline['chars']:.0f}: it is slow "
                "because it decoded badly, so the ratio flatters the pipeline"
            )


def check_targets(summaries: list[dict[str, Any]], audio_s: float) -> list[dict[str, Any]]:
    """Compare the pipeline against the targets and print them; returns one row per target."""
    by_name = {s["name"]: s for s in summaries}
    pipeline = by_name.get("pipeline")
    if pipeline is None:
        return []
    wall = pipeline["wall_s"]
    sequential, batched = by_name.get("sequential"), by_name.get("batched")
    rows = [
        *_baseline_rows(wall, sequential, batched),
        _first_partial_row(pipeline["first_s"]),
        _brief_row(wall, audio_s),
    ]
    print("\nTargets (pipeline):")
    for r in rows:
        print(f"  {r['target']:<60} {r['value']:<44} {r['verdict']}")
    _warn_bad_baselines(pipeline, [sequential, batched])
    return rows


# --- machine ------------------------------------------------------------------------------


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what ``platform`` knows."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def machine() -> dict[str, Any]:
    """The machine and library versions, for the README."""
    import ctranslate2
    import faster_whisper

    return {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "system": platform.platform(),
        "python": platform.python_version(),
        "faster_whisper": faster_whisper.__version__,
        "ctranslate2": ctranslate2.__version__,
    }

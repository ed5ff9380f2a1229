"""What a video costs on the paid API, how fast the pipeline goes at the API's limit, and the cost alerts (issue 18).

Prints figures; it is not a test. The openai backend (``SCRIBE_ASR_BACKEND=openai``,
``SCRIBE_OPENAI_MODEL=whisper-1``) talks to ``bench/sim_openai.py``, a SIMULATION of OpenAI's
transcription API on this machine: canned Cantonese text after ``--delay`` seconds (5), at most a
set number of requests in flight (429 with ``Retry-After`` above it), and the seconds OpenAI would
bill (each upload's decoded duration, rounded to the second, at least 1). No OpenAI account is used
and nothing is paid: what is measured is what the pipeline sends and how busy it keeps the API, not
OpenAI's speed. Prices are ``core.settings.DEFAULT_PRICES`` (or ``SCRIBE_PRICES``), pounds at
``SCRIBE_GBP_PER_USD``.

The services run as production runs them, each a process of its own: one ``python -m streamer``, one
``python -m romanizer`` and ``python -m transcriber`` (one, or several), on an embedded NATS and
PostgreSQL started here (or the servers ``SCRIBE_NATS_URL`` and ``SCRIBE_DATABASE_URL`` name), started
again for each configuration. Jobs are submitted as the ``scribe`` command does with a file: the file
into the uploads bucket, a ``JobSubmitted`` on ``scribe.jobs.submitted`` (``scribe.client``), and the
job's events followed on ``scribe.events.<job>`` to its ``final``.

* bill: the 10-minute input (the 4'38" KTDC meeting looped, as ``bench.pipeline`` builds it), with the
  caches on: billed minutes / input minutes (target at most 0.94: Silero VAD with 0.5 s pauses finds
  92 % speech in it, so silence must not be billed), the cost in USD and GBP (target under GBP 0.50
  at whisper-1's price); then the same file again (target: cost 0, replayed by the source cache), and
  once more with ``"fresh": true`` (billed again: the caches are bypassed).
* latency: the 10-minute input end to end (submit to ``final``) with 1, 8 and 32 calls in flight
  (``SCRIBE_MAX_IN_FLIGHT`` = ``SCRIBE_API_MAX_IN_FLIGHT`` = N; the simulation allows 32), each job
  ``fresh`` and the chunk cache off. Target: under 10 s at 32.
* throughput: ``--videos`` (12) videos of ``--video-minutes`` (1.5) submitted at once, ``fresh``, to 1,
  2 and 4 transcriber processes holding 8 calls each, against a simulated limit of 16 in flight with
  ``SCRIBE_API_MAX_IN_FLIGHT=16``; then 4 processes with the bound at 32, over the API's limit (what
  fails there is a figure, not an error). Videos a minute, and the simulation's peak in flight and
  429s: workers must scale up to the API's limit and never past it.
* alerts: the real ``transcriber.alerts.CostWatch`` on the real ledger and ``scribe.alerts.cost``: a
  previous day of ledger rows, then a day costing 25 % more arriving call by call (15 s chunks, evenly
  over the day, the rows dated in 2001 so that nothing else counts) through three watches with a NATS
  connection and a pool each, as three transcribers; the alerts stored and the messages published.
  Target: exactly one. The control: a day 15 % up, none.

A failed job or check is an error (exit status 1); a missed target is printed as missed. All four
take about 8 minutes on 2 cores, 3.5 of them the 10 minutes at one call in flight::

    .venv/bin/python -m bench.cost
    .venv/bin/python -m bench.cost --only bill,alerts
    .venv/bin/python -m bench.cost --only latency --minutes 2 --delay 2 --in-flight 8,32
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from nats.js.errors import NotFoundError

from bench.contenders import build_input
from bench.gateway_load import cpuinfo, spawn, stop, wait_for_log
from bench.measure import run_in_folder
from bench.sim_openai import SimulatedOpenAI, billed_seconds
from core import bus, subjects
from core.messages import CostAlert, Failed, Final, JobOptions, Partial, cost_alert_decoder
from core.process import Runtime, connected
from core.settings import Settings
from core.topology import ALERTS, CHUNKS
from scribe import client
from scribe.embedded import infrastructure
from store import alerts as alert_store
from store.costs import day_start
from store.db import create_pool
from transcriber.alerts import CostWatch

REPO = Path(__file__).resolve().parents[1]
MEETING = REPO.parent / "shared" / "data" / "audio" / "ktdc_meeting_2025-01-06_other_matters.mp3"
SCENARIOS = ("alerts", "bill", "latency", "throughput")
SERVICES = ("streamer", "romanizer")  # besides the transcribers

# Targets (issue 18).
MAX_BILLED_RATIO = 0.94
MAX_GBP_PER_VIDEO = 0.50
MAX_LATENCY_S = 10.0
LATENCY_TARGET_IN_FLIGHT = 32
MIN_SCALING = 1.6  # two processes under the API's limit: at least this many times one's throughput

LATENCY_API_LIMIT = 32  # the simulation's limit in the latency runs
PER_PROCESS = 8  # calls each transcriber process holds in the throughput runs
OVER_LIMIT_BOUND = 32  # the throughput run with the cluster bound over the API's limit
JOB_TIMEOUT_S = 900.0
START_TIMEOUT_S = 180.0

# The simulated days of the alerts scenario.
PREVIOUS_USD = 4.0
ALERT_CALL_S = 15.0  # each call: a 15 s chunk at the model's price
WATCHES = 3
ALERT_DAYS = {0.25: date(2001, 3, 14), 0.15: date(2001, 3, 21)}  # nothing else bills these days
# A ledger row as the transcriber writes it (store.repo.record_usage), dated: record_usage dates it now().
INSERT_USAGE = (
    "INSERT INTO usage (backend, model, billed_seconds, cost_usd, created_at) VALUES ('openai', $1, $2, $3, $4)"
)


# --- command line ---------------------------------------------------------------------------


def _numbers(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers from 1, separated by commas")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Cost, speed at the API's limit, and cost alerts, on a SIMULATED API.")
    parser.add_argument("--only", help=f"comma-separated scenarios of {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the long input (10)")
    parser.add_argument("--delay", type=float, default=5.0, help="seconds the simulated API takes per call (5)")
    parser.add_argument("--model", default="whisper-1", help="SCRIBE_OPENAI_MODEL (whisper-1)")
    parser.add_argument("--in-flight", type=_numbers, default=[1, 8, 32], help="latency runs' calls in flight (1,8,32)")
    parser.add_argument("--workers", type=_numbers, default=[1, 2, 4], help="throughput runs' transcribers (1,2,4)")
    parser.add_argument("--api-limit", type=int, default=16, help="simulated limit in the throughput runs (16)")
    parser.add_argument("--videos", type=int, default=12, help="videos per throughput run (12)")
    parser.add_argument("--video-minutes", type=float, default=1.5, help="length of each of them (1.5)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "cantonesescribe-bench")
    parser.add_argument("--logs", type=Path, help="keep the services' logs in this folder")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in (args.only or ",".join(SCENARIOS)).split(",") if s.strip()]
    if unknown := set(args.scenarios) - set(SCENARIOS):
        parser.error(f"no scenario {', '.join(sorted(unknown))}: choose from {', '.join(SCENARIOS)}")
    if args.minutes <= 0 or args.delay < 0 or args.videos < 1 or args.video_minutes <= 0 or args.api_limit < 1:
        parser.error("--minutes, --videos, --video-minutes and --api-limit must be positive, --delay not negative")
    return args


# --- the bench's state and its printing ------------------------------------------------------


@dataclass
class Bench:
    """What the scenarios share: the command line, the servers, the simulation, the verdicts."""

    args: argparse.Namespace
    settings: Settings
    rt: Runtime
    tmp: Path
    sim: SimulatedOpenAI
    errors: list[str] = field(default_factory=list)
    targets: list[tuple[str, str, bool]] = field(default_factory=list)  # (target, figure, met)
    logs: list[Path] = field(default_factory=list)

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        """Print a correctness check; a failed one is an error."""
        print(f"  {'ok    ' if ok else 'FAILED'} {what}{f': {detail}' if detail and not ok else ''}")
        if not ok:
            self.errors.append(what)
        return ok

    def target(self, target: str, figure: str, met: bool) -> None:
        """Record and print a target's verdict."""
        self.targets.append((target, figure, met))
        row(f"target: {target}", f"{figure}: {'met' if met else 'MISSED'}")

    @property
    def price(self) -> float:
        """USD per minute of the model used."""
        return self.settings.price_per_minute(self.args.model)


def row(label: str, value: str) -> None:
    print(f"  {label:<42} {value}")


def usd_gbp(usd: float, settings: Settings) -> str:
    return f"${usd:.4f} = GBP {usd * settings.gbp_per_usd:.4f}"


# --- the deployment: the services as processes ----------------------------------------------


def deployment_env(bench: Bench, extra: dict[str, str]) -> dict[str, str]:
    """Every service's environment: the servers, the openai backend on the simulation, JSON logs."""
    return {
        **os.environ,
        "SCRIBE_NATS_URL": bench.settings.nats_url,
        "SCRIBE_DATABASE_URL": bench.settings.database_url,
        "SCRIBE_DATA_DIR": str(bench.tmp / "data"),
        "SCRIBE_ASR_BACKEND": "openai",
        "SCRIBE_OPENAI_BASE_URL": bench.sim.base_url,
        "SCRIBE_OPENAI_MODEL": bench.args.model,
        "SCRIBE_OPENAI_API_KEY": "sk-simulation",
        "SCRIBE_LOG_LEVEL": "INFO",
        "SCRIBE_LOG_FORMAT": "json",
        "HF_HUB_OFFLINE": "1",
        **extra,
    }


@contextlib.asynccontextmanager
async def deployment(bench: Bench, name: str, transcribers: int, extra: dict[str, str]) -> AsyncIterator[list[Path]]:
    """A streamer, a romanizer and ``transcribers`` transcribers, each a process, running; stopped on exit.

    Yields:
        The processes' log files.
    """
    env = deployment_env(bench, extra)
    started: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for service in (*SERVICES, *["transcriber"] * transcribers):
            log = bench.tmp / f"{name}-{service}-{len(started)}.log"
            started.append((spawn([sys.executable, "-m", service], env, log), log))
        async with asyncio.timeout(START_TIMEOUT_S):
            await asyncio.gather(*(wait_for_log(proc, log, "services running") for proc, log in started))
        logs = [log for _, log in started]
        bench.logs.extend(logs)
        yield logs
    finally:
        await asyncio.gather(*(asyncio.to_thread(stop, proc) for proc, _ in started))


def limits(extra: dict[str, str]) -> dict[str, str]:
    """The settings of a run with the chunk cache off (each run's jobs are ``fresh`` too)."""
    return {"SCRIBE_CHUNK_CACHE": "false", **extra}


async def cluster_bound(bench: Bench) -> int:
    """The chunks consumer's ``max_ack_pending`` as the transcribers left it: calls in flight over all of them."""
    info = await bench.rt.js.consumer_info(CHUNKS.name, "transcriber")
    return int(info.config.max_ack_pending or 0)


def log_warnings(logs: Sequence[Path]) -> str:
    """The services' WARNING and ERROR lines, by message, most common first."""
    found: Counter[str] = Counter()
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError, AttributeError):
                entry = json.loads(line)
                if entry.get("level") in ("warning", "error", "critical"):
                    found[f"{entry['level']} {entry.get('msg')}"] += 1
    return "; ".join(f"{n} x {message}" for message, n in found.most_common(4)) or "none"


# --- one job ---------------------------------------------------------------------------------


@dataclass
class JobRun:
    """One job from its submit to its last event."""

    job_id: str = ""
    wall_s: float = 0.0  # submit (the upload's start) to the final event
    first_line_s: float | None = None
    final: Final | None = None
    failed: str | None = None


async def run_job(bench: Bench, audio: bytes, *, fresh: bool) -> JobRun:
    """Upload ``audio``, submit it as a job and follow it to its end, as ``scribe transcribe`` does with a file."""
    run = JobRun()
    js = bench.rt.js
    started = time.perf_counter()
    source = await client.upload(js, audio)
    run.job_id = await client.submit(js, source, options=JobOptions(fresh=fresh))
    try:
        async with asyncio.timeout(JOB_TIMEOUT_S), contextlib.aclosing(client.follow(js, run.job_id)) as events:
            async for event in events:
                if isinstance(event, Partial) and event.segments and run.first_line_s is None:
                    run.first_line_s = time.perf_counter() - started
                elif isinstance(event, Final):
                    run.final = event
                elif isinstance(event, Failed):
                    run.failed = event.reason
    except TimeoutError:
        run.failed = f"no final event within {JOB_TIMEOUT_S:.0f} s"
    run.wall_s = time.perf_counter() - started
    return run


def failures(bench: Bench, runs: Sequence[JobRun]) -> None:
    """Print the failed jobs; each is an error of the bench."""
    for run in runs:
        if run.failed:
            bench.errors.append(f"job {run.job_id} failed: {run.failed}")
            print(f"  FAILED job {run.job_id}: {run.failed}")


async def ledger(bench: Bench, job_ids: Sequence[str]) -> tuple[float, float, int, int]:
    """The ledger's rows of the jobs: (seconds billed, USD, rows, rows answered from a cache)."""
    found = await bench.rt.pool.fetchrow(
        "SELECT COALESCE(sum(billed_seconds), 0) AS seconds, COALESCE(sum(cost_usd), 0) AS cost, count(*) AS rows,"
        " count(*) FILTER (WHERE cache_hit) AS hits FROM usage WHERE job_id = ANY($1::text[])",
        list(job_ids),
    )
    return float(found["seconds"]), float(found["cost"]), int(found["rows"]), int(found["hits"])


def chunk_lengths(bench: Bench, since: int, job_ids: set[str]) -> str:
    """The answered uploads' lengths in seconds: min / median / max."""
    lengths = sorted(c.audio_s for c in bench.sim.calls[since:] if c.status == 200 and c.job_id in job_ids)
    if not lengths:
        return "none"
    return f"{lengths[0]:.1f} / {statistics.median(lengths):.1f} / {lengths[-1]:.1f} s"


# --- scenario: the bill for one video --------------------------------------------------------


def speech_fraction(path: Path) -> float:
    """Silero VAD's share of speech in the file (0.5 s pauses, no padding): the least that must be billed."""
    from faster_whisper import decode_audio
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    samples = decode_audio(str(path))
    stretches = get_speech_timestamps(samples, VadOptions(min_silence_duration_ms=500, speech_pad_ms=0))
    return sum(s["end"] - s["start"] for s in stretches) / max(1, len(samples))


def replayed(logs: Sequence[Path], job_id: str) -> bool:
    """Whether the streamer says it replayed the job from the source cache."""
    return any(
        "replayed from the source cache" in line and job_id in line
        for log in logs
        for line in log.read_text(errors="replace").splitlines()
    )


async def bill(bench: Bench, long_input: tuple[Path, float]) -> None:
    """The 10-minute input, then the same again, then ``fresh``: what each is billed, at the API and in the ledger."""
    path, input_s = long_input
    audio = await asyncio.to_thread(path.read_bytes)
    bench.sim.limit = LATENCY_API_LIMIT
    print(
        f"\nbill: {input_s / 60:g} minutes ({path.name}), one transcriber holding {LATENCY_API_LIMIT} calls, "
        f"caches on; {bench.args.model} at ${bench.price:g}/min; simulated API: {bench.args.delay:g} s a call"
    )
    row("speech in the input (Silero VAD, 0.5 s pauses)", f"{await asyncio.to_thread(speech_fraction, path):.1%}")
    extra = {"SCRIBE_MAX_IN_FLIGHT": str(LATENCY_API_LIMIT), "SCRIBE_API_MAX_IN_FLIGHT": str(LATENCY_API_LIMIT)}
    async with deployment(bench, "bill", 1, extra) as logs:
        runs = []
        for label, fresh in (("first time", False), ("same file again", False), ('again with "fresh": true', True)):
            mark = bench.sim.mark()
            run = await run_job(bench, audio, fresh=fresh)
            failures(bench, [run])
            counts = bench.sim.counts(mark, job_ids={run.job_id})
            seconds, cost, rows, hits = await ledger(bench, [run.job_id])
            runs.append((run, counts, seconds, cost))
            print(f"  {label}: job {run.job_id}, {run.wall_s:.1f} s to the final event")
            row("  calls to the API (429s)", f"{counts.requests} ({counts.rejected})")
            row("  chunks sent: min / median / max", chunk_lengths(bench, mark, {run.job_id}))
            if counts.audio_s:
                row(
                    "  uploaded",
                    f"{counts.bytes / 1000:,.0f} kB, {counts.bytes / counts.audio_s * 60 / 1000:.0f} kB a minute",
                )
            row(
                "  billed by the API / audio sent",
                f"{counts.billed_s:.0f} s / {counts.audio_s:.1f} s = {counts.billed_s / input_s:.3f} of the input",
            )
            row(
                "  ledger: billed, cost", f"{seconds:.0f} s, {usd_gbp(cost, bench.settings)} ({rows} rows, {hits} hits)"
            )
            if run.final is not None:
                usage = run.final.usage
                row(
                    "  final event's usage",
                    f"{usage.billed_seconds:.0f} s, ${usage.cost_usd:.4f}, hit {usage.cache_hit}",
                )
            if label == "same file again":
                row("  replayed from the source cache", "yes" if replayed(logs, run.job_id) else "no (streamer's log)")
    (_, first_counts, first_s, first_cost), (again, again_counts, again_s, again_cost) = runs[0], runs[1]
    bench.check(
        not any(r.failed for r, *_ in runs) and math.isclose(first_counts.billed_s, first_s, abs_tol=0.5),
        "the ledger bills what the API billed (first time)",
        f"API {first_counts.billed_s:.0f} s, ledger {first_s:.0f} s",
    )
    ratio = first_counts.billed_s / input_s
    bench.target(f"billed / input minutes <= {MAX_BILLED_RATIO}", f"{ratio:.3f}", ratio <= MAX_BILLED_RATIO)
    gbp = first_cost * bench.settings.gbp_per_usd
    minutes = first_counts.billed_s / 60
    row(
        "the first time's minutes at each price",
        ", ".join(f"{m} {usd_gbp(minutes * p, bench.settings)}" for m, p in bench.settings.prices.items()),
    )
    bench.target(
        f"cost per video < GBP {MAX_GBP_PER_VIDEO:.2f} ({bench.args.model})",
        f"{usd_gbp(first_cost, bench.settings)} for {input_s / 60:g} min",
        gbp < MAX_GBP_PER_VIDEO,
    )
    bench.target(
        "the same video again costs 0",
        f"{again_counts.requests} calls, {again_counts.billed_s:.0f} s at the API; ledger {again_s:.0f} s, "
        f"${again_cost:.4f}",
        again_counts.requests == 0 and again_cost == 0 and again.failed is None,
    )


# --- scenario: latency at 1, 8, 32 calls in flight --------------------------------------------


async def latency(bench: Bench, long_input: tuple[Path, float]) -> None:
    """The 10-minute input end to end with each number of calls in flight."""
    path, input_s = long_input
    audio = await asyncio.to_thread(path.read_bytes)
    bench.sim.limit = max(LATENCY_API_LIMIT, *bench.args.in_flight)
    print(
        f"\nlatency: {input_s / 60:g} minutes, submit to final, one transcriber, SCRIBE_MAX_IN_FLIGHT = "
        f"SCRIBE_API_MAX_IN_FLIGHT = N, fresh jobs, chunk cache off; simulated API: {bench.args.delay:g} s a call, "
        f"{bench.sim.limit} in flight at most"
    )
    print(
        f"  {'in flight':>9} {'bound':>6} {'wall s':>7} {'first line s':>12} {'calls':>6} {'429s':>5} "
        f"{'peak':>5} {'mean in flight':>14} {'last call sent s':>16} {'API floor s':>11}"
    )
    for n in bench.args.in_flight:
        extra = limits({"SCRIBE_MAX_IN_FLIGHT": str(n), "SCRIBE_API_MAX_IN_FLIGHT": str(n)})
        async with deployment(bench, f"latency-{n}", 1, extra) as logs:
            bound = await cluster_bound(bench)
            mark, start = bench.sim.mark(), time.monotonic()
            run = await run_job(bench, audio, fresh=True)
            failures(bench, [run])
            counts = bench.sim.counts(mark, job_ids={run.job_id})
            busy = bench.sim.mean_in_flight(mark, start, time.monotonic())
        floor = math.ceil(counts.answered / n) * bench.args.delay  # the calls alone, n at a time
        first = "-" if run.first_line_s is None else f"{run.first_line_s:.1f}"
        last = max((c.started for c in bench.sim.calls[mark:] if c.job_id == run.job_id), default=start) - start
        print(
            f"  {n:>9} {bound:>6} {run.wall_s:>7.1f} {first:>12} {counts.requests:>6} {counts.rejected:>5} "
            f"{counts.peak_in_flight:>5} {busy:>14.1f} {last:>16.1f} {floor:>11.0f}"
        )
        row("    warnings in the logs", log_warnings(logs))
        if n == LATENCY_TARGET_IN_FLIGHT:
            bench.target(
                f"{input_s / 60:g} min end to end < {MAX_LATENCY_S:g} s at {n} in flight",
                f"{run.wall_s:.1f} s (the calls alone: at least {floor:g} s)",
                run.wall_s < MAX_LATENCY_S and run.failed is None,
            )
    row("last call sent", "when the job's last call reached the API, from the submit: the streamer's pace")
    row("API floor", "ceil(calls / in flight) x delay: the time the calls alone take, n at a time")


# --- scenario: throughput with 1, 2, 4 transcriber processes ----------------------------------


@dataclass
class Throughput:
    """One throughput run."""

    workers: int
    bound: int
    videos: int
    wall_s: float
    per_minute: float
    calls: int
    rejected: int
    peak: int
    mean_in_flight: float
    billed_s: float
    ledger_s: float
    warnings: str
    failed: list[str]  # why jobs failed


async def throughput_run(bench: Bench, audio: bytes, workers: int, bound: int) -> Throughput:
    """``--videos`` jobs at once on ``workers`` transcriber processes of ``PER_PROCESS`` calls, ``bound`` in all.

    Failed jobs are figures here, not errors: past the API's limit, what fails is part of the result.
    """
    extra = limits({"SCRIBE_MAX_IN_FLIGHT": str(PER_PROCESS), "SCRIBE_API_MAX_IN_FLIGHT": str(bound)})
    async with deployment(bench, f"throughput-{workers}-{bound}", workers, extra) as logs:
        bound_now = await cluster_bound(bench)
        mark, start = bench.sim.mark(), time.monotonic()
        runs = await asyncio.gather(*(run_job(bench, audio, fresh=True) for _ in range(bench.args.videos)))
        end = time.monotonic()
    ids = {r.job_id for r in runs}
    counts = bench.sim.counts(mark, job_ids=ids)
    done = [r for r in runs if r.final is not None]
    wall = max((r.wall_s for r in runs), default=end - start)
    ledger_s, *_ = await ledger(bench, sorted(ids))
    return Throughput(
        workers=workers,
        bound=bound_now,
        videos=len(done),
        wall_s=wall,
        per_minute=len(done) / wall * 60 if wall > 0 else 0.0,
        calls=counts.requests,
        rejected=counts.rejected,
        peak=counts.peak_in_flight,
        mean_in_flight=bench.sim.mean_in_flight(mark, start, end),
        billed_s=counts.billed_s,
        ledger_s=ledger_s,
        warnings=log_warnings(logs),
        failed=[r.failed for r in runs if r.failed],
    )


async def throughput(bench: Bench) -> None:
    """Videos a minute with more and more transcriber processes against the simulated API's limit."""
    args = bench.args
    path, seconds = await asyncio.to_thread(build_input, MEETING, args.video_minutes, args.cache)
    audio = await asyncio.to_thread(path.read_bytes)
    bench.sim.limit = args.api_limit
    print(
        f"\nthroughput: {args.videos} videos of {seconds / 60:g} min at once (fresh, chunk cache off); transcriber "
        f"processes of {PER_PROCESS} calls each; simulated API: {args.delay:g} s a call, {args.api_limit} in flight "
        f"at most (429 past it); SCRIBE_API_MAX_IN_FLIGHT={args.api_limit}, then {OVER_LIMIT_BOUND} with the most "
        "processes"
    )
    print(
        f"  {'processes':>9} {'bound':>6} {'videos':>6} {'wall s':>7} {'videos/min':>10} {'calls':>6} {'429s':>5} "
        f"{'peak':>5} {'mean in flight':>14} {'billed s: API / ledger':>23}"
    )
    configurations = [(w, args.api_limit) for w in args.workers] + [(max(args.workers), OVER_LIMIT_BOUND)]
    results = []
    for workers, bound in configurations:
        result = await throughput_run(bench, audio, workers, bound)
        results.append(result)
        print(
            f"  {result.workers:>9} {result.bound:>6} {result.videos:>6} {result.wall_s:>7.1f} "
            f"{result.per_minute:>10.1f} {result.calls:>6} {result.rejected:>5} {result.peak:>5} "
            f"{result.mean_in_flight:>14.1f} {f'{result.billed_s:.0f} / {result.ledger_s:.0f}':>23}"
        )
        row("    warnings in the logs", result.warnings)
        if result.failed:
            row(f"    jobs failed: {len(result.failed)} of {args.videos}", f"the first: {result.failed[0]}")
    judge_throughput(bench, results[:-1], results[-1])


def judge_throughput(bench: Bench, bounded: list[Throughput], over: Throughput) -> None:
    """Scaling up to the API's limit, never past it; a retried call billed once."""
    limit = bench.args.api_limit
    by_workers = {r.workers: r for r in bounded}
    if 1 in by_workers and 2 in by_workers:
        gain = by_workers[2].per_minute / by_workers[1].per_minute if by_workers[1].per_minute else 0.0
        bench.target(
            f"2 processes >= {MIN_SCALING} x the videos/min of 1 (under the API's limit)",
            f"{gain:.2f} x",
            gain >= MIN_SCALING,
        )
    never = all(r.peak <= limit and r.rejected == 0 for r in bounded)
    bench.target(
        f"never past the API's {limit} in flight with the bound at {limit}",
        ", ".join(f"{r.workers}: peak {r.peak}, {r.rejected} 429s" for r in bounded),
        never,
    )
    row(
        f"with the bound at {over.bound} ({over.workers} processes)",
        f"peak {over.peak}, {over.rejected} 429s, {over.per_minute:.1f} videos/min, "
        f"{over.videos} of {bench.args.videos} videos finished",
    )
    results = [*bounded, over]
    bench.check(
        all(math.isclose(r.billed_s, r.ledger_s, abs_tol=0.5) for r in results),
        "the ledger bills what the API billed, 429s and retries included",
        "; ".join(f"{r.workers}/{r.bound}: API {r.billed_s:.0f} s, ledger {r.ledger_s:.0f} s" for r in results),
    )
    bench.check(
        all(r.videos == bench.args.videos for r in bounded),
        f"every video finished with the bound at {limit}",
        "; ".join(f"{r.workers}: {r.videos}" for r in bounded),
    )


# --- scenario: a simulated day of cost alerts ------------------------------------------------


class WarningCount(logging.Handler):
    """Counts the records of one logger at WARNING and above, and keeps them off stderr."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.logger = logging.getLogger(name)

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1

    def __enter__(self) -> WarningCount:
        self.logger.addHandler(self)
        self.logger.propagate = False
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)
        self.logger.propagate = True


class CountingWatch(CostWatch):
    """The real :class:`CostWatch`, counting its checks and keeping what it published."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checks = 0
        self.published: list[CostAlert] = []

    async def check(self, now: datetime) -> list[CostAlert]:
        self.checks += 1
        found = await super().check(now)
        self.published.extend(found)
        return found


@dataclass
class Day:
    """One simulated day: its figures, what the watches published, stored and put on the stream."""

    rise: float
    day: date
    calls: int
    cost_usd: float
    checks: int
    published: list[tuple[int, CostAlert]]
    stored: list[CostAlert]
    on_stream: list[CostAlert]
    logged: int  # records at WARNING
    wall_s: float


async def bill_rows(bench: Bench, times: Sequence[datetime], cost: float) -> None:
    """Ledger rows of one ``cost`` each, dated ``times`` (as a transcriber writes them, with a chosen date)."""
    seconds = ALERT_CALL_S
    await bench.rt.pool.executemany(INSERT_USAGE, [(bench.args.model, seconds, cost, when) for when in times])


def spread_over(day: date, calls: int) -> list[datetime]:
    """``calls`` moments evenly over the UTC day."""
    step = 86_400.0 / calls
    return [day_start(day) + timedelta(seconds=(i + 0.5) * step) for i in range(calls)]


async def alerts_on_stream(bench: Bench, day: date) -> list[CostAlert]:
    """The alerts of ``day`` on ``scribe.alerts.cost`` (the ``SCRIBE_ALERTS`` stream)."""
    info = await bench.rt.js.stream_info(ALERTS.name)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        with contextlib.suppress(NotFoundError):
            msg = await bench.rt.js.get_msg(ALERTS.name, seq)
            if msg.subject == subjects.ALERTS_COST:
                alert = cost_alert_decoder.decode(msg.data or b"")
                if alert.day == day:
                    found.append(alert)
    return found


async def simulate_day(bench: Bench, rise: float, day: date) -> Day:
    """The previous day's rows, then ``day``'s arriving call by call through ``WATCHES`` watches at once."""
    cost = billed_seconds(ALERT_CALL_S) / 60 * bench.price
    start = day_start(day)
    await bench.rt.pool.execute(
        "DELETE FROM usage WHERE created_at >= $1 AND created_at < $2", start - timedelta(days=1), start + timedelta(1)
    )
    await bench.rt.pool.execute("DELETE FROM cost_alerts WHERE day = $1", day)
    await bill_rows(bench, spread_over(day - timedelta(days=1), round(PREVIOUS_USD / cost)), cost)
    times = spread_over(day, round(PREVIOUS_USD * (1 + rise) / cost))
    connections = [await bus.connect(bench.settings.nats_url, f"bench-cost-watch-{w}") for w in range(WATCHES)]
    pools = [await create_pool(bench.settings.database_url, max_size=2) for _ in range(WATCHES)]
    now = [start] * WATCHES  # each watch's clock: the time of the call it is handling
    watches = [
        CountingWatch(
            pools[w],
            connections[w].jetstream(),
            bench.settings,
            clock=lambda w=w: now[w],
            monotonic=lambda w=w: (now[w] - start).total_seconds(),
        )
        for w in range(WATCHES)
    ]

    async def call(w: int, when: datetime) -> None:
        await pools[w].execute(INSERT_USAGE, bench.args.model, ALERT_CALL_S, cost, when)
        now[w] = when
        await watches[w].after_usage(cost)

    started = time.perf_counter()
    try:
        with WarningCount("transcriber.alerts") as logged:
            for first in range(0, len(times), WATCHES):  # the calls closest in time, one per watch, at once
                await asyncio.gather(*(call(w, when) for w, when in enumerate(times[first : first + WATCHES])))
    finally:
        for resource in (*connections, *pools):
            await resource.close()
    wall = time.perf_counter() - started
    stored = [s.alert for s in await alert_store.since(bench.rt.pool, day) if s.alert.day == day]
    return Day(
        rise=rise,
        day=day,
        calls=len(times),
        cost_usd=len(times) * cost,
        checks=sum(w.checks for w in watches),
        published=[(n, alert) for n, w in enumerate(watches) for alert in w.published],
        stored=stored,
        on_stream=await alerts_on_stream(bench, day),
        logged=logged.count,
        wall_s=wall,
    )


async def alerts(bench: Bench) -> None:
    """A day 25 % up: one alert; a day 15 % up: none (SCRIBE_ALERT_RISE at its setting)."""
    settings = bench.settings
    days = ", then a day ".join(f"{r:+.0%}" for r in ALERT_DAYS)
    print(
        f"\nalerts: the previous day ${PREVIOUS_USD:.2f} in the ledger, then a day {days}, call by call"
        f" ({ALERT_CALL_S:g} s chunks of {bench.args.model}, evenly over the UTC day) through {WATCHES} "
        f"CostWatch instances at once (a NATS connection and a pool each); SCRIBE_ALERT_RISE={settings.alert_rise:g}, "
        f"SCRIBE_ALERT_MIN_USD={settings.alert_min_usd:g}"
    )
    for rise, day in ALERT_DAYS.items():
        result = await simulate_day(bench, rise, day)
        print(
            f"  {rise:+.0%} ({day}): {result.calls} calls, ${result.cost_usd:.2f}; {result.checks} ledger checks in "
            f"{result.wall_s:.1f} s; {len(result.stored)} alerts stored, {len(result.on_stream)} on "
            f"{subjects.ALERTS_COST}, {result.logged} logged at WARNING"
        )
        for watch, alert in result.published:
            row(
                f"    {alert.kind} at {alert.at:%H:%M} UTC (watch {watch})",
                f"so far ${alert.cost_usd:.2f}, projected ${alert.projected_usd:.2f}, "
                f"threshold ${alert.threshold_usd:.2f}",
            )
        kinds = Counter(a.kind for a in result.stored)
        bench.check(
            kinds == Counter(a.kind for a in result.on_stream) and all(n == 1 for n in kinds.values()),
            f"{rise:+.0%}: each alert stored once and published once, whatever the number of watches",
            f"stored {dict(kinds)}, on the stream {dict(Counter(a.kind for a in result.on_stream))}",
        )
        expected = 1 if rise > settings.alert_rise else 0
        bench.target(
            f"a day {rise:+.0%}: {'exactly one alert' if expected else 'no alert'}",
            f"{len(result.stored)} ({', '.join(a.kind for a in sorted(result.stored, key=lambda a: a.at)) or 'none'})",
            len(result.stored) == expected,
        )


# --- the run ---------------------------------------------------------------------------------


def print_header(args: argparse.Namespace, settings: Settings) -> None:
    """The command, the machine, the settings that shape the figures."""
    models = [line.split(":", 1)[1].strip() for line in cpuinfo() if line.startswith("model name")]
    print(f"bench/cost.py: {shlex.join([sys.executable, '-m', 'bench.cost', *sys.argv[1:]])}")
    print(
        f"machine: {models[0] if models else platform.machine()}, {os.cpu_count()} cores "
        f"({len(os.sched_getaffinity(0))} usable), {psutil.virtual_memory().total / 2**30:.0f} GB; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; python {platform.python_version()}"
    )
    print(
        "THE OPENAI API IS SIMULATED (bench/sim_openai.py: canned text after a set delay, a limit on requests in "
        "flight, billing as OpenAI bills audio); no OpenAI account is used."
    )
    low, high = settings.chunk_lengths
    chunking = (
        f"{settings.asr_backend} backend's chunks {low:g}-{high:g} s (first up to {settings.chunk_first_max_s:g} s), "
        f"sent as {settings.bus_codec}"
    )
    print(f"settings: {chunking}; scenarios: {', '.join(args.scenarios)}")


async def run(args: argparse.Namespace, tmp: Path) -> int:
    """Start the servers and the simulation, run the scenarios; the number of errors."""
    main_task = asyncio.current_task()
    assert main_task is not None
    # SIGTERM unwinds like Ctrl-C does: every process and server started here is stopped.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    # The services' settings, which the bench's own connection shares (the topology, the prices).
    configured = Settings.from_env().with_(data_dir=tmp, asr_backend="openai", openai_model=args.model)
    print_header(args, configured)
    started = time.perf_counter()
    with SimulatedOpenAI(delay_s=args.delay) as sim:
        async with (
            infrastructure(configured.with_(openai_base_url=sim.base_url)) as settings,
            connected(settings, "bench-cost", create_pool, services=[]) as rt,
        ):
            nats = "SCRIBE_NATS_URL" if configured.nats_url else "embedded"
            postgres = "SCRIBE_DATABASE_URL" if configured.database_url else f"embedded in {tmp}"
            print(f"servers: NATS {nats} ({settings.nats_url}), PostgreSQL {postgres}; simulated API {sim.base_url}")
            bench = Bench(args, settings, rt, tmp, sim)
            if "alerts" in args.scenarios:
                await alerts(bench)
            if {"bill", "latency"} & set(args.scenarios):
                long_input = await asyncio.to_thread(build_input, MEETING, args.minutes, args.cache)
                if "bill" in args.scenarios:
                    await bill(bench, long_input)
                if "latency" in args.scenarios:
                    await latency(bench, long_input)
            if "throughput" in args.scenarios:
                await throughput(bench)
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
        for log in bench.logs:
            shutil.copy(log, args.logs / log.name)
        print(f"logs kept in {args.logs}")
    print(f"\nwall {time.perf_counter() - started:.0f} s; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("targets (on the SIMULATED API):")
    for target, figure, met in bench.targets:
        print(f"  {'met   ' if met else 'MISSED'} {target}: {figure}")
    print(f"{len(bench.errors)} errors: {'; '.join(bench.errors)}" if bench.errors else "no errors")
    return len(bench.errors)


def main(argv: list[str] | None = None) -> int:
    return run_in_folder("bench-cost-", run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

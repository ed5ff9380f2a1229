"""Load on the gateway's live stream: 1,000 websocket viewers of one job, a reconnect storm, many users.

Prints figures; it is not a test. One gateway runs as its own process (``python -m gateway``)
on an embedded NATS and PostgreSQL started here (or the servers ``SCRIBE_NATS_URL`` and
``SCRIBE_DATABASE_URL`` name); the clients run in this process on one asyncio loop, on the
same cores, so the CPU of every process is printed beside the figures.

* fan-out (``--viewers N``, 1000): N websocket viewers of one job; the bench publishes
  ``--events`` partials (50) at ``--rate`` a second (10), one line each whose ``start`` is the
  wall-clock time it was published, then the final. Latency is, per line per viewer, when it
  arrived less when it was published (one machine, one clock). Target: p99 under 100 ms.
* reconnect storm (``--storm [N]``, the fan-out's N): N viewers of a new job see
  ``--storm-after`` lines (20), all close at once, 5 lines are published while they are away,
  all reconnect at once with ``?after=<the last line each saw>``, then the rest and the final.
* users (``--users N``, 100): the real pipeline (``python -m scribe all``, one-thread decodes)
  beside the gateway; N users each upload the shortest clip of the shared audio data at once
  and follow its websocket until the final.

Every viewer must get every line exactly once and close normally (1000) after the final:
anything else is an error, and any error makes the exit status 1 (a missed latency target is
printed, not an error). Each scenario also prints the CPU seconds of every process (and of
the rest of the machine: other work skews the figures), the time the gateway and the clients
each spent at 90 % of a core or more (one Python process cannot use more), the gateway's
memory, and the lag of the clients' event loop (it adds to the latencies measured). The
gateway's log is summarized at the end; ``--logs DIR`` keeps it. With no scenario named all
three run (about 3 minutes on 2 quiet cores); naming one or more runs only those::

    .venv/bin/python -m bench.gateway_load
    .venv/bin/python -m bench.gateway_load --viewers 200 --events 20
    .venv/bin/python -m bench.gateway_load --storm 1000
    .venv/bin/python -m bench.gateway_load --users 10
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import csv
import gc
import io
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.measure import TreeSampler
from core import bus
from core.messages import Char, Final, JobOptions, Partial, Segment, Usage, Word
from core.process import Runtime, connected
from core.settings import Settings
from gateway.access import TOKEN_SECRET, job_token
from scribe.embedded import free_port, infrastructure
from store import repo
from store.db import create_pool

REPO = Path(__file__).resolve().parents[1]
AUDIO = REPO.parent / "shared" / "data" / "audio"

DEFAULT_VIEWERS = 1000
DEFAULT_USERS = 100  # about 2.5 minutes of ASR on 2 quiet cores (40 jobs a minute)
AWAY_LINES = 5  # published during the storm, while every viewer is away
CLOSE_NORMAL = 1000
OPEN_TIMEOUT_S = 120.0  # a thousand handshakes at once on 2 cores take a while
SETTLE_S = 120.0  # after the final, how long the viewers have to receive everything
USERS_TIMEOUT_S = 900.0
BUSY_EVERY_S = 0.25

# A realistic line: about the size of one the romanizer makes of a short sentence.
LINE_TEXT = "香港嘅消費市場從此唔一樣"
LINE_JYUTPING = "hoeng1 gong2 ge3 siu1 fai3 si5 coeng4 cung4 ci2 m4 jat1 joeng6"
LINE_YALE = "hēung góng ge sīu fai síh chèuhng chùhng chí m̀h yāt yeuhng"
LINE_WORD_LENGTHS = (2, 1, 2, 2, 2, 1, 2)


# --- command line ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """The scenarios to run and their sizes (0: not run)."""

    viewers: int
    storm: int
    users: int


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Plan]:
    """The command line, and the scenarios it names (all three when it names none)."""
    parser = argparse.ArgumentParser(description="Load the gateway's live stream and print what it did.")
    parser.add_argument("--viewers", type=int, metavar="N", help=f"fan-out to N viewers (default {DEFAULT_VIEWERS})")
    parser.add_argument(
        "--storm", type=int, nargs="?", const=0, metavar="N", help="reconnect storm of N viewers (default: --viewers)"
    )
    parser.add_argument(
        "--users", type=int, metavar="N", help=f"N users of the real pipeline (default {DEFAULT_USERS})"
    )
    parser.add_argument("--events", type=int, default=50, help="lines published per job (default 50)")
    parser.add_argument("--rate", type=float, default=10.0, help="lines published a second (default 10)")
    parser.add_argument("--storm-after", type=int, default=20, help="lines seen before the storm (default 20)")
    parser.add_argument("--clip", type=Path, help="the users' upload (default: the shortest clip in the manifest)")
    parser.add_argument("--no-compression", action="store_true", help="no permessage-deflate (browsers use it)")
    parser.add_argument("--logs", type=Path, help="keep the gateway's and the pipeline's logs in this folder")
    args = parser.parse_args(argv)
    if args.events < 1 or args.rate <= 0:
        parser.error("--events and --rate must be positive")
    if any(n is not None and n < 1 for n in (args.viewers, args.storm or None, args.users)):
        parser.error("the numbers of viewers and users must be positive")
    named = args.viewers is not None or args.storm is not None or args.users is not None
    viewers = args.viewers or DEFAULT_VIEWERS
    plan = Plan(
        viewers=viewers if args.viewers is not None or not named else 0,
        storm=(args.storm or viewers) if args.storm is not None or not named else 0,
        users=(args.users or DEFAULT_USERS) if args.users is not None or not named else 0,
    )
    if plan.storm and not 0 < args.storm_after < args.events - AWAY_LINES:
        parser.error(f"the storm needs 0 < --storm-after < --events - {AWAY_LINES}")
    return args, plan


# --- the processes and what they cost -------------------------------------------------------


def raise_open_files(needed: int) -> None:
    """Raise this process's open-file limit (the gateway inherits it): every viewer is a socket at each end."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (needed if hard == resource.RLIM_INFINITY else min(needed, hard), hard)
        )


def spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session (Ctrl-C reaches the bench, which stops it), output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate ``proc`` (it drains), and kill it if it has not exited 15 s later."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(proc: psutil.Process) -> float:
    """User and system CPU of ``proc``, of the children it has reaped and of those still running."""
    try:
        times = proc.cpu_times()
        children = proc.children(recursive=True)
    except psutil.Error:
        return 0.0
    total = times.user + times.system + times.children_user + times.children_system
    for child in children:
        with contextlib.suppress(psutil.Error):
            total += sum(child.cpu_times()[:2])
    return total


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot, over all cores (idle and I/O wait left out)."""
    t = psutil.cpu_times()
    return float(
        t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0) + getattr(t, "steal", 0.0)
    )


def servers(data_dir: Path) -> dict[str, psutil.Process]:
    """The embedded nats-server (a child of this process) and PostgreSQL (daemonized: its postmaster.pid);
    servers named by URL are not watched."""
    found = {p.name(): p for p in psutil.Process().children() if p.name() == "nats-server"}
    pid_file = data_dir / "postgres" / "postmaster.pid"
    if pid_file.is_file():
        with contextlib.suppress(ValueError, psutil.Error):
            found["postgres"] = psutil.Process(int(pid_file.read_text().split("\n", 1)[0]))
    return found


@dataclass
class Load:
    """What a scenario cost: wall time, CPU seconds per process, the gateway's memory, this loop's lag."""

    wall_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    gateway_rss_mb: float = 0.0  # at the start
    gateway_peak_rss_mb: float = 0.0  # sampled every 0.2 s
    lag_ms: list[float] = field(default_factory=list)  # overshoot of a 50 ms sleep on the clients' loop
    saturated_s: dict[str, float] = field(default_factory=dict)  # time spent at 90 % of a core or more

    def print(self) -> None:
        cores = os.cpu_count() or 1
        spent = ", ".join(f"{name} {seconds:.1f}" for name, seconds in self.cpu_s.items())
        row("wall", f"{self.wall_s:.1f} s")
        row("CPU seconds", f"{spent} (of {self.wall_s * cores:.0f} on {cores} cores)")
        busy = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.saturated_s.items())
        row("at >= 90% of one core", f"{busy} (sampled every {BUSY_EVERY_S} s)")
        row("gateway RSS", f"{self.gateway_rss_mb:.0f} MB at start, {self.gateway_peak_rss_mb:.0f} MB peak")
        lags = sorted(self.lag_ms)
        if lags:
            row("clients' event-loop lag", f"p99 {pct(lags, 0.99):.0f} ms, max {lags[-1]:.0f} ms")


class Saturation:
    """Samples how much of a core each process uses, and adds up the time each spends at 90 % or more.

    One Python process runs on one core at most: a gateway at 90 % of a core is saturated.
    """

    def __init__(self, processes: dict[str, psutil.Process]) -> None:
        self.processes = processes
        self.saturated_s = dict.fromkeys(processes, 0.0)
        self._finished = threading.Event()

    def run(self) -> None:
        """Sample every ``BUSY_EVERY_S`` until :meth:`stop` (a thread's target)."""
        last = {name: (self._cpu(proc), time.perf_counter()) for name, proc in self.processes.items()}
        while not self._finished.wait(BUSY_EVERY_S):
            for name, proc in self.processes.items():
                cpu, at = self._cpu(proc), time.perf_counter()
                if cpu - last[name][0] >= 0.9 * (at - last[name][1]):
                    self.saturated_s[name] += at - last[name][1]
                last[name] = (cpu, at)

    def stop(self) -> None:
        self._finished.set()

    @staticmethod
    def _cpu(proc: psutil.Process) -> float:
        try:
            return float(sum(proc.cpu_times()[:2]))
        except psutil.Error:
            return 0.0


async def _watch_lag(lags: list[float], every_s: float = 0.05) -> None:
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(every_s)
        lags.append((loop.time() - before - every_s) * 1000)


@contextlib.asynccontextmanager
async def measured(processes: dict[str, psutil.Process]) -> AsyncIterator[Load]:
    """Measure the block: the CPU of this process (the clients) and of ``processes``, the gateway's memory."""
    load = Load()
    gateway = processes["gateway"]
    before = {name: cpu_seconds(proc) for name, proc in processes.items()}
    own, machine = time.process_time(), machine_busy_seconds()
    load.gateway_rss_mb = gateway.memory_info().rss / 2**20
    sampler = TreeSampler(gateway.pid, "gateway", None)
    saturation = Saturation({"gateway": gateway, "clients": psutil.Process()})
    threads = [threading.Thread(target=target, daemon=True) for target in (sampler.run, saturation.run)]
    for thread in threads:
        thread.start()
    lag = asyncio.create_task(_watch_lag(load.lag_ms))
    started = time.perf_counter()
    try:
        yield load
    finally:
        load.wall_s = time.perf_counter() - started
        lag.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lag
        sampler.stop()
        load.cpu_s = {"clients": time.process_time() - own}
        load.cpu_s |= {name: cpu_seconds(proc) - before[name] for name, proc in processes.items()}
        load.cpu_s["others on the machine"] = max(0.0, machine_busy_seconds() - machine - sum(load.cpu_s.values()))
        saturation.stop()
        for thread in threads:
            await asyncio.to_thread(thread.join)
        load.saturated_s = saturation.saturated_s
        load.gateway_peak_rss_mb = max(sampler.peaks.get("gateway", 0.0), load.gateway_rss_mb)


# --- one websocket viewer -------------------------------------------------------------------


@dataclass(eq=False)
class Viewer:
    """One websocket client of a job, over all its connections: what it received and how it ended."""

    stamped: bool = True  # lines carry their publish time in ``start``
    lines: list[int] = field(default_factory=list)  # line numbers in the order they came
    latencies: list[tuple[int, float]] = field(default_factory=list)  # (line, seconds) of live lines
    problems: list[str] = field(default_factory=list)
    finished: bool = False
    segment_count: int | None = None  # from the final
    close_code: int | None = None
    opened_at: float = 0.0  # perf_counter when the last connection started
    live_at: float | None = None  # and when its snapshot came
    first_line_at: float | None = None
    last_line_at: float = 0.0  # wall clock
    ws: ClientConnection | None = None
    task: asyncio.Task[None] | None = None
    live: asyncio.Event = field(default_factory=asyncio.Event)
    progressed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def last_line(self) -> int:
        return self.lines[-1] if self.lines else -1

    def receive(self, envelope: dict[str, Any], at: float) -> None:
        """Record one envelope that arrived at wall-clock time ``at``."""
        kind = envelope["type"]
        if kind == "snapshot":
            self.live_at = time.perf_counter()
            self.live.set()
        if kind in ("snapshot", "segments") and envelope["segments"]:
            self.first_line_at = self.first_line_at or time.perf_counter()
            for line in envelope["segments"]:
                self.lines.append(line["seq"])
                if kind == "segments" and self.stamped:
                    self.latencies.append((line["seq"], at - line["start"]))
            self.last_line_at = at
            self.progressed.set()
        elif kind == "final":
            self.finished, self.segment_count = True, envelope["segment_count"]
        elif kind in ("failed", "lagged", "error"):
            self.problems.append(kind)

    async def reached(self, line: int) -> None:
        """Return once this viewer has line ``line``, or its connection has ended."""
        while self.last_line < line and self.task is not None and not self.task.done():
            self.progressed.clear()
            await self.progressed.wait()

    def faults(self, expected: int | None) -> tuple[list[str], int, int]:
        """What went wrong, and the lines missing and repeated of ``expected`` (None: the final's count)."""
        faults = list(self.problems)
        if not self.finished:
            faults.append("no final")
        if self.close_code != CLOSE_NORMAL:
            faults.append(f"closed with {self.close_code}")
        count = self.segment_count if expected is None else expected
        got = Counter(self.lines)
        missing = sum(1 for n in range(count or 0) if n not in got)
        repeated = sum(n - 1 for n in got.values())
        faults += ["lines missing"] * bool(missing) + ["lines repeated"] * bool(repeated)
        if count is not None and any(n >= count for n in got):
            faults.append("lines past the final's count")
        return faults, missing, repeated


async def follow(viewer: Viewer, url: str, compression: str | None) -> None:
    """One connection of ``viewer``: connect, and record every envelope until either side closes."""
    viewer.opened_at, viewer.live_at = time.perf_counter(), None
    try:
        async with connect(url, open_timeout=OPEN_TIMEOUT_S, max_size=None, compression=compression, proxy=None) as ws:
            viewer.ws = ws
            with contextlib.suppress(ConnectionClosed):
                async for raw in ws:
                    viewer.receive(msgspec.json.decode(raw), time.time())
        viewer.close_code = ws.close_code
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        viewer.problems.append(f"connection failed ({type(exc).__name__})")
    finally:
        viewer.ws = None
        viewer.live.set()  # nobody waits for a snapshot that will not come
        viewer.progressed.set()


async def connect_all(viewers: list[Viewer], url: Callable[[Viewer], str], compression: str | None) -> float:
    """Open every viewer's connection at once; the seconds until each has its snapshot (or has failed)."""
    started = time.perf_counter()
    for viewer in viewers:
        viewer.live.clear()
        viewer.task = asyncio.create_task(follow(viewer, url(viewer), compression))
    try:
        async with asyncio.timeout(OPEN_TIMEOUT_S + 10):
            await asyncio.gather(*(viewer.live.wait() for viewer in viewers))
    except TimeoutError:
        for viewer in viewers:
            if not viewer.live.is_set():
                viewer.problems.append("no snapshot in time")
    return time.perf_counter() - started


async def settle(viewers: list[Viewer]) -> None:
    """Wait until every viewer's connection has ended; one still open after ``SETTLE_S`` is closed and counted."""
    tasks = {viewer.task: viewer for viewer in viewers if viewer.task is not None}
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=SETTLE_S)
    for task in pending:
        tasks[task].problems.append("still open at the timeout")
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def snapshot_seconds(viewers: list[Viewer]) -> list[float]:
    """Per viewer, from opening its last connection to its snapshot, sorted."""
    return sorted(v.live_at - v.opened_at for v in viewers if v.live_at is not None)


# --- synthetic job events -------------------------------------------------------------------


def _line_parts() -> tuple[list[Word], list[Char]]:
    syllables = list(zip(LINE_TEXT, LINE_JYUTPING.split(), LINE_YALE.split(), strict=True))
    chars = [Char(char=c, jyutping=j, yale=y, yale_numeric=j) for c, j, y in syllables]
    words, at = [], 0
    for length in LINE_WORD_LENGTHS:
        part = syllables[at : at + length]
        words.append(Word(text="".join(c for c, _, _ in part), jyutping=" ".join(j for _, j, _ in part), yale=None))
        at += length
    return words, chars


LINE_WORDS, LINE_CHARS = _line_parts()


def stamped_partial(job_id: str, seq: int) -> Partial:
    """A partial with line ``seq``, whose ``start`` is the wall-clock time now: receivers compute latency from it."""
    sent = time.time()
    line = Segment(
        seq=seq,
        start=sent,
        end=sent + 2.5,
        text=LINE_TEXT,
        jyutping=LINE_JYUTPING,
        yale=LINE_YALE,
        words=LINE_WORDS,
        chunk_seq=seq,
        chars=LINE_CHARS,
    )
    return Partial(job_id=job_id, chunk_seq=seq, segments=[line], chunks_done=seq + 1)


async def publish_lines(rt: Runtime, job_id: str, lines: range, rate: float | None) -> None:
    """Publish one partial per line, ``rate`` a second on a fixed schedule (None: as fast as NATS acks)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n, seq in enumerate(lines):
        if rate is not None:
            await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
        await bus.publish_event(rt.js, stamped_partial(job_id, seq))


async def publish_final(rt: Runtime, job_id: str, count: int) -> None:
    usage = Usage(backend="local", model="whisper-base", billed_seconds=0.0, cost_usd=0.0)
    await bus.publish_event(rt.js, Final(job_id=job_id, duration=count * 2.5, segment_count=count, usage=usage))


async def new_job(rt: Runtime) -> tuple[str, str]:
    """A job row (the gateway checks it exists) and its token."""
    job_id = f"bench{time.time_ns():x}"
    await repo.create_job(rt.pool, job_id, "https://example.com/bench.mp3", user_id=None, options=JobOptions())
    return job_id, job_token(await repo.secret(rt.pool, TOKEN_SECRET), job_id)


# --- printing -------------------------------------------------------------------------------


def row(label: str, value: str) -> None:
    print(f"  {label:<30} {value}")


def pct(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values (nearest rank)."""
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(ordered: list[float], scale: float, unit: str) -> str:
    if not ordered:
        return "none"
    marks = (pct(ordered, 0.5), pct(ordered, 0.9), pct(ordered, 0.99), ordered[-1])
    return " / ".join(f"{x * scale:.0f}" if scale > 1 else f"{x:.1f}" for x in marks) + f" {unit}"


def report_errors(viewers: list[Viewer], expected: int | None, what: str = "viewers") -> int:
    """Print the viewers with faults, by kind, and the lines missing and repeated; the number of faulty viewers."""
    kinds: Counter[str] = Counter()
    faulty = missing = repeated = 0
    for viewer in viewers:
        faults, lost, again = viewer.faults(expected)
        kinds.update(set(faults))
        faulty += bool(faults)
        missing, repeated = missing + lost, repeated + again
    detail = f" ({', '.join(f'{kind}: {n}' for kind, n in kinds.most_common())})" if kinds else ""
    row("errors", f"{faulty} of {len(viewers)} {what}{detail}")
    row("lines missing / repeated", f"{missing} / {repeated} (target 0 / 0)")
    return faulty


_TOKEN = re.compile(r"(token[=.])[A-Za-z0-9_-]{16,}")
_CLIENT = re.compile(r"\b\d+\.\d+\.\d+\.\d+:\d+\b")


def _log_entry(line: str) -> tuple[str, str, bool]:
    """(level, message, JSON?) of a log line: ours are JSON, Litestar's default ``LEVEL - time - name - ...``."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        parts = line.split(" - ", 4)
        if len(parts) == 5:
            return parts[0].lower(), f"{parts[2]}: {parts[4]}", False
        return "other", line, False
    exc = (entry.get("exc") or "").strip().splitlines()[-1:]
    return entry.get("level", "?"), f"{entry.get('logger')}: {entry.get('msg')} {' '.join(exc)}".strip(), True


def print_log(name: str, log: Path) -> None:
    """What a child logged: the lines, how many are not JSON, how many at WARNING or above, the commonest."""
    lines = log.read_text(errors="replace").splitlines()
    entries = [_log_entry(_CLIENT.sub("<client>", _TOKEN.sub(r"\1…", line))) for line in lines]
    serious = sum(1 for level, _, _ in entries if level in ("warning", "error", "critical", "other"))
    plain = sum(1 for *_, is_json in entries if not is_json)
    tokens = sum(1 for line in lines if _TOKEN.search(line))
    print(
        f"{name} log: {len(entries):,} lines, {plain:,} not JSON, {serious:,} at WARNING or above (or unparsed), "
        f"{tokens:,} with a job token in them (shown here as token=…)"
    )
    for (level, message), n in Counter((level, message) for level, message, _ in entries).most_common(6):
        print(f"  {n:>6} x {level} {message[:160]}")


def keep_logs(tmp: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for log in tmp.glob("*.log"):
        shutil.copy(log, folder / log.name)
    print(f"logs kept in {folder}")


# --- the scenarios --------------------------------------------------------------------------


@dataclass
class Bench:
    """What the scenarios share: the command line, the servers, the gateway and the processes to measure."""

    args: argparse.Namespace
    settings: Settings
    rt: Runtime
    tmp: Path
    host: str
    processes: dict[str, psutil.Process]
    missed: list[str] = field(default_factory=list)  # targets not met (figures, not errors)

    @property
    def compression(self) -> str | None:
        return None if self.args.no_compression else "deflate"

    def stream_url(self, job_id: str, token: str, after: int = -1) -> str:
        return f"ws://{self.host}/v1/jobs/{job_id}/stream?token={token}&after={after}"


async def fan_out(bench: Bench, count: int) -> int:
    """Scenario 1: ``count`` viewers of one job, ``--events`` lines at ``--rate``, the final."""
    args = bench.args
    print(f"\nfan-out: {count} viewers of one job, {args.events} lines at {args.rate:g}/s, then the final")
    job_id, token = await new_job(bench.rt)
    viewers = [Viewer() for _ in range(count)]
    async with measured(bench.processes) as load:
        connected_s = await connect_all(viewers, lambda _: bench.stream_url(job_id, token), bench.compression)
        gc.freeze()  # the clients' full collections would stall them all and count as the gateway's latency
        first_sent = time.time()
        await publish_lines(bench.rt, job_id, range(args.events), args.rate)
        await publish_final(bench.rt, job_id, args.events)
        await settle(viewers)
    row(
        "all connected (snapshots)",
        f"{connected_s:.2f} s; per viewer p50/p90/p99/max {spread(snapshot_seconds(viewers), 1000, 'ms')}",
    )
    latencies = sorted(latency for v in viewers for _, latency in v.latencies)
    met = bool(latencies) and pct(latencies, 0.99) < 0.1
    verdict = "met" if met else "NOT met"
    if not met:
        bench.missed.append(f"fan-out latency p99 < 100 ms ({spread(latencies, 1000, 'ms')} p50/p90/p99/max)")
    row(
        "latency p50/p90/p99/max", f"{spread(latencies, 1000, 'ms')} ({len(latencies):,} lines; p99 < 100 ms {verdict})"
    )
    span = max((v.last_line_at for v in viewers), default=first_sent) - first_sent
    row(
        "delivered",
        f"{len(latencies) / span if span > 0 else 0:,.0f} lines/s over {span:.1f} s "
        f"(published: {args.rate * count:,.0f} lines/s to all viewers)",
    )
    errors = report_errors(viewers, args.events)
    load.print()
    return errors


async def storm(bench: Bench, count: int) -> int:
    """Scenario 2: ``count`` viewers see ``--storm-after`` lines, all drop and all resume at once."""
    args, rt = bench.args, bench.rt
    before, after = args.storm_after, args.storm_after + AWAY_LINES
    print(
        f"\nreconnect storm: {count} viewers see {before} lines, all close at once, {AWAY_LINES} lines while away, "
        f"all reconnect at once with ?after=, then {args.events - after} more lines at {args.rate:g}/s and the final"
    )
    job_id, token = await new_job(rt)
    viewers = [Viewer() for _ in range(count)]
    async with measured(bench.processes) as load:
        await connect_all(viewers, lambda _: bench.stream_url(job_id, token), bench.compression)
        await publish_lines(rt, job_id, range(before), args.rate)
        await _reach(viewers, before - 1)
        started = time.perf_counter()
        await asyncio.gather(*(v.ws.close() for v in viewers if v.ws is not None))
        await settle(viewers)
        closed_s = time.perf_counter() - started
        await publish_lines(rt, job_id, range(before, after), None)
        url = lambda v: bench.stream_url(job_id, token, v.last_line)  # noqa: E731
        live_s = await connect_all(viewers, url, bench.compression)
        storm_s = time.perf_counter() - started
        await publish_lines(rt, job_id, range(after, args.events), args.rate)
        await publish_final(rt, job_id, args.events)
        await settle(viewers)
    row("close all", f"{closed_s:.2f} s")
    row(
        "reconnect all (snapshots)",
        f"{live_s:.2f} s; per viewer p50/p90/p99/max {spread(snapshot_seconds(viewers), 1000, 'ms')}",
    )
    row("storm to all live again", f"{storm_s:.2f} s")
    resumed = sorted(latency for v in viewers for line, latency in v.latencies if line >= after)
    row("latency after it p50/p90/p99/max", f"{spread(resumed, 1000, 'ms')} ({len(resumed):,} lines)")
    errors = report_errors(viewers, args.events)
    load.print()
    return errors


async def _reach(viewers: list[Viewer], line: int) -> None:
    """Wait until every viewer has line ``line``; one that has not after ``SETTLE_S`` is counted."""
    try:
        async with asyncio.timeout(SETTLE_S):
            await asyncio.gather(*(viewer.reached(line) for viewer in viewers))
    except TimeoutError:
        for viewer in viewers:
            if viewer.last_line < line:
                viewer.problems.append(f"had not line {line} before the storm")


# --- scenario 3: users of the real pipeline -------------------------------------------------


def shortest_clip() -> Path:
    """The shortest recording in the shared audio manifest."""
    with (AUDIO / "manifest.tsv").open(encoding="utf-8") as manifest:
        rows = [r for r in csv.DictReader(manifest, delimiter="\t") if r.get("duration_s")]
    return AUDIO / min(rows, key=lambda r: float(r["duration_s"]))["file"]


@dataclass
class User:
    """One user: submit the clip, follow the job's websocket until the final."""

    viewer: Viewer = field(default_factory=lambda: Viewer(stamped=False))
    submitted_s: float | None = None  # the POST's answer
    first_line_s: float | None = None  # from the submit
    done_s: float | None = None


async def one_user(bench: Bench, http: httpx.AsyncClient, clip: Path, audio: bytes) -> User:
    user = User()
    started = time.perf_counter()
    try:
        answer = await http.post(
            "/v1/jobs", files={"file": (clip.name, audio, "audio/wav")}, data={"romanization": "both"}
        )
    except httpx.HTTPError as exc:
        user.viewer.problems.append(f"submit failed ({type(exc).__name__})")
        return user
    user.submitted_s = time.perf_counter() - started
    if answer.status_code != 202:
        user.viewer.problems.append(f"submit answered {answer.status_code}")
        return user
    job = answer.json()
    url = f"ws://{bench.host}{job['links']['stream']}?token={job['token']}"
    await follow(user.viewer, url, bench.compression)
    user.done_s = time.perf_counter() - started
    if user.viewer.first_line_at is not None:
        user.first_line_s = user.viewer.first_line_at - started
    return user


async def start_pipeline(bench: Bench) -> subprocess.Popen[bytes]:
    """``python -m scribe all`` on the bench's servers, returned once its services run."""
    env = {
        **os.environ,
        "SCRIBE_NATS_URL": bench.settings.nats_url,
        "SCRIBE_DATABASE_URL": bench.settings.database_url,
        "SCRIBE_ASR_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "SCRIBE_LOG_LEVEL": "INFO",
        "SCRIBE_LOG_FORMAT": "json",
    }
    log = bench.tmp / "scribe.log"
    proc = spawn([sys.executable, "-m", "scribe", "all"], env, log)
    try:
        async with asyncio.timeout(300):  # the first run joins the model
            await wait_for_log(proc, log, "services running")
    except BaseException:
        await asyncio.to_thread(stop, proc)
        raise
    return proc


async def users(bench: Bench, count: int) -> int:
    """Scenario 3: ``count`` users each upload a clip at once and follow it to the final."""
    clip = bench.args.clip or shortest_clip()
    audio = await asyncio.to_thread(clip.read_bytes)
    print(
        f"\nusers: {count} users at once each upload {clip.name} ({len(audio) / 1000:.0f} kB) and follow its "
        "websocket; the pipeline is `python -m scribe all` (SCRIBE_ASR_THREADS=1, workers = cores)"
    )
    pipeline = await start_pipeline(bench)
    processes = bench.processes | {"scribe all": psutil.Process(pipeline.pid)}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://{bench.host}", timeout=120, limits=limits, trust_env=False) as http,
            measured(processes) as load,
        ):
            try:
                async with asyncio.timeout(USERS_TIMEOUT_S):
                    done = await asyncio.gather(*(one_user(bench, http, clip, audio) for _ in range(count)))
            except TimeoutError:
                print(f"  the users did not all finish within {USERS_TIMEOUT_S:.0f} s")
                done = []
    finally:
        await asyncio.to_thread(stop, pipeline)
    finished = [u for u in done if u.viewer.finished]
    end = max((u.done_s for u in finished if u.done_s is not None), default=load.wall_s)
    row("users", f"{count} ({len(finished)} finished)")
    row("jobs per minute", f"{len(finished) / end * 60:.1f} (all submitted at once; last final at {end:.1f} s)")
    row("submit (POST) p50/p90/p99/max", spread(sorted(u.submitted_s for u in done if u.submitted_s), 1000, "ms"))
    row("first line p50/p90/p99/max", spread(sorted(u.first_line_s for u in done if u.first_line_s), 1, "s"))
    row("final p50/p90/p99/max", spread(sorted(u.done_s for u in finished if u.done_s), 1, "s"))
    row("jobs with no line", str(sum(1 for u in finished if u.viewer.first_line_at is None)))
    errors = report_errors([u.viewer for u in done], None, "users") if done else count
    load.print()
    print_log("scribe all", bench.tmp / "scribe.log")
    return errors


# --- the run --------------------------------------------------------------------------------


async def wait_for_log(proc: subprocess.Popen[bytes], log: Path, needle: str) -> None:
    """Return once ``needle`` is in the child's log; RuntimeError, with the log's end, if it exits first."""
    while needle not in (text := await asyncio.to_thread(log.read_text, errors="replace")):
        if proc.poll() is not None:
            tail = "\n".join(text.splitlines()[-20:])
            raise RuntimeError(f"{log.stem} exited with {proc.returncode} before {needle!r}:\n{tail}")
        await asyncio.sleep(0.2)


async def start_gateway(settings: Settings, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m gateway`` on a free port, returned once ``GET /healthz`` answers (after its start-up)."""
    port = free_port()
    env = {
        **os.environ,
        "SCRIBE_NATS_URL": settings.nats_url,
        "SCRIBE_DATABASE_URL": settings.database_url,
        "SCRIBE_GATEWAY_HOST": "127.0.0.1",
        "SCRIBE_GATEWAY_PORT": str(port),
        # Every simulated viewer comes from this one address: the per-client caps would refuse most.
        "SCRIBE_GATEWAY_MAX_CONNECTIONS_PER_CLIENT": "100000",
        "SCRIBE_GATEWAY_MAX_WEBSOCKETS_PER_CLIENT": "100000",
        "SCRIBE_LOG_LEVEL": "WARNING",
        "SCRIBE_LOG_FORMAT": "json",
    }
    proc = spawn([sys.executable, "-m", "gateway"], env, tmp / "gateway.log")
    host = f"127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=f"http://{host}", timeout=2, trust_env=False) as http:
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        return proc, host
                await asyncio.sleep(0.1)
        tail = "\n".join((tmp / "gateway.log").read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"the gateway did not answer /healthz (exit {proc.poll()}):\n{tail}")
    except BaseException:
        await asyncio.to_thread(stop, proc)
        raise


def cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def print_header(args: argparse.Namespace, plan: Plan) -> None:
    """The command, the machine, the library versions and the scenarios."""
    models = [line.split(":", 1)[1].strip() for line in cpuinfo() if line.startswith("model name")]
    cpu = models[0] if models else platform.machine()
    print(f"bench/gateway_load.py: {shlex.join([sys.executable, '-m', 'bench.gateway_load', *sys.argv[1:]])}")
    print(
        f"machine: {cpu}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GB; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {platform.platform()}"
    )
    libs = ("litestar", "uvicorn", "websockets", "nats-py", "asyncpg")
    print(f"python {platform.python_version()}, " + ", ".join(f"{name} {version(name)}" for name in libs))
    print(
        f"scenarios: fan-out {plan.viewers or 'skipped'}, storm {plan.storm or 'skipped'}, users "
        f"{plan.users or 'skipped'}; websocket compression {'off' if args.no_compression else 'permessage-deflate'}"
    )


async def run(args: argparse.Namespace, plan: Plan, tmp: Path) -> int:
    """Start the servers and the gateway, run the planned scenarios; the number of errors."""
    main_task = asyncio.current_task()
    assert main_task is not None
    # SIGTERM unwinds like Ctrl-C does: every child process and server started here is stopped.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    raise_open_files(4 * max(plan.viewers, plan.storm, plan.users) + 1024)
    print_header(args, plan)
    configured = Settings.from_env()
    async with (
        infrastructure(configured.with_(data_dir=tmp)) as settings,
        connected(settings, "bench-gateway-load", create_pool, services=[]) as rt,
    ):
        gateway, host = await start_gateway(settings, tmp)
        try:
            nats = "SCRIBE_NATS_URL" if configured.nats_url else "embedded"
            postgres = "SCRIBE_DATABASE_URL" if configured.database_url else f"embedded in {tmp}"
            print(f"servers: NATS {nats} ({settings.nats_url}), PostgreSQL {postgres}")
            print(
                f"gateway: `python -m gateway` (pid {gateway.pid}) on {host}; clients: this process "
                f"(pid {os.getpid()}, one asyncio loop; it publishes the synthetic events too)"
            )
            processes = {"gateway": psutil.Process(gateway.pid), **servers(tmp)}
            bench = Bench(args, settings, rt, tmp, host, processes)
            errors = await run_scenarios(bench, plan)
        finally:
            await asyncio.to_thread(stop, gateway)
        print()
        print_log("gateway", tmp / "gateway.log")
        if args.logs:
            keep_logs(tmp, args.logs)
    print(f"\n{f'{errors} errors' if errors else 'no errors'}")
    for target in bench.missed:
        print(f"target not met: {target}")
    return errors


async def run_scenarios(bench: Bench, plan: Plan) -> int:
    """The planned scenarios, one after another on the same gateway; the number of errors."""
    errors = 0
    if plan.viewers:
        errors += await fan_out(bench, plan.viewers)
    if plan.storm:
        errors += await storm(bench, plan.storm)
    if plan.users:
        errors += await users(bench, plan.users)
    return errors


def main(argv: list[str] | None = None) -> int:
    args, plan = parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    tmp = Path(tempfile.mkdtemp(prefix="gateway-load-"))
    # Registered before embedded PostgreSQL registers its own exit handler, so it runs after it:
    # that handler takes a lock in <tmp>/run again as the process exits.
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    try:
        return 1 if asyncio.run(run(args, plan, tmp)) else 0
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, SIGTERM: everything is stopped by now
        print("bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

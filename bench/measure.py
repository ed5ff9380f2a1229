"""Running one child process and measuring it, for ``bench.pipeline``.

Wall time is from process start to exit. The child's own peak RSS and its CPU time come from
``os.wait4`` (exact). The memory of its process tree, plus that of an embedded PostgreSQL
server (``pg_ctl`` daemonizes it, so it is found through ``<pgdata>/postmaster.pid``), is
sampled with psutil every ``SAMPLE_EVERY_S`` seconds. Stderr lines are timestamped as they
arrive.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

SAMPLE_EVERY_S = 0.2


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


# --- the processes to watch ---------------------------------------------------------------


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
    """``proc`` and all its descendants (only ``proc`` if they cannot be listed)."""
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


def _memory(proc: psutil.Process) -> tuple[int, int]:
    """RSS and PSS of ``proc`` in bytes; PSS is the RSS where it may not be read."""
    try:
        info = proc.memory_full_info()
        return info.rss, info.pss
    except psutil.AccessDenied:
        rss = proc.memory_info().rss
        return rss, rss


# --- sampling their memory ----------------------------------------------------------------


@dataclass
class _Sample:
    """The memory of the watched processes at one instant, in MB."""

    by_name: dict[str, float] = field(default_factory=dict)  # summed over the processes of one name
    number: dict[str, int] = field(default_factory=dict)  # processes of that name
    total: float = 0.0
    pss: float = 0.0

    def add(self, name: str, rss: int, pss: int) -> None:
        """Count one process."""
        self.by_name[name] = self.by_name.get(name, 0.0) + rss / 2**20
        self.number[name] = self.number.get(name, 0) + 1
        self.total += rss / 2**20
        self.pss += pss / 2**20


class TreeSampler:
    """Samples the memory of a child's process tree (and of a PostgreSQL server) until stopped; keeps the peaks."""

    def __init__(self, root_pid: int, root_name: str, pgdata: Path | None) -> None:
        self.root_pid = root_pid
        self.root_name = root_name
        self.pgdata = pgdata
        self.peaks: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.peak_total = self.peak_pss = 0.0
        self.samples = 0
        self._finished = threading.Event()

    def run(self) -> None:
        """Sample every ``SAMPLE_EVERY_S`` seconds until :meth:`stop` (a thread's target)."""
        try:
            root = psutil.Process(self.root_pid)
        except psutil.Error:
            return
        while not self._finished.is_set():
            self._record(self._sample(root))
            self._finished.wait(SAMPLE_EVERY_S)

    def stop(self) -> None:
        """End the sampling loop."""
        self._finished.set()

    def _processes(self, root: psutil.Process) -> dict[int, psutil.Process]:
        """The child's process tree and the PostgreSQL server's, by pid."""
        procs = {p.pid: p for p in _tree(root)}
        server = _postmaster(self.pgdata)
        if server is not None:
            procs.update((p.pid, p) for p in _tree(server))
        return procs

    def _sample(self, root: psutil.Process) -> _Sample:
        """The memory of every watched process now; the child itself goes by ``root_name``."""
        sample = _Sample()
        for pid, proc in self._processes(root).items():
            try:
                name = self.root_name if pid == self.root_pid else proc.name()
                rss, pss = _memory(proc)
            except psutil.Error:
                continue
            sample.add(name, rss, pss)
        return sample

    def _record(self, sample: _Sample) -> None:
        """Raise the peaks to ``sample``."""
        for name, mb in sample.by_name.items():
            self.peaks[name] = max(self.peaks.get(name, 0.0), mb)
            self.counts[name] = max(self.counts.get(name, 0), sample.number[name])
        self.peak_total, self.peak_pss = max(self.peak_total, sample.total), max(self.peak_pss, sample.pss)
        self.samples += 1


# --- the child process ----------------------------------------------------------------------


class _Output:
    """Collects the child's stdout (read whole) and its stderr (line by line, with the time each came)."""

    def __init__(self, proc: subprocess.Popen[str], t0: float, on_line: Callable[[float, str], None] | None) -> None:
        self.proc = proc
        self.t0 = t0
        self.on_line = on_line
        self.stdout_chunks: list[str] = []
        self.stderr_lines: list[tuple[float, str]] = []

    def read_stdout(self) -> None:
        """Read stdout to its end (a thread's target)."""
        assert self.proc.stdout is not None
        self.stdout_chunks.append(self.proc.stdout.read())

    def read_stderr(self) -> None:
        """Read stderr line by line to its end, passing each line to ``on_line`` (a thread's target)."""
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            at = time.perf_counter() - self.t0
            line = raw.rstrip("\n")
            self.stderr_lines.append((at, line))
            if self.on_line is not None:
                self.on_line(at, line)


def _spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``command`` in a session of its own (a timeout signals its whole group), stdout and stderr piped."""
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
    return proc


def _start_threads(targets: list[Callable[[], None]]) -> list[threading.Thread]:
    """Run each of ``targets`` in a daemon thread of its own."""
    threads = [threading.Thread(target=fn, daemon=True) for fn in targets]
    for thread in threads:
        thread.start()
    return threads


def _interrupt_after(pid: int, timeout_s: float, notes: list[str]) -> threading.Timer:
    """A started timer that interrupts process group ``pid`` after ``timeout_s`` (SIGINT, 20 s later SIGKILL)."""

    def interrupt() -> None:
        notes.append(f"timed out after {timeout_s:.0f} s: interrupted")
        try:
            os.killpg(pid, signal.SIGINT)  # scribe cleans up (stops NATS and PostgreSQL) on Ctrl-C
            time.sleep(20)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout_s, interrupt)
    timer.daemon = True
    timer.start()
    return timer


def _notes_before(pgdata: Path | None) -> list[str]:
    """The run's first notes: a PostgreSQL server on ``pgdata`` already running (it is counted all the same)."""
    before = _postmaster(pgdata)
    if before is None:
        return []
    return [f"a PostgreSQL server on {pgdata} was already running (pid {before.pid}) and is counted"]


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
    notes = _notes_before(pgdata)
    started_epoch = time.time()
    t0 = time.perf_counter()
    proc = _spawn(command, env)
    output = _Output(proc, t0, on_line)
    sampler = TreeSampler(proc.pid, root_name, pgdata)
    threads = _start_threads([output.read_stdout, output.read_stderr, sampler.run])
    timer = _interrupt_after(proc.pid, timeout_s, notes)
    # wait4 rather than Popen.wait: it gives this child's own peak RSS.
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.stop()
    for thread in threads:
        thread.join(timeout=10)
    return Measured(
        command=command,
        returncode=proc.returncode,
        wall_s=wall,
        started_epoch=started_epoch,
        stdout="".join(output.stdout_chunks),
        stderr_lines=output.stderr_lines,
        root_maxrss_mb=usage.ru_maxrss / 1024,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb_by_name=sampler.peaks,
        processes_by_name=sampler.counts,
        peak_total_rss_mb=sampler.peak_total,
        peak_total_pss_mb=sampler.peak_pss,
        samples=sampler.samples,
        notes=notes,
    )


REPO = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def worktree(commit: str, prefix: str) -> Iterator[Path]:
    """The repository's code at ``commit`` in a git worktree of its own (a "before" side), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(folder), commit], check=True, capture_output=True
    )
    try:
        yield folder
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)], capture_output=True)


def run_in_folder(prefix: str, run: Callable[[Any, Path], Awaitable[int]], args: Any) -> int:
    """A bench's ``main``: ``run(args, folder)`` in a fresh temporary folder; its exit status.

    Lines are printed as they come (figures appear while a long bench runs); the folder is removed
    at exit, after the embedded PostgreSQL in it has stopped (its exit handler is registered later,
    so it runs first); Ctrl-C or SIGTERM ends the run with status 130.
    """
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    try:
        return 1 if asyncio.run(run(args, folder)) else 0
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted", file=sys.stderr)
        return 130

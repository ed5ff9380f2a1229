"""Entry points as an operator starts them: a bad setting or a missing server URL stops them at start (exit 2);
SIGTERM (systemd, Docker, ``timeout``) stops them as Ctrl-C does, leaving no server or folder behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import nats
import pytest

from tests.helpers import scribe_cli
from tests.paths import AUDIO

pytestmark = pytest.mark.integration


def _environ(**values: str) -> dict[str, str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("SCRIBE_")}
    return {**clean, **values}


def _stack_environ(top: Path, **values: str) -> dict[str, str]:
    """A ``scribe`` with its data and temporary folders under ``top``, quick to start.

    The ASR backend is the OpenAI API at an address where nothing listens: the local model
    would only slow the start down, and no test here transcribes (a job stays in progress,
    retrying, for as long as a test needs it to).
    """
    (top / "tmp").mkdir(exist_ok=True)
    return _environ(
        SCRIBE_DATA_DIR=str(top / "data"),
        TMPDIR=str(top / "tmp"),
        SCRIBE_ASR_BACKEND="openai",
        SCRIBE_OPENAI_API_KEY="unused",
        SCRIBE_OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        SCRIBE_MAX_DELIVER="100",
        **values,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Scribe:
    """``python -m scribe ARGS`` in its own process; its output is read line by line as it comes."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scribe", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.output: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._lines: dict[str, queue.Queue[str | None]] = {"stdout": queue.Queue(), "stderr": queue.Queue()}
        for name in self.output:
            threading.Thread(target=self._read, args=(name,), daemon=True).start()

    def _read(self, name: str) -> None:
        for line in getattr(self.process, name):
            self.output[name].append(line)
            self._lines[name].put(line)
        self._lines[name].put(None)

    def wait_for(self, stream: str, text: str, timeout: float = 120) -> str:
        """The first line (not yet waited for) of ``stream`` containing ``text``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines[stream].get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {text!r} on {stream} within {timeout} s: {self.output}") from None
            if line is None:
                raise AssertionError(f"scribe ended before writing {text!r}: {self.output}")
            if text in line:
                return line

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def end(self) -> None:
        """After a failed test: leave nothing running."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class Up(Scribe):
    """``scribe up`` on a free port, started: its gateway answers, and the NATS URL it printed."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = _free_port()
        super().__init__("up", "--port", str(self.port), env=env)
        self.wait_for("stdout", "viewer:")
        self.nats_url = self.wait_for("stdout", "nats:").split()[1]

    def ready(self) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as http:
            http.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return b"".join(iter(lambda: http.recv(4096), b""))


def _processes_mentioning(folder: Path) -> list[str]:
    """The command lines of running processes naming ``folder`` (PostgreSQL's ``-D``, nats-server's ``-sd``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if str(folder) in cmdline and state != "Z":
            found.append(f"{entry.name}: {cmdline}")
    return found


def _stop_leftovers(folder: Path) -> None:
    """After a failed test: end what a scribe started there and left running (PostgreSQL detaches)."""
    for line in _processes_mentioning(folder):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split(":", 1)[0]), signal.SIGQUIT)


def _assert_nothing_left(top: Path) -> None:
    """No server of the stack under ``top`` runs, and none of its folders is left in the temporary directory.

    (onnxruntime, which runs the speech detector, keeps a small ``.ses`` file there: not ours.)
    """
    assert _processes_mentioning(top) == []
    assert not (top / "data" / "postgres" / "postmaster.pid").exists()
    assert sorted(path.name for path in (top / "tmp").iterdir() if path.name.startswith("scribe-")) == []


def test_scribe_stops_at_start_on_a_bad_setting(tmp_path: Path) -> None:
    done = scribe_cli("transcribe", str(tmp_path / "clip.wav"), env=_environ(SCRIBE_CHUNK_CODEC="mp3"), timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "scribe: SCRIBE_CHUNK_CODEC='mp3' is not allowed: choose one of auto, flac, opus"


@pytest.mark.parametrize("service", ["streamer", "transcriber", "romanizer", "gateway"])
def test_every_service_stops_at_start_on_a_bad_setting(service: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", service],
        env=_environ(
            SCRIBE_LOG_FORMAT="xml", SCRIBE_NATS_URL="nats://127.0.0.1:9", SCRIBE_DATABASE_URL="postgresql://x"
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "SCRIBE_LOG_FORMAT='xml' is not allowed: choose one of auto, json, text" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_service_alone_needs_the_servers_it_shares() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamer"], env=_environ(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "set SCRIBE_NATS_URL and SCRIBE_DATABASE_URL" in done.stderr


@pytest.mark.parametrize("service", ["streamer", "transcriber", "romanizer"])
def test_scribe_service_alone_needs_the_servers_it_shares(service: str, tmp_path: Path) -> None:
    done = scribe_cli(service, env=_environ(SCRIBE_DATA_DIR=str(tmp_path)), timeout=60)
    assert done.returncode == 2
    assert f"scribe {service}: set SCRIBE_NATS_URL and SCRIBE_DATABASE_URL" in done.stderr
    assert not any(tmp_path.iterdir()), "no private server was started"


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("nothing-here.wav", "There is no file at "),
        ("data:audio/wav;base64,UklGRiQAAABXQVZF", "data: URIs are not accepted"),
        ("http://127.0.0.1:1/clip.mp3", "private or local network address"),
    ],
)
def test_refused_input_is_refused_before_anything_starts(source: str, words: str, tmp_path: Path) -> None:
    done = scribe_cli("transcribe", source, env=_environ(SCRIBE_DATA_DIR=str(tmp_path)), timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("scribe: ") and words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir()), "neither PostgreSQL nor the model was started"


def test_scribe_servers_prints_the_urls_separate_services_share_and_stops_on_sigterm(tmp_path: Path) -> None:
    server = Scribe("servers", env=_stack_environ(tmp_path))
    try:
        lines = [server.wait_for("stdout", "SCRIBE_NATS_URL="), server.wait_for("stdout", "SCRIBE_DATABASE_URL=")]
        urls = dict(line.strip().split("=", 1) for line in lines)
        nats_url = urlsplit(urls["SCRIBE_NATS_URL"])
        socket.create_connection((nats_url.hostname, nats_url.port), timeout=5).close()
        assert asyncio.run(_select_one(urls["SCRIBE_DATABASE_URL"])) == 1
        assert server.stop(signal.SIGTERM) == 0
        _assert_nothing_left(tmp_path)
    finally:
        server.end()
        _stop_leftovers(tmp_path)


async def _select_one(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return int(await connection.fetchval("SELECT 1"))
    finally:
        await connection.close()


def test_scribe_up_serves_the_gateway_and_stops_on_ctrl_c(data_dir: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    up = subprocess.Popen(
        [sys.executable, "-m", "scribe", "up", "--port", str(port)],
        env=_environ(SCRIBE_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert up.stdout is not None
        gateway_line, nats_line = up.stdout.readline(), up.stdout.readline()
        assert gateway_line.startswith(f"viewer:  http://127.0.0.1:{port}/"), gateway_line
        assert nats_line.startswith("nats:    nats://127.0.0.1:"), nats_line
        with socket.create_connection(("127.0.0.1", port), timeout=5) as http:
            http.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = b"".join(iter(lambda: http.recv(4096), b""))
        assert answer.startswith(b"HTTP/1.1 200") and b'"database":"ok"' in answer, answer
        with socket.create_connection(("127.0.0.1", port), timeout=5) as http:
            http.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            page = b"".join(iter(lambda: http.recv(4096), b""))
        assert page.startswith(b"HTTP/1.1 200") and b'<form id="start"' in page, page[:200]
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
    assert _processes_mentioning(data_dir) == [], "PostgreSQL and NATS stopped with it"


@pytest.mark.parametrize("when", ["serving", "starting"])
def test_scribe_up_stopped_by_sigterm_stops_its_servers_and_exits_0(when: str, tmp_path: Path) -> None:
    env = _stack_environ(tmp_path)
    up = Up(env) if when == "serving" else Scribe("up", "--port", str(_free_port()), env=env)
    try:
        if isinstance(up, Up):
            assert up.ready().startswith(b"HTTP/1.1 200")
        else:  # a SIGTERM that comes while it starts is kept until the servers are up, then stops them
            up.wait_for("stderr", "embedded nats started")
        assert _processes_mentioning(tmp_path), "the servers run under the data folder"
        assert up.stop(signal.SIGTERM) == 0, up.output
        _assert_nothing_left(tmp_path)
    finally:
        up.end()
        _stop_leftovers(tmp_path)


async def _put(nats_url: str, bucket: str, name: str, data: bytes) -> None:
    nc = await nats.connect(nats_url)
    try:
        await (await nc.jetstream().object_store(bucket)).put(name, data)
    finally:
        await nc.close()


async def _get(nats_url: str, bucket: str, name: str) -> bytes:
    nc = await nats.connect(nats_url)
    try:
        return bytes((await (await nc.jetstream().object_store(bucket)).get(name)).data or b"")
    finally:
        await nc.close()


def test_scribe_up_keeps_jetstream_in_the_data_folder_across_restarts_and_a_sigkill(tmp_path: Path) -> None:
    """A job's audio, uploads and events outlive a restart (the README promises audio for 7 days)."""
    env = _stack_environ(tmp_path)
    audio = os.urandom(1000)
    started: list[Up] = []
    try:
        started.append(first := Up(env))
        asyncio.run(_put(first.nats_url, "scribe-audio", "job-1", audio))
        assert first.stop(signal.SIGTERM) == 0

        started.append(second := Up(env))
        assert asyncio.run(_get(second.nats_url, "scribe-audio", "job-1")) == audio
        # Killed outright: its nats-server dies with it, its PostgreSQL does not (pg_ctl detaches it) ...
        assert second.stop(signal.SIGKILL) == -signal.SIGKILL

        started.append(third := Up(env))  # ... and the next start takes it over, and stops it when it stops
        assert third.ready().startswith(b"HTTP/1.1 200")
        assert asyncio.run(_get(third.nats_url, "scribe-audio", "job-1")) == audio
        assert third.stop(signal.SIGTERM) == 0
        _assert_nothing_left(tmp_path)
    finally:
        for up in started:
            up.end()
        _stop_leftovers(tmp_path)


def test_a_second_scribe_up_on_the_same_data_folder_is_refused(tmp_path: Path) -> None:
    """nats-server does not lock its folder: two servers on one would both write its streams."""
    env = _stack_environ(tmp_path)
    first = Up(env)
    try:
        second = scribe_cli("up", "--port", str(_free_port()), env=env, timeout=60)
        assert second.returncode == 1
        assert second.stderr == (
            f"scribe: another scribe (pid {first.process.pid}) is using {tmp_path / 'data' / 'nats'}; "
            "stop it or set SCRIBE_DATA_DIR to another folder\n"
        )
        assert first.ready().startswith(b"HTTP/1.1 200"), "the first one still serves"
        assert first.stop(signal.SIGTERM) == 0
        _assert_nothing_left(tmp_path)
    finally:
        first.end()
        _stop_leftovers(tmp_path)


def test_scribe_up_beyond_loopback_without_accounts_warns_that_anyone_may_use_it(tmp_path: Path) -> None:
    up = Up({**_stack_environ(tmp_path), "SCRIBE_GATEWAY_HOST": "0.0.0.0"})  # noqa: S104 (the point)
    try:
        warning = up.wait_for("stderr", "warning:", timeout=5)
        assert "listens on 0.0.0.0 without accounts (SCRIBE_AUTH=none): anyone who can reach" in warning
        assert "SCRIBE_AUTH=keys" in warning and up.ready().startswith(b"HTTP/1.1 200")
        assert up.stop(signal.SIGTERM) == 0
    finally:
        up.end()
        _stop_leftovers(tmp_path)


def test_scribe_all_stopped_by_sigterm_drains_and_stops_its_servers(tmp_path: Path) -> None:
    everything = Scribe("all", env=_stack_environ(tmp_path))
    try:
        everything.wait_for("stderr", "services running")
        assert everything.stop(signal.SIGTERM) == 0
        everything.wait_for("stderr", "draining in-flight messages")
        _assert_nothing_left(tmp_path)
    finally:
        everything.end()
        _stop_leftovers(tmp_path)


@pytest.mark.parametrize(
    ("sig", "after"),
    [
        (signal.SIGTERM, "job started"),
        # Just before PostgreSQL's pool opens, where a cancellation is often lost: the stop is repeated.
        (signal.SIGTERM, "bucket created"),
        (signal.SIGINT, "job started"),
    ],
    ids=["sigterm-mid-job", "sigterm-while-starting", "ctrl-c-mid-job"],
)
def test_scribe_transcribe_stopped_by_a_signal_removes_its_servers_and_folders(
    sig: signal.Signals, after: str, tmp_path: Path
) -> None:
    """SIGTERM as Ctrl-C: its NATS folder (in the temporary directory) is removed and PostgreSQL stopped.

    The OpenAI API's address is one where nothing listens, so the job stays in progress, retrying.
    """
    run = Scribe("transcribe", "--verbose", str(AUDIO / "sherpa_yue-6.wav"), env=_stack_environ(tmp_path))
    try:
        run.wait_for("stderr", after)
        assert any(path.name.startswith("scribe-nats-") for path in (tmp_path / "tmp").iterdir())
        assert run.stop(sig) == 128 + sig, run.output["stderr"][-3:]
        assert "Traceback" not in "".join(run.output["stderr"])
        _assert_nothing_left(tmp_path)
    finally:
        run.end()
        _stop_leftovers(tmp_path)

"""Entry points as an operator starts them: a bad setting or a missing server URL stops them at start (exit 2)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.helpers import scribe_cli

pytestmark = pytest.mark.integration


def _environ(**values: str) -> dict[str, str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("SCRIBE_")}
    return {**clean, **values}


def test_scribe_stops_at_start_on_a_bad_setting(tmp_path: Path) -> None:
    done = scribe_cli("transcribe", str(tmp_path / "clip.wav"), env=_environ(SCRIBE_CHUNK_CODEC="mp3"), timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "scribe: SCRIBE_CHUNK_CODEC='mp3' is not allowed: choose one of flac, opus"


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


def test_scribe_servers_prints_the_urls_separate_services_share(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "scribe", "servers"],
        env=_environ(SCRIBE_DATA_DIR=str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        lines = [server.stdout.readline().strip() for _ in range(2)]
        urls = dict(line.split("=", 1) for line in lines)
        nats_url = urlsplit(urls["SCRIBE_NATS_URL"])
        socket.create_connection((nats_url.hostname, nats_url.port), timeout=5).close()
        assert asyncio.run(_select_one(urls["SCRIBE_DATABASE_URL"])) == 1
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == 0


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
            http.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b"".join(iter(lambda: http.recv(4096), b""))
        assert answer.startswith(b"HTTP/1.1 200") and b'"database":"ok"' in answer, answer
        with socket.create_connection(("127.0.0.1", port), timeout=5) as http:
            http.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            page = b"".join(iter(lambda: http.recv(4096), b""))
        assert page.startswith(b"HTTP/1.1 200") and b'<form id="start"' in page, page[:200]
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0

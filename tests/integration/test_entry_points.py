"""Entry points as an operator starts them: a bad setting or a missing server URL stops them at start (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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

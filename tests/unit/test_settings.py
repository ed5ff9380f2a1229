"""Settings: typed, checked when made, and a bad one stops every entry point at start (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import Settings, SettingsError
from core.topology import Topology
from tests.helpers import scribe_cli


def test_defaults_are_valid_and_typed() -> None:
    settings = Settings.from_env({})
    assert (settings.asr_backend, settings.chunk_codec, settings.log_format, settings.log_level) == (
        "local",
        "flac",
        "auto",
        "INFO",
    )


def test_values_are_read_by_type() -> None:
    settings = Settings.from_env(
        {
            "SCRIBE_CHUNK_CODEC": "Opus",
            "SCRIBE_LOG_LEVEL": "debug",
            "SCRIBE_MAX_DELIVER": "7",
            "SCRIBE_ACK_WAIT_S": "12.5",
            "SCRIBE_ALLOW_PRIVATE_URLS": "yes",
            "SCRIBE_DATA_DIR": "~/scribe",
            "SCRIBE_PRICES": "whisper-1=0.01",
        }
    )
    assert (settings.chunk_codec, settings.log_level, settings.max_deliver, settings.ack_wait_s) == (
        "opus",
        "DEBUG",
        7,
        12.5,
    )
    assert settings.allow_private_urls is True
    assert settings.data_dir == Path("~/scribe").expanduser()
    assert settings.price_per_minute("whisper-1") == 0.01 and settings.price_per_minute("gpt-4o-transcribe") == 0.006


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SCRIBE_CHUNK_CODEC": "mp3"}, "SCRIBE_CHUNK_CODEC='mp3' is not allowed: choose one of flac, opus"),
        ({"SCRIBE_ASR_BACKEND": "azure"}, "SCRIBE_ASR_BACKEND='azure' is not allowed: choose one of local, openai"),
        ({"SCRIBE_LOG_FORMAT": "xml"}, "SCRIBE_LOG_FORMAT='xml' is not allowed: choose one of auto, json, text"),
        ({"SCRIBE_LOG_LEVEL": "loud"}, "SCRIBE_LOG_LEVEL='loud' is not allowed: choose one of DEBUG, INFO"),
        ({"SCRIBE_MAX_DELIVER": "five"}, "SCRIBE_MAX_DELIVER='five' is not a whole number"),
        ({"SCRIBE_MAX_DELIVER": "0"}, "SCRIBE_MAX_DELIVER=0 must be above 0"),
        ({"SCRIBE_ALLOW_PRIVATE_URLS": "maybe"}, "SCRIBE_ALLOW_PRIVATE_URLS='maybe' is not true or false"),
        ({"SCRIBE_CHUNK_MIN_S": "70"}, "SCRIBE_CHUNK_MIN_S=70.0 must not be above SCRIBE_CHUNK_MAX_S=60.0"),
        ({"SCRIBE_ASR_WORKERS": "-1"}, "SCRIBE_ASR_WORKERS=-1 must not be negative"),
        ({"SCRIBE_GATEWAY_PORT": "70000"}, "SCRIBE_GATEWAY_PORT=70000 is not a port"),
        ({"SCRIBE_PRICES": "whisper-1"}, "SCRIBE_PRICES item 'whisper-1' is not model=usd_per_minute"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_it_may_be(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(environ)
    assert str(info.value).startswith(message)


def test_settings_made_in_code_are_checked_too() -> None:
    with pytest.raises(SettingsError, match="SCRIBE_CHUNK_CODEC='wav'"):
        Settings().with_(chunk_codec="wav")


def test_the_transcriber_consumer_takes_its_limits_from_the_settings() -> None:
    topology = Topology.from_settings(Settings(ack_wait_s=12.0, max_deliver=7))
    assert (topology.transcriber.ack_wait_s, topology.transcriber.max_deliver) == (12.0, 7)
    assert topology.transcriber.heartbeat_s == 3.0
    assert {consumer.stream.name for consumer in topology.consumers} == {
        "SCRIBE_JOBS",
        "SCRIBE_CHUNKS",
        "SCRIBE_SEGMENTS",
    }
    assert all(consumer.filter_subject in consumer.stream.subjects for consumer in topology.consumers)


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

"""Settings: typed, and checked when made, naming the variable and what it may be."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings, SettingsError
from core.topology import Topology


def test_defaults_are_valid_and_typed() -> None:
    settings = Settings.from_env({})
    assert (settings.asr_backend, settings.chunk_codec, settings.log_format, settings.log_level) == (
        "local",
        "auto",
        "auto",
        "INFO",
    )
    # Chunks: FLAC for the local model, Opus (a quarter of the bytes, the same CER) for an API.
    assert (settings.bus_codec, settings.with_(asr_backend="openai").bus_codec) == ("flac", "opus")
    assert settings.with_(asr_backend="openai", chunk_codec="flac").bus_codec == "flac"


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
        ({"SCRIBE_CHUNK_CODEC": "mp3"}, "SCRIBE_CHUNK_CODEC='mp3' is not allowed: choose one of auto, flac, opus"),
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


def test_an_empty_choice_means_its_default() -> None:
    settings = Settings.from_env({"SCRIBE_LOG_FORMAT": "", "SCRIBE_CHUNK_CODEC": " "})
    assert (settings.log_format, settings.chunk_codec) == ("auto", "auto")


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
        "SCRIBE_EVENTS",  # the gateways' webhooks
        "SCRIBE_ALERTS",  # the gateways' cost alerts
        "SCRIBE_LIVE",  # the transcribers' live sessions
    }
    assert topology.live.service == "transcriber"  # a transcriber process brings it to its definition
    assert all(consumer.filter_subject in consumer.stream.subjects for consumer in topology.consumers)

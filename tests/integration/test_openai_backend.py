"""The OpenAI backend against a FAKE OpenAI HTTP server (tests/fake_openai.py).

The paid API cannot be reached from here; the fake speaks its wire protocol on a real
local socket and answers with the real local Whisper model, so the real openai-python
client, httpx and our error mapping all run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from core.messages import MAX_LINE_CHARS, MAX_LINE_SECONDS
from core.settings import Settings
from core.text import SENTENCE_ENDS
from romanizer.romanize import Romanizer
from romanizer.service import romanize_chunk
from tests.fake_openai import FakeOpenAITranscriptionServer, encode_ogg_opus, whisper_model_for_tests
from tests.paths import AUDIO
from transcriber.asr import usage_for
from transcriber.backends import create_backend
from transcriber.errors import PermanentAsrError, TransientAsrError
from transcriber.openai_api import OpenAIBackend

pytestmark = pytest.mark.integration

CLIP = AUDIO / "sherpa_yue-4.wav"  # 3.2 s: 香港嘅消費市場從此不一樣
SENTENCES_CLIP = AUDIO / "sherpa_qwen3asr_cantonese.wav"  # 16.5 s, six sentences: 今次尋尋覓覓終於搵到...拜拜！


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAITranscriptionServer]:
    with FakeOpenAITranscriptionServer(whisper_model_for_tests()) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_fake(fake_openai: FakeOpenAITranscriptionServer) -> None:
    fake_openai.reset()


@pytest.fixture(scope="module")
def chunk() -> tuple[bytes, float]:
    return encode_ogg_opus(CLIP)


def _settings(fake: FakeOpenAITranscriptionServer, **changes: object) -> Settings:
    base = Settings(
        asr_backend="openai",
        openai_api_key=fake.api_key,
        openai_base_url=fake.base_url,
        openai_timeout_s=20.0,
    )
    return base.with_(**changes)


async def test_openai_backend_against_fake_openai_http_server_returns_segments(
    fake_openai: FakeOpenAITranscriptionServer, chunk: tuple[bytes, float]
) -> None:
    audio, duration = chunk
    settings = _settings(fake_openai)
    backend = create_backend(settings)
    try:
        result = await backend.transcribe(audio, duration=duration, filename="job-1-0.ogg")
    finally:
        await backend.close()
    text = "".join(s.text for s in result.segments)
    assert "香港" in text
    assert result.segments and all(0.0 <= s.start <= s.end <= duration for s in result.segments)
    assert (result.backend, result.model, result.billed_seconds) == ("openai", "whisper-1", 3.0)
    assert usage_for(result, settings).cost_usd == pytest.approx(3.0 / 60 * 0.006)
    (request,) = fake_openai.requests
    assert request.authorized and request.status == 200
    assert request.filename == "job-1-0.ogg" and request.file_size == len(audio)
    assert request.fields["language"] == "zh"
    assert request.fields["prompt"] == settings.asr_prompt
    assert request.fields["response_format"] == "verbose_json"
    assert request.timestamp_granularities == ["segment", "word"]
    words = [w for s in result.segments for w in s.words]
    assert words and all(w.probability is None for w in words)  # OpenAI's words carry no probability
    assert "".join(w.text for w in words).replace(" ", "") == text.replace(" ", "")


async def test_openai_backend_against_fake_openai_http_server_json_only_model_lines_are_sentences_in_the_chunk(
    fake_openai: FakeOpenAITranscriptionServer,
) -> None:
    audio, duration = encode_ogg_opus(SENTENCES_CLIP)
    backend = OpenAIBackend(_settings(fake_openai, openai_model="gpt-4o-mini-transcribe"))
    try:
        result = await backend.transcribe(audio, duration=duration)
    finally:
        await backend.close()
    assert fake_openai.requests[0].fields["response_format"] == "json"  # text alone: no times came back
    # one segment per sentence (not one spanning the chunk), timed inside the chunk, in order
    assert len(result.segments) >= 3
    times = [t for s in result.segments for w in s.words for t in (w.start, w.end)]
    assert times == sorted(times) and 0.0 <= times[0] and times[-1] <= duration
    for segment in result.segments:
        assert not any(mark in segment.text[:-1] for mark in SENTENCE_ENDS)
        assert segment.words and segment.start == segment.words[0].start and segment.end == segment.words[-1].end
    lines = romanize_chunk(Romanizer(), result.segments, chunk_seq=0, first_seq=0, previous=[])
    assert len(lines) >= len(result.segments)
    assert all(
        sum(c.isalnum() for c in line.text) <= MAX_LINE_CHARS and line.end - line.start <= MAX_LINE_SECONDS
        for line in lines
    )
    assert all(0.0 <= line.start <= line.end <= duration for line in lines)


async def test_openai_backend_against_fake_openai_http_server_429_is_transient_with_retry_after(
    fake_openai: FakeOpenAITranscriptionServer, chunk: tuple[bytes, float]
) -> None:
    fake_openai.fail_next("rate_limit", retry_after=7)
    backend = OpenAIBackend(_settings(fake_openai))
    try:
        with pytest.raises(TransientAsrError) as info:
            await backend.transcribe(chunk[0], duration=chunk[1])
        assert (info.value.status_code, info.value.retry_after) == (429, 7.0)
        # the failure was one-off: the next call succeeds (no retries inside the backend)
        assert (await backend.transcribe(chunk[0], duration=chunk[1])).segments
    finally:
        await backend.close()
    assert [r.status for r in fake_openai.requests] == [429, 200]


async def test_openai_backend_against_fake_openai_http_server_500_is_transient(
    fake_openai: FakeOpenAITranscriptionServer, chunk: tuple[bytes, float]
) -> None:
    fake_openai.fail_next("server_error")
    backend = OpenAIBackend(_settings(fake_openai))
    try:
        with pytest.raises(TransientAsrError) as info:
            await backend.transcribe(chunk[0], duration=chunk[1])
    finally:
        await backend.close()
    assert info.value.status_code == 500
    assert len(fake_openai.requests) == 1  # max_retries=0: the queue retries, not the client


async def test_openai_backend_against_fake_openai_http_server_wrong_key_is_permanent(
    fake_openai: FakeOpenAITranscriptionServer, chunk: tuple[bytes, float]
) -> None:
    backend = OpenAIBackend(_settings(fake_openai, openai_api_key="sk-wrong-key"))
    try:
        with pytest.raises(PermanentAsrError) as info:
            await backend.transcribe(chunk[0], duration=chunk[1])
    finally:
        await backend.close()
    assert info.value.status_code == 401
    assert "SCRIBE_OPENAI_API_KEY" in info.value.reason
    assert not fake_openai.requests[0].authorized


async def test_openai_backend_against_fake_openai_http_server_400_is_permanent(
    fake_openai: FakeOpenAITranscriptionServer, chunk: tuple[bytes, float]
) -> None:
    fake_openai.fail_next("bad_request")
    backend = OpenAIBackend(_settings(fake_openai))
    try:
        with pytest.raises(PermanentAsrError) as info:
            await backend.transcribe(chunk[0], duration=chunk[1])
        assert info.value.status_code == 400
        # and a file that is not audio at all is refused the same way, by the fake's real decoder
        with pytest.raises(PermanentAsrError) as info2:
            await backend.transcribe(b"<html>not audio</html>", duration=3.0, filename="page.ogg")
        assert info2.value.status_code == 400
    finally:
        await backend.close()


async def test_openai_backend_against_fake_openai_http_server_hang_is_transient_timeout(
    fake_openai: FakeOpenAITranscriptionServer, chunk: tuple[bytes, float]
) -> None:
    fake_openai.fail_next("hang")
    backend = OpenAIBackend(_settings(fake_openai, openai_timeout_s=0.5))
    started = time.monotonic()
    try:
        with pytest.raises(TransientAsrError) as info:
            await backend.transcribe(chunk[0], duration=chunk[1])
    finally:
        await backend.close()
    assert time.monotonic() - started < 5.0
    assert info.value.status_code is None and "0.5s" in info.value.reason


async def test_openai_backend_against_fake_openai_http_server_with_borrowed_http_client(
    fake_openai: FakeOpenAITranscriptionServer, chunk: tuple[bytes, float]
) -> None:
    async with httpx.AsyncClient() as client:
        backend = create_backend(_settings(fake_openai), http_client=client)
        result = await backend.transcribe(chunk[0], duration=chunk[1])
        await backend.close()
        assert not client.is_closed
    assert result.segments

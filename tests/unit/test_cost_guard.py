"""The cost guard without I/O: the circuit breaker on a fake clock, the router's choice when the paid API
fails (the API is a MOCK HTTP transport standing in for the paid OpenAI API), the fallback settings, and
the chunk cache's key."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from core.settings import Settings, SettingsError
from tests.fake_openai import encode_ogg_opus
from tests.paths import AUDIO
from tests.unit import test_backends
from transcriber.asr import AsrBackend
from transcriber.breaker import CircuitBreaker, RateLimitPause
from transcriber.cache import audio_digest, chunk_key
from transcriber.errors import TransientAsrError
from transcriber.fallback import Router
from transcriber.openai_api import OpenAIBackend

CLIP = AUDIO / "sherpa_yue-4.wav"  # 3.2 s


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the circuit breaker (fake clock) ---------------------------------------------------------


def test_the_circuit_opens_after_five_failures_within_a_minute_and_closes_after_a_good_trial() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(clock=clock)
    for _ in range(4):
        assert breaker.allow()
        breaker.failed()
        clock.now += 10
    assert breaker.state == "closed" and breaker.allow()
    breaker.failed()  # the fifth within 60 s
    assert breaker.state == "open" and not breaker.allow()
    assert breaker.retry_in() == pytest.approx(30.0)
    clock.now += 29.9
    assert not breaker.allow()
    clock.now += 0.1  # the cool-down is over: one trial call, and only one
    assert breaker.state == "half_open"
    assert breaker.allow()
    assert not breaker.allow()
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


def test_a_failed_trial_opens_the_circuit_again_and_a_lost_one_is_replaced() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=2, window_s=60, cool_down_s=30, clock=clock)
    breaker.failed()
    breaker.failed()
    clock.now += 30
    assert breaker.allow()  # the trial
    breaker.failed()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 30
    assert breaker.allow()  # a trial that never reports (its chunk came from the cache) ...
    clock.now += 29
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()  # ... is replaced after a cool-down


def test_failures_spread_over_more_than_the_window_never_open_the_circuit() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(clock=clock)
    for _ in range(20):
        breaker.failed()
        clock.now += 15.1  # four in any 60 s
    assert breaker.state == "closed"


# --- the router when the paid API fails (mock transport) --------------------------------------


_settings = test_backends._settings  # the OpenAI backend on a mock transport's address


def _mock_openai(statuses: list[int]) -> httpx.AsyncClient:
    """A MOCK of the paid OpenAI API answering each call with the next status (500s, 429s, then 200s)."""

    def handler(request: httpx.Request) -> httpx.Response:
        status = statuses.pop(0) if statuses else 200
        if status == 200:
            return httpx.Response(
                200, json={"text": "你好", "segments": [], "usage": {"type": "duration", "seconds": 3}}
            )
        body = {"error": {"message": "mock failure", "type": "server_error", "param": None, "code": None}}
        return httpx.Response(status, json=body, headers={"retry-after": "1"} if status == 429 else {})

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def _never_load(settings: Settings) -> AsrBackend:
    raise AssertionError("the local model was loaded though no chunk needed it")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def _chunk(router: Router) -> str:
    """Route one chunk and call what was chosen: the model that answered."""
    choice = await router.choose()
    result = await router.call(choice, lambda: choice.backend.transcribe(b"OggS", duration=3.0))
    return result.model


async def test_with_a_mock_openai_failing_the_circuit_sends_chunks_to_the_cheaper_model_then_back(
    clock: FakeClock,
) -> None:
    statuses = [500] * 5
    async with _mock_openai(statuses) as http:
        settings = _settings(fallback="model:gpt-4o-mini-transcribe")
        primary = OpenAIBackend(settings, http_client=http)
        router = Router(settings, None, primary, breaker=CircuitBreaker(clock=clock), load_local=_never_load)
        for _ in range(5):
            with pytest.raises(TransientAsrError):
                await _chunk(router)
        assert router.breaker.state == "open"
        choice = await router.choose()
        assert (choice.backend.name, choice.backend.model, choice.paid) == ("openai", "gpt-4o-mini-transcribe", False)
        assert choice.warning == (
            "The speech API (whisper-1) kept failing, so part of this job was transcribed by "
            "gpt-4o-mini-transcribe instead of whisper-1."
        )
        clock.now += 30
        assert await _chunk(router) == "whisper-1"  # the trial succeeds: closed again
        assert router.breaker.state == "closed"
        assert (await router.choose()).backend is primary
        await router.close()


async def test_with_a_mock_openai_rate_limiting_the_circuit_stays_closed(clock: FakeClock) -> None:
    async def sleep(seconds: float) -> None:  # each call waits out the pause of the 429 before it, on the fake clock
        clock.now += seconds

    async with _mock_openai([429] * 8) as http:
        settings = _settings()
        router = Router(
            settings,
            None,
            OpenAIBackend(settings, http_client=http),
            breaker=CircuitBreaker(clock=clock),
            pause=RateLimitPause(clock=clock, sleep=sleep),
            rate_limit_tries=1,
        )
        for _ in range(8):
            with pytest.raises(TransientAsrError) as info:
                await _chunk(router)
            assert info.value.retry_after == 1.0
        assert router.breaker.state == "closed"


async def test_with_refuse_an_open_circuit_makes_chunks_wait_for_it(clock: FakeClock) -> None:
    async with _mock_openai([500] * 5) as http:
        settings = _settings(fallback="refuse")
        router = Router(
            settings,
            None,
            OpenAIBackend(settings, http_client=http),
            breaker=CircuitBreaker(clock=clock),
            load_local=_never_load,
        )
        for _ in range(5):
            with pytest.raises(TransientAsrError):
                await _chunk(router)
        clock.now += 10
        with pytest.raises(TransientAsrError) as info:
            await router.choose()
        assert info.value.retry_after == pytest.approx(20.0)
        assert "keeps failing" in info.value.reason


async def test_the_local_fallback_is_not_loaded_while_the_paid_api_works(clock: FakeClock) -> None:
    async with _mock_openai([]) as http:
        settings = _settings(fallback="local")
        router = Router(settings, None, OpenAIBackend(settings, http_client=http), load_local=_never_load)
        assert [await _chunk(router) for _ in range(3)] == ["whisper-1"] * 3


# --- settings ---------------------------------------------------------------------------------


def test_the_fallback_is_local_a_model_or_refuse() -> None:
    assert Settings.from_env({}).fallback_kind == "local"
    assert Settings.from_env({}).chunk_cache is True and Settings.from_env({}).daily_budget_usd == 0
    cheaper = Settings.from_env({"SCRIBE_FALLBACK": "model:gpt-4o-mini-transcribe", "SCRIBE_DAILY_BUDGET_USD": "5"})
    assert (cheaper.fallback_kind, cheaper.fallback_model, cheaper.daily_budget_usd) == (
        "model",
        "gpt-4o-mini-transcribe",
        5.0,
    )
    assert Settings.from_env({"SCRIBE_FALLBACK": "Refuse"}).fallback_kind == "refuse"
    assert Settings.from_env({"SCRIBE_CHUNK_CACHE": "false"}).chunk_cache is False
    for bad in ("cheap", "model:", "local-ish"):
        with pytest.raises(SettingsError, match="SCRIBE_FALLBACK"):
            Settings.from_env({"SCRIBE_FALLBACK": bad})
    with pytest.raises(SettingsError, match="SCRIBE_DAILY_BUDGET_USD"):
        Settings.from_env({"SCRIBE_DAILY_BUDGET_USD": "-1"})


# --- the chunk cache's key --------------------------------------------------------------------


@pytest.fixture(scope="module")
def encoded_twice() -> Iterator[tuple[bytes, bytes]]:
    first, _ = encode_ogg_opus(CLIP)
    second, _ = encode_ogg_opus(CLIP)
    yield first, second


def test_the_same_audio_encoded_twice_has_one_digest(encoded_twice: tuple[bytes, bytes]) -> None:
    first, second = encoded_twice
    assert first != second  # Ogg gives each file a random stream serial
    assert audio_digest("opus", first) == audio_digest("opus", second)
    shorter, _ = encode_ogg_opus(CLIP, max_seconds=2.0)
    assert audio_digest("opus", shorter) != audio_digest("opus", first)
    assert audio_digest("opus", b"not audio") != audio_digest("opus", b"not audio either")


def test_the_key_changes_with_whatever_changes_the_answer() -> None:
    digest = b"\1" * 32
    whisper = OpenAIBackend(_settings())
    keys = {
        chunk_key(digest, whisper, None),
        chunk_key(digest, whisper, "陳大文"),
        chunk_key(digest, OpenAIBackend(_settings(openai_model="gpt-4o-transcribe")), None),
        chunk_key(digest, OpenAIBackend(_settings(asr_prompt="粵語。")), None),
        chunk_key(digest, OpenAIBackend(_settings(openai_base_url="http://other.invalid/v1")), None),
        chunk_key(digest, whisper, None, job_id="job-1"),
        chunk_key(b"\2" * 32, whisper, None),
    }
    assert len(keys) == 7
    assert chunk_key(digest, whisper, None) == chunk_key(digest, OpenAIBackend(_settings()), None)
    options = whisper.answer_options("陳大文")
    assert options["prompt"].endswith(" 陳大文") and options["model"] == "whisper-1"
    assert json.dumps(options)  # plain data

"""The paid API kept busy at its limit, without I/O: chunk lengths and calls in flight per backend, the cluster's
limit on the chunks consumer, the jitter on a Retry-After, and the pause a rate limit puts on a process's calls
(the API is a MOCK HTTP transport standing in for the paid OpenAI API; the clock is fake)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable

import httpx
import pytest

from core.settings import Settings, SettingsError
from core.topology import Topology
from core.worker import jittered
from tests.unit import test_backends
from transcriber.asr import AsrResult
from transcriber.breaker import CircuitBreaker, RateLimitPause
from transcriber.errors import TransientAsrError
from transcriber.fallback import Router
from transcriber.openai_api import OpenAIBackend

# --- settings and topology --------------------------------------------------------------------


def test_chunk_lengths_depend_on_the_backend_unless_set() -> None:
    assert Settings.from_env({}).chunk_lengths == (40.0, 60.0)
    assert Settings.from_env({"SCRIBE_ASR_BACKEND": "openai"}).chunk_lengths == (10.0, 20.0)
    assert Settings().with_(asr_backend="openai").chunk_lengths == (10.0, 20.0)  # not the local ones, kept
    explicit = {"SCRIBE_ASR_BACKEND": "openai", "SCRIBE_CHUNK_MIN_S": "8", "SCRIBE_CHUNK_MAX_S": "30"}
    assert Settings.from_env(explicit).chunk_lengths == (8.0, 30.0)
    assert Settings.from_env({"SCRIBE_ASR_BACKEND": "openai", "SCRIBE_CHUNK_MAX_S": "30"}).chunk_lengths == (10.0, 30.0)


def test_a_shortest_chunk_above_the_backend_s_longest_names_both() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"SCRIBE_ASR_BACKEND": "openai", "SCRIBE_CHUNK_MIN_S": "25"})
    assert str(info.value) == (
        "SCRIBE_CHUNK_MIN_S=25.0 must not be above SCRIBE_CHUNK_MAX_S=20.0 (the openai backend's default)"
    )
    with pytest.raises(SettingsError, match="SCRIBE_API_MAX_IN_FLIGHT=0 must be above 0"):
        Settings.from_env({"SCRIBE_API_MAX_IN_FLIGHT": "0"})


def test_with_an_api_one_transcriber_may_use_the_whole_cluster_s_limit_and_the_consumer_enforces_it() -> None:
    openai = Settings.from_env({"SCRIBE_ASR_BACKEND": "openai"})
    assert (openai.api_max_in_flight, openai.in_flight) == (32, 32)
    assert Topology.from_settings(openai).transcriber.max_ack_pending == 32

    limited = Settings.from_env({"SCRIBE_ASR_BACKEND": "openai", "SCRIBE_API_MAX_IN_FLIGHT": "12"})
    assert limited.in_flight == 12 and Topology.from_settings(limited).transcriber.max_ack_pending == 12
    # A process may be given fewer; the cluster's limit stays what it is.
    fewer = limited.with_(max_in_flight=4)
    assert fewer.in_flight == 4 and Topology.from_settings(fewer).transcriber.max_ack_pending == 12


def test_the_local_backend_keeps_its_workers_and_its_consumer() -> None:
    local = Settings.from_env({"SCRIBE_ASR_WORKERS": "2", "SCRIBE_API_MAX_IN_FLIGHT": "12"})
    assert local.in_flight == 2 and Topology.from_settings(local).transcriber.max_ack_pending == 256


# --- a Retry-After, with jitter ---------------------------------------------------------------


def test_a_retry_after_is_honoured_with_a_jitter_never_below_it() -> None:
    random.seed(18)
    for retry_after in (0.0, 0.5, 2.0, 30.0):
        delays = [jittered(retry_after) for _ in range(200)]
        assert min(delays) >= retry_after
        assert max(delays) <= retry_after + max(1.0, retry_after / 2)
        assert max(delays) - min(delays) > 0.5 * max(1.0, retry_after / 2)  # spread, not all at once


# --- the pause a rate limit puts on this process's calls (fake clock) -------------------------


class FakeTime:
    """A clock that only moves when slept on, and the sleeps it was asked for."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wakes = self.now + seconds
        self.sleeps.append(seconds)
        await asyncio.sleep(0)  # others may start sleeping meanwhile
        self.now = max(self.now, wakes)


async def test_the_pause_holds_calls_until_the_retry_after_and_a_later_429_lengthens_it() -> None:
    time = FakeTime()
    pause = RateLimitPause(clock=time, sleep=time.sleep)
    await pause.wait()
    assert time.sleeps == []  # no rate limit: calls go at once
    pause.hold(2.0)
    pause.hold(0.5)  # a shorter Retry-After does not shorten it
    assert pause.remaining() == 2.0
    await pause.wait()
    assert len(time.sleeps) == 1 and 2.0 <= time.sleeps[0] <= 3.0 and pause.remaining() == 0


async def test_a_pause_lengthened_while_calls_wait_keeps_them_waiting() -> None:
    time = FakeTime()

    async def sleep_and_meet_another_429(seconds: float) -> None:
        await time.sleep(seconds)
        if len(time.sleeps) == 1:
            pause.hold(5.0)

    pause = RateLimitPause(clock=time, sleep=sleep_and_meet_another_429)
    pause.hold(1.0)
    await pause.wait()
    assert len(time.sleeps) == 2 and sum(time.sleeps) >= 1.0 + 5.0


_settings = test_backends._settings  # the OpenAI backend on a mock transport's address


def _mock_openai(statuses: list[int], retry_after: str = "3") -> httpx.AsyncClient:
    """A MOCK of the paid OpenAI API answering each call with the next status (429s, 500s, then 200s)."""

    def handler(request: httpx.Request) -> httpx.Response:
        status = statuses.pop(0) if statuses else 200
        if status == 200:
            return httpx.Response(
                200, json={"text": "你好", "segments": [], "usage": {"type": "duration", "seconds": 3}}
            )
        body = {"error": {"message": "mock failure", "type": "requests", "param": None, "code": None}}
        return httpx.Response(status, json=body, headers={"retry-after": retry_after} if status == 429 else {})

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_after_a_429_with_retry_after_the_next_paid_calls_wait_for_it_and_a_500_does_not_pause() -> None:
    time = FakeTime()
    async with _mock_openai([429, 500]) as http:
        settings = _settings()
        router = Router(
            settings,
            None,
            OpenAIBackend(settings, http_client=http),
            breaker=CircuitBreaker(clock=time),
            pause=RateLimitPause(clock=time, sleep=time.sleep),
            rate_limit_tries=1,  # the 429 goes back to the queue at once: what the next calls do
        )

        async def call() -> str:
            choice = await router.choose()
            return (await router.call(choice, lambda: choice.backend.transcribe(b"OggS", duration=3.0))).model

        with pytest.raises(TransientAsrError) as info:
            await call()
        assert info.value.status_code == 429 and info.value.retry_after == 3.0
        assert router.pause.remaining() == 3.0 and time.sleeps == []
        # Every call of this process waits for the pause, together: one 429 is enough to hold them all.
        with pytest.raises(TransientAsrError) as info:
            await asyncio.gather(call(), call())
        assert info.value.status_code == 500
        assert len(time.sleeps) == 2 and all(s >= 3.0 for s in time.sleeps)
        assert router.pause.remaining() == 0  # a server error is the breaker's, not a pause
        before = len(time.sleeps)
        assert await call() == "whisper-1" and len(time.sleeps) == before


async def test_a_chunk_waits_out_429s_in_place_and_goes_back_to_the_queue_only_after_its_tries() -> None:
    time = FakeTime()
    async with _mock_openai([429, 429, 200, 429, 429, 429]) as http:
        settings = _settings()
        router = Router(
            settings,
            None,
            OpenAIBackend(settings, http_client=http),
            breaker=CircuitBreaker(clock=time),
            pause=RateLimitPause(clock=time, sleep=time.sleep),
            rate_limit_tries=3,
        )
        choice = await router.choose()

        def send() -> Awaitable[AsrResult]:
            return choice.backend.transcribe(b"OggS", duration=3.0)

        # Two 429s, then an answer: one call's result, after waiting out each Retry-After (3 s) in place.
        assert (await router.call(choice, send)).model == "whisper-1"
        assert len(time.sleeps) == 2 and all(s >= 3.0 for s in time.sleeps)
        # Three more: the third try gives up, and the chunk goes back to the queue with the rate limit.
        with pytest.raises(TransientAsrError) as info:
            await router.call(choice, send)
        assert info.value.status_code == 429 and len(time.sleeps) == 4
        assert router.breaker.state == "closed"

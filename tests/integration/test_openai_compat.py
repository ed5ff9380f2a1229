"""The OpenAI-compatible endpoint, driven by the real ``openai`` package against a real gateway on a
port and the real pipeline (local Whisper base): the SDK works unchanged with ``base_url`` pointing here.

One test makes every call on one pipeline; a second, with the openai backend against a FAKE of the paid
API, checks that a request's prompt reaches the ASR call.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import openai
import pytest

from core import bus
from core.messages import Cancelled, Failed, Final
from core.process import Runtime
from scribe import client
from scribe.runtime import SERVICES, runtime
from store import repo
from tests.fake_openai import FakeOpenAITranscriptionServer, whisper_model_for_tests
from tests.integration.test_gateway_hostile import serving
from tests.paths import AUDIO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIP = AUDIO / "sherpa_yue-4.wav"  # 3.2 s: 香港嘅消費市場從此不一樣
LONG = AUDIO / "ktdc_meeting_2025-01-06_other_matters.mp3"  # 4'38": still running when its client leaves


@contextlib.asynccontextmanager
async def pipeline_and_sdk(settings, nats_url, database_url) -> AsyncIterator[tuple[Runtime, openai.AsyncOpenAI]]:
    # Short chunks: a job cancelled mid-way leaves little in flight for the services to finish as they stop.
    cfg = settings.with_(nats_url=nats_url, database_url=database_url, chunk_min_s=8.0, chunk_max_s=16.0)
    async with runtime(cfg) as services, serving(cfg) as (host, _):
        await services.start(SERVICES)
        async with openai.AsyncOpenAI(base_url=f"http://{host}/v1", api_key="unused", max_retries=0) as sdk:
            yield services, sdk


async def _job_with_prompt(pool: asyncpg.Pool, prompt: str) -> str:
    """The id of the job a request with this (unique) prompt made, once it exists."""
    async with asyncio.timeout(30):
        while True:
            for job in await repo.recent_jobs(pool, limit=20):
                if job.options.prompt == prompt:
                    return job.id
            await asyncio.sleep(0.1)


async def _ending(rt: Runtime, job_id: str) -> Final | Failed | Cancelled:
    async with asyncio.timeout(30), contextlib.aclosing(client.follow(rt.js, job_id)) as events:
        async for event in events:
            if isinstance(event, Final | Failed | Cancelled):
                return event
    raise AssertionError("the job's events ended without an ending")


async def test_the_openai_sdk_transcribes_through_the_gateway_in_every_format(
    settings, nats_url, database_url, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("這不是錄音。\n" * 20, encoding="utf-8")
    async with pipeline_and_sdk(settings, nats_url, database_url) as (rt, sdk):
        models = [model async for model in sdk.models.list()]
        plain = await sdk.audio.transcriptions.create(model="whisper-1", file=CLIP, language="yue")
        text = await sdk.audio.transcriptions.create(
            model=models[0].id, file=CLIP, response_format="text", language="zh-HK", temperature=0.4
        )
        srt = await sdk.audio.transcriptions.create(model="whisper-1", file=CLIP, response_format="srt")
        vtt = await sdk.audio.transcriptions.create(
            model="whisper-1", file=CLIP, response_format="vtt", extra_body={"romanization": "jyutping"}
        )
        verbose = await sdk.audio.transcriptions.create(
            model="whisper-1",
            file=CLIP,
            response_format="verbose_json",
            timestamp_granularities=["segment"],
            prompt="香港 消費",
            language="YUE-Hant",
        )
        stream = await sdk.audio.transcriptions.create(model="whisper-1", file=CLIP, stream=True)
        events = [event async for event in stream]

        # refusals: the SDK raises its own errors, carrying our sentence
        with pytest.raises(openai.BadRequestError) as english:
            await sdk.audio.transcriptions.create(model="whisper-1", file=CLIP, language="en")
        timed = await sdk.audio.transcriptions.create(
            model="whisper-1", file=CLIP, response_format="verbose_json", timestamp_granularities=["word", "segment"]
        )
        with pytest.raises(openai.BadRequestError) as unknown_model:
            await sdk.audio.transcriptions.create(model="gpt-4o-transcribe", file=CLIP)
        with pytest.raises(openai.BadRequestError) as not_media:
            await sdk.audio.transcriptions.create(model="whisper-1", file=notes)
        with pytest.raises(openai.APIError) as not_media_streamed:
            async for _ in await sdk.audio.transcriptions.create(model="whisper-1", file=notes, stream=True):
                pass

        # a client that leaves cancels its job, waiting for the answer or reading the stream
        waiting_prompt = f"waiting {uuid.uuid4().hex}"
        waiting = asyncio.create_task(
            sdk.audio.transcriptions.create(model="whisper-1", file=LONG, prompt=waiting_prompt)
        )
        waiting_job = await _job_with_prompt(pool, waiting_prompt)
        waiting.cancel()
        left_waiting = await _ending(rt, waiting_job)
        reading_prompt = f"reading {uuid.uuid4().hex}"
        reading = await sdk.audio.transcriptions.create(
            model="whisper-1", file=LONG, prompt=reading_prompt, stream=True
        )
        first = await anext(aiter(reading))
        await reading.close()
        left_reading = await _ending(rt, await _job_with_prompt(pool, reading_prompt))

        # a job cancelled meanwhile (as DELETE /v1/jobs/{id} does) answers 409
        cancelled_prompt = f"cancelled {uuid.uuid4().hex}"
        answer = asyncio.create_task(
            sdk.audio.transcriptions.create(model="whisper-1", file=LONG, prompt=cancelled_prompt)
        )
        cancelled_job = await _job_with_prompt(pool, cancelled_prompt)
        assert await repo.cancel_job(pool, cancelled_job)
        await bus.publish_event(rt.js, Cancelled(job_id=cancelled_job))
        with pytest.raises(openai.ConflictError) as cancelled:
            await asyncio.wait_for(answer, 30)

    assert [model.id for model in models] == ["whisper-base", "whisper-1"]
    assert all(model.object == "model" and model.owned_by for model in models)
    assert "香港" in plain.text and "消費" in plain.text  # Traditional, as Hong Kong writes it
    assert plain.usage is not None and plain.usage.type == "duration"
    assert plain.usage.seconds == pytest.approx(3.2, abs=0.3)
    assert isinstance(text, str) and "香港" in text
    assert isinstance(srt, str) and srt.startswith("1\n00:00:0") and " --> " in srt and "香港" in srt
    assert "hoeng1" not in srt  # characters only, as OpenAI clients expect
    assert isinstance(vtt, str) and vtt.startswith("WEBVTT") and "香港" in vtt and "hoeng1 gong2" in vtt

    assert verbose.task == "transcribe" and verbose.duration == pytest.approx(3.2, abs=0.3) and "香港" in verbose.text
    segment = verbose.segments[0]
    assert segment.id == 0 and 0 <= segment.start < segment.end <= verbose.duration + 0.01
    assert segment.tokens == [] and segment.avg_logprob == 0.0
    extra = segment.model_extra or {}
    assert extra["jyutping"].startswith("hoeng1 gong2") and extra["yale"].startswith("hēung góng")
    assert [char["char"] for char in extra["chars"][:2]] == ["香", "港"] and extra["chars"][0]["jyutping"] == "hoeng1"

    kinds = [event.type for event in events]
    assert kinds[-1] == "transcript.text.done" and kinds[:-1] == ["transcript.text.delta"] * (len(kinds) - 1)
    deltas = [event for event in events if event.type == "transcript.text.delta"]
    assert deltas and "".join(event.delta for event in deltas) == events[-1].text and "香港" in events[-1].text
    assert (deltas[0].model_extra or {})["line"]["jyutping"].startswith("hoeng1")  # our line rides along
    done = events[-1]
    assert done.usage is not None and done.usage.type == "duration"  # the SDK types it as tokens; it keeps ours
    assert (done.usage.model_extra or {})["seconds"] == pytest.approx(3.2, abs=0.3)

    # the SDK's message is "Error code: 400 - " and our sentence; code and body are ours
    assert english.value.message.startswith("Error code: 400 - This service transcribes Cantonese only")
    assert english.value.code == "unsupported_language" and english.value.body["message"] in english.value.message
    # words: the lexicon's words, timed from their characters, in order, inside their lines
    rest = iter(timed.text)
    assert timed.words and all(all(char in rest for char in w.word) for w in timed.words)  # in the text's order
    assert all(a.start <= b.start for a, b in zip(timed.words, timed.words[1:], strict=False))
    assert all(w.start <= w.end and timed.segments[0].start - 0.01 <= w.start for w in timed.words)
    assert unknown_model.value.code == "model_not_found" and "GET /v1/models" in unknown_model.value.message
    assert not_media.value.code == "bad_input" and "text file" in not_media.value.message  # the job's failure reason
    assert "text file" in not_media_streamed.value.message  # an error event ends the stream; the SDK raises it

    assert first.type == "transcript.text.delta"
    for ending in (left_waiting, left_reading):
        assert isinstance(ending, Cancelled) and ending.reason == "The client went away."
    assert (await repo.get_job(pool, waiting_job)).status == "cancelled"
    assert cancelled.value.code == "cancelled" and "Cancelled on request." in cancelled.value.message


async def test_a_requests_prompt_reaches_the_fake_openai_api_after_the_cantonese_prompt(
    settings, nats_url, database_url
) -> None:
    """The pipeline with the openai backend against a FAKE of the paid API (tests/fake_openai.py): the
    prompt of a request here travels with its job to the ASR call, after the deployment's own."""
    with FakeOpenAITranscriptionServer(whisper_model_for_tests()) as fake:
        cfg = fake.settings_for(settings, openai_model="whisper-1")
        async with pipeline_and_sdk(cfg, nats_url, database_url) as (_, sdk):
            models = [model.id async for model in sdk.models.list()]
            answer = await sdk.audio.transcriptions.create(model="whisper-1", file=CLIP, prompt="陳大文 立法會")
        prompts = [request.fields.get("prompt") for request in fake.requests]
    assert models == ["whisper-1"]  # the deployment's OpenAI model; no alias needed
    assert "香港" in answer.text
    assert prompts and set(prompts) == {f"{cfg.asr_prompt} 陳大文 立法會"}

"""The OpenAI-compatible endpoint, driven by the real ``openai`` package against a real gateway and
the real pipeline (local Whisper base): the SDK works unchanged with ``base_url`` pointing here."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from scribe.runtime import SERVICES, runtime
from tests.integration.test_gateway_hostile import serving
from tests.paths import AUDIO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIP = AUDIO / "sherpa_yue-4.wav"  # 3.2 s: 香港嘅消費市場從此不一樣


@contextlib.asynccontextmanager
async def openai_client(settings, nats_url, database_url) -> AsyncIterator[openai.AsyncOpenAI]:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    async with runtime(cfg) as services, serving(cfg) as (host, _):
        await services.start(SERVICES)
        async with openai.AsyncOpenAI(base_url=f"http://{host}/v1", api_key="unused", max_retries=0) as sdk:
            yield sdk


async def test_the_openai_sdk_transcribes_through_the_gateway_in_every_format(
    settings, nats_url, database_url, tmp_path: Path
) -> None:
    async with openai_client(settings, nats_url, database_url) as sdk:
        models = [model.id async for model in sdk.models.list()]
        plain = await sdk.audio.transcriptions.create(model="whisper-1", file=CLIP, language="yue")
        text = await sdk.audio.transcriptions.create(model=models[0], file=CLIP, response_format="text")
        srt = await sdk.audio.transcriptions.create(model="whisper-1", file=CLIP, response_format="srt")
        verbose = await sdk.audio.transcriptions.create(
            model="whisper-1",
            file=CLIP,
            response_format="verbose_json",
            timestamp_granularities=["segment"],
            prompt="香港 消費",
        )
        streamed = await sdk.audio.transcriptions.create(model="whisper-1", file=CLIP, stream=True)
        events = [event async for event in streamed]
        with pytest.raises(openai.BadRequestError) as language:
            await sdk.audio.transcriptions.create(model="whisper-1", file=CLIP, language="en")
        with pytest.raises(openai.BadRequestError) as words:
            await sdk.audio.transcriptions.create(
                model="whisper-1", file=CLIP, response_format="verbose_json", timestamp_granularities=["word"]
            )
        notes = tmp_path / "notes.txt"
        notes.write_text("這不是錄音。\n" * 20, encoding="utf-8")
        with pytest.raises(openai.BadRequestError) as not_media:
            await sdk.audio.transcriptions.create(model="whisper-1", file=notes)
    assert models[0] == "whisper-base" and "whisper-1" in models
    assert "香港" in plain.text and "消費" in plain.text  # Traditional, as Hong Kong writes it
    assert plain.usage is not None and plain.usage.seconds == pytest.approx(3.2, abs=0.3)
    assert isinstance(text, str) and "香港" in text
    assert isinstance(srt, str) and "00:00:0" in srt and "-->" in srt and "香港" in srt
    segment = verbose.segments[0]
    assert verbose.duration == pytest.approx(3.2, abs=0.3) and "香港" in verbose.text
    extra = segment.model_extra or {}
    assert extra["jyutping"].startswith("hoeng1 gong2") and extra["chars"][0]["char"] == "香"
    kinds = [event.type for event in events]
    assert kinds[-1] == "transcript.text.done" and kinds.count("transcript.text.delta") >= 1
    deltas = "".join(event.delta for event in events if event.type == "transcript.text.delta")
    assert deltas == events[-1].text and "香港" in deltas
    assert "Cantonese" in language.value.message and "Word timestamps" in words.value.message
    assert "text file" in not_media.value.message

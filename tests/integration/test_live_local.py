"""LocalAgreement-2 on the real embedded model, a shared clip fed a second at a time."""

from __future__ import annotations

import difflib

import pytest
from faster_whisper import decode_audio

from core.settings import Settings
from tests.fake_openai import whisper_model_for_tests
from tests.paths import AUDIO
from transcriber.live import SAMPLE_RATE, LocalAgreement, local_decoder
from transcriber.local import LocalBackend

pytestmark = pytest.mark.integration

CLIP = AUDIO / "sherpa_yue-2.wav"  # 4.6 s; reference in manifest.tsv


async def test_live_policy_on_the_real_model() -> None:
    backend = LocalBackend(whisper_model_for_tests(), Settings(asr_threads=2, asr_workers=1))
    samples = decode_audio(str(CLIP))
    policy = LocalAgreement(local_decoder(backend))
    events: list[tuple[str, str]] = []
    for at in range(0, len(samples), SAMPLE_RATE):
        policy.feed(samples[at : at + SAMPLE_RATE])
        if policy.ready:
            update = await policy.step()
            events += [("line", line.segment.text) for line in update.lines]
            if update.interim is not None and (update.interim.stable or update.interim.tentative):
                events.append(("interim", update.interim.stable + update.interim.tentative))
    events += [("line", line.segment.text) for line in (await policy.finish()).lines]

    kinds = [kind for kind, _ in events]
    assert "interim" in kinds and "line" in kinds
    assert kinds.index("interim") < kinds.index("line")
    live = "".join(text for kind, text in events if kind == "line")
    whole = await backend.transcribe(CLIP.read_bytes(), duration=len(samples) / SAMPLE_RATE)
    file_mode = "".join(segment.text for segment in whole.segments)
    assert difflib.SequenceMatcher(None, live, file_mode).ratio() >= 0.7, (live, file_mode)

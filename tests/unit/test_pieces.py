"""``streamer.pieces.speech_chunks``: one way from 16 kHz samples to chunks, whatever feeds them.

A file's reader, a link's download and a live socket hand over blocks of different sizes; the
chunks must not depend on that, and every sample must reach the playback file.
"""

from __future__ import annotations

import numpy as np
import pytest
from faster_whisper import decode_audio

from core.settings import Settings
from streamer.media import open_media
from streamer.pieces import speech_chunks
from tests.paths import AUDIO

CLIP = AUDIO / "sherpa_yue-6.wav"  # 30.6 s of speech with pauses


def _blocks(samples: np.ndarray, size: int) -> list[np.ndarray]:
    return [samples[i : i + size] for i in range(0, len(samples), size)]


def _chunks(blocks: list[np.ndarray], settings: Settings) -> tuple[list[tuple[float, float, int]], int]:
    kept: list[np.ndarray] = []
    chunks = [
        (round(chunk.offset, 3), round(chunk.duration, 3), len(chunk.samples))
        for chunk, _ in speech_chunks(blocks, settings, keep=kept.append)
        if chunk is not None
    ]
    return chunks, sum(len(k) for k in kept)


@pytest.mark.parametrize("backend", ["local", "openai"])
def test_the_chunks_do_not_depend_on_how_the_samples_arrive_and_every_sample_is_kept(backend: str) -> None:
    settings = Settings(asr_backend=backend, chunk_min_s=8.0 if backend == "local" else 0.0)
    samples = decode_audio(str(CLIP))
    whole, kept = _chunks([samples], settings)
    assert whole and kept == len(samples)
    for size in (160, 4801, 16000 * 3):  # 10 ms frames, odd sizes, 3 s blocks
        assert _chunks(_blocks(samples, size), settings) == (whole, kept), size


def test_a_files_samples_give_the_chunks_its_samples_give() -> None:
    settings = Settings(asr_backend="openai")
    with open_media(str(CLIP), max_duration_s=600) as reader:
        from_reader = _chunks(list(reader.samples()), settings)
    assert from_reader == _chunks([decode_audio(str(CLIP))], settings)

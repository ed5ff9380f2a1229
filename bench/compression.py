"""Compression before upload: FLAC against Ogg/Opus at several bit rates, in bytes and in accuracy.

Prints figures; it is not a test. What the transcriber uploads to a paid API is the chunk as it
travels on the bus (``streamer.encode.encode_chunk``, ``SCRIBE_CHUNK_CODEC``), so this measures
that encoder. OpenAI bills by duration, so compression changes no price; it changes the bytes
uploaded (time on a slow link, the API's 25 MB limit per file, the bus's ``max_payload``) and,
if it is lossy enough, what the model hears.

For each variant (FLAC; Opus at 12, 16, 24 and 32 kb/s):

- **bytes per audio minute** over the reference clips and over the 4'38" KTDC meeting (one piece
  per clip, the meeting cut into the streamer's pieces with the API backend's defaults);
- **encoding time** per audio minute (one core);
- **CER** on the 26 reference clips: each clip's encoded bytes go through the real
  ``OpenAIBackend`` to the test suite's FAKE OpenAI server (``tests/fake_openai.py``), which decodes
  the upload and answers with the real local model (the embedded whisper-base, beam 5, the
  service's prompt). Scored as ``bench.asr_eval`` scores (OpenCC t2s, letters and digits only), with
  the number of clips whose text differs from FLAC's. CTranslate2's sampling seed is reset before
  each variant, so a temperature fallback draws the same way for equal inputs.

Run from the repository root (about 4 minutes on 2 cores)::

    .venv/bin/python -m bench.compression [--variants flac,opus:16000,opus:32000]
"""

# ruff: noqa: E402 - the imports of bench and the project come after the sys.path set-up
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import ctranslate2
import numpy as np
from faster_whisper import decode_audio

from bench.asr_eval import SEED, Clip, edit_distance, normalise, read_clips
from core.settings import Settings
from streamer.encode import encode_chunk
from streamer.media import open_media
from tests.fake_openai import FAKE_OPENAI_API_KEY, FakeOpenAITranscriptionServer, whisper_model_for_tests
from tests.paths import AUDIO
from transcriber.asr import filename_for_codec
from transcriber.openai_api import OpenAIBackend

MEETING = AUDIO / "ktdc_meeting_2025-01-06_other_matters.mp3"
VARIANTS = ("flac", "opus:12000", "opus:16000", "opus:24000", "opus:32000")


@dataclass
class Variant:
    """One encoder setting and what it gave."""

    name: str
    codec: str
    bit_rate: int
    clip_bytes: int = 0
    clip_s: float = 0.0
    meeting_bytes: int = 0
    meeting_s: float = 0.0
    encode_s: float = 0.0
    errors: int = 0
    ref_chars: int = 0
    texts: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Variant:
        codec, _, rate = text.partition(":")
        if codec not in ("flac", "opus") or (codec == "opus" and not rate.isdigit()):
            raise SystemExit(f"unknown variant {text!r}: flac, or opus:BITS_PER_SECOND")
        return cls(text, codec, int(rate or 0))

    def encode(self, samples: np.ndarray) -> tuple[str, bytes]:
        started = time.perf_counter()
        codec, data = encode_chunk(samples, codec=self.codec, bit_rate=self.bit_rate or 32000)
        self.encode_s += time.perf_counter() - started
        if codec != self.codec:
            raise SystemExit(f"{self.name}: the encoder gave {codec} (is libopus missing from PyAV's FFmpeg?)")
        return codec, data

    @property
    def cer(self) -> float:
        return self.errors / max(1, self.ref_chars)


def meeting_pieces(settings: Settings) -> list[np.ndarray]:
    """The meeting cut as the streamer cuts it for the API backend (speech pieces only)."""
    reader = open_media(str(MEETING), max_duration_s=settings.max_duration_s)
    low, high = settings.chunk_lengths
    try:
        return [
            p.samples
            for p in reader.pieces(
                min_s=low,
                max_s=high,
                silence_dbfs=settings.silence_dbfs,
                first_max_s=settings.chunk_first_max_s,
            )
            if not p.silent
        ]
    finally:
        reader.close()


async def transcribe(backend: OpenAIBackend, variant: Variant, clip: Clip, samples: np.ndarray) -> None:
    codec, data = variant.encode(samples)
    variant.clip_bytes += len(data)
    variant.clip_s += len(samples) / 16000
    result = await backend.transcribe(
        data, duration=len(samples) / 16000, filename=filename_for_codec(codec, clip.path.stem)
    )
    text = "".join(s.text for s in result.segments)
    variant.texts[clip.name] = normalise(text)
    reference = normalise(clip.reference)
    variant.errors += edit_distance(reference, variant.texts[clip.name])
    variant.ref_chars += len(reference)


async def run(variants: list[Variant], clips: list[Clip], settings: Settings) -> None:
    decoded = {clip.name: decode_audio(str(clip.path)) for clip in clips}
    pieces = meeting_pieces(settings)
    for variant in variants:
        for piece in pieces:
            variant.meeting_bytes += len(variant.encode(piece)[1])
            variant.meeting_s += len(piece) / 16000
    with FakeOpenAITranscriptionServer(whisper_model_for_tests(), beam_size=settings.asr_beam_size) as fake:
        api = settings.with_(openai_base_url=fake.base_url, openai_api_key=FAKE_OPENAI_API_KEY)
        backend = OpenAIBackend(api)
        try:
            for variant in variants:
                print(f"{variant.name}: {len(clips)} clips through the fake API ...", file=sys.stderr)
                ctranslate2.set_random_seed(SEED)
                for clip in clips:
                    await transcribe(backend, variant, clip, decoded[clip.name])
        finally:
            await backend.close()


def report(variants: list[Variant]) -> None:
    base = variants[0]
    print(
        "\nCompression before upload (bench/compression.py): encoder streamer.encode.encode_chunk, 16 kHz mono;"
        "\nCER through the real OpenAIBackend and the FAKE OpenAI server (the local whisper-base behind it, beam 5)\n"
    )
    print(
        f"{'variant':<12} {'kB/min clips':>13} {'kB/min meeting':>15} {'x smaller':>10} {'encode ms/min':>14}"
        f" {'CER':>7} {'vs ' + base.name:>9} {'texts differ':>13}"
    )
    for v in variants:
        per_min = v.clip_bytes / 1000 / (v.clip_s / 60)
        meeting = v.meeting_bytes / 1000 / (v.meeting_s / 60)
        ratio = (base.meeting_bytes / base.meeting_s) / (v.meeting_bytes / v.meeting_s)
        encode = v.encode_s * 1000 / ((v.clip_s + v.meeting_s) / 60)
        differ = sum(1 for name, text in v.texts.items() if text != base.texts.get(name))
        print(
            f"{v.name:<12} {per_min:>13.1f} {meeting:>15.1f} {ratio:>10.1f} {encode:>14.1f}"
            f" {v.cer:>7.3f} {v.cer - base.cer:>+9.3f} {differ:>10}/{len(v.texts)}"
        )
    print(
        f"\n{len(base.texts)} clips, {base.ref_chars} reference characters, {base.clip_s / 60:.1f} min;"
        f" meeting {base.meeting_s / 60:.1f} min of speech pieces;"
        f" median clip {statistics.median(len(t) for t in base.texts.values())} characters."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help="flac and opus:BITS, comma-separated")
    parser.add_argument("--data", type=Path, default=AUDIO, help="the folder with manifest.tsv")
    args = parser.parse_args(argv)
    variants = [Variant.parse(v.strip()) for v in args.variants.split(",") if v.strip()]
    settings = Settings.from_env().with_(asr_backend="openai")
    asyncio.run(run(variants, read_clips(args.data), settings))
    report(variants)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

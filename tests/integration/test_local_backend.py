"""The embedded model and the local faster-whisper backend, for real (no fakes)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import wave
from pathlib import Path

import numpy as np
import pytest
from faster_whisper import WhisperModel, decode_audio

from core.settings import Settings
from tests.fake_openai import encode_ogg_opus, whisper_model_for_tests
from tests.paths import AUDIO
from transcriber import model as model_module
from transcriber.errors import ModelError, PermanentAsrError
from transcriber.local import LocalBackend
from transcriber.model import EMBEDDED_SHA256, WRITTEN_CHINESE_CHARS, ensure_model

pytestmark = pytest.mark.integration

CLIP = AUDIO / "sherpa_yue-6.wav"  # 30.6 s, a Cantonese course advert; reference in manifest.tsv


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture(scope="session")
def whisper_model() -> WhisperModel:
    return whisper_model_for_tests()


@pytest.fixture(scope="session")
def local_backend(whisper_model: WhisperModel) -> LocalBackend:
    return LocalBackend(whisper_model, Settings(asr_threads=2, asr_workers=1))


@pytest.fixture(scope="session")
def clip_opus() -> tuple[bytes, float]:
    return encode_ogg_opus(CLIP)


# --- model assembly ----------------------------------------------------------------------


def test_ensure_model_joins_verifies_and_then_reuses_without_rehashing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path)
    folder = ensure_model(settings)
    model_bin = folder / "model.bin"
    assert folder == tmp_path / "models" / "whisper-base"
    assert _sha256(model_bin) == EMBEDDED_SHA256
    for name in ("config.json", "tokenizer.json", "vocabulary.txt", ".verified"):
        assert (folder / name).is_file(), name
    assert not list(folder.glob("*.tmp"))
    before = model_bin.stat()

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"re-hashed {path} although its marker matched")

    monkeypatch.setattr(model_module, "_sha256_file", no_hashing)
    assert ensure_model(settings) == folder
    after = model_bin.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rewritten


def test_ensure_model_detects_and_rebuilds_a_corrupted_cached_model(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    model_bin = ensure_model(settings) / "model.bin"
    with model_bin.open("r+b") as f:  # flip bytes in place: same size
        f.seek(50_000_000)
        f.write(b"\xff" * 64)
    assert _sha256(model_bin) != EMBEDDED_SHA256
    ensure_model(settings)
    assert _sha256(model_bin) == EMBEDDED_SHA256

    model_bin.write_bytes(b"truncated")
    ensure_model(settings)
    assert _sha256(model_bin) == EMBEDDED_SHA256


def test_ensure_model_refuses_a_join_with_the_wrong_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_module, "EMBEDDED_SHA256", "0" * 64)
    with pytest.raises(ModelError) as info:
        ensure_model(Settings(data_dir=tmp_path))
    assert "sha256" in info.value.reason and "reinstall" in info.value.reason
    folder = tmp_path / "models" / "whisper-base"
    assert not (folder / "model.bin").exists()
    assert not list(folder.glob("*.tmp"))


def test_ensure_model_with_a_folder_path_checks_it(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        ensure_model(Settings(asr_model=str(tmp_path / "missing")))
    (tmp_path / "model.bin").write_bytes(b"x")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="tokenizer.json"):
        ensure_model(Settings(asr_model=str(tmp_path)))
    (tmp_path / "tokenizer.json").write_text("{}")
    assert ensure_model(Settings(asr_model=str(tmp_path))) == tmp_path


# --- local backend -----------------------------------------------------------------------


async def test_local_backend_transcribes_cantonese_opus_chunk(
    local_backend: LocalBackend, clip_opus: tuple[bytes, float]
) -> None:
    audio, duration = clip_opus
    result = await local_backend.transcribe(audio, duration=duration)
    text = "".join(s.text for s in result.segments)
    assert "廣東話" in text
    assert "嘅" in text  # the prompt steers it to colloquial Cantonese
    assert len(result.segments) >= 3
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts)
    for segment in result.segments:
        assert 0.0 <= segment.start <= segment.end <= duration
    assert result.segments[-1].end > duration - 5.0  # the speech runs to the end of the clip
    assert result.billed_seconds == pytest.approx(duration, abs=0.05)
    assert (result.backend, result.model) == ("local", "whisper-base")


async def test_suppressing_written_chinese_tokens_removes_them_from_the_output(
    whisper_model: WhisperModel, clip_opus: tuple[bytes, float]
) -> None:
    audio, duration = clip_opus
    written = set(WRITTEN_CHINESE_CHARS)
    plain = await LocalBackend(whisper_model, Settings(asr_threads=2)).transcribe(audio, duration=duration)
    # The clip makes the base model write some of them (的 or 說, depending on the run).
    assert written.intersection("".join(s.text for s in plain.segments))
    backend = LocalBackend(whisper_model, Settings(asr_threads=2, asr_suppress_written=True))
    suppressed = await backend.transcribe(audio, duration=duration)
    text = "".join(s.text for s in suppressed.segments)
    assert not written.intersection(text) and "廣東話" in text


async def test_local_backend_serves_concurrent_calls_without_mixing_them(
    local_backend: LocalBackend,
) -> None:
    short_a, dur_a = encode_ogg_opus(AUDIO / "sherpa_yue-4.wav")  # 香港嘅消費市場從此不一樣
    short_b, dur_b = encode_ogg_opus(AUDIO / "sherpa_yue-11.wav")  # 無論你提出任何嘅要求
    a, b = await asyncio.gather(
        local_backend.transcribe(short_a, duration=dur_a), local_backend.transcribe(short_b, duration=dur_b)
    )
    assert "香港" in "".join(s.text for s in a.segments)
    assert "要求" in "".join(s.text for s in b.segments)


async def test_local_backend_rejects_undecodable_audio_as_permanent(local_backend: LocalBackend) -> None:
    with pytest.raises(PermanentAsrError) as info:
        await local_backend.transcribe(b"this is not audio at all" * 100, duration=3.0)
    assert info.value.backend == "local"


@pytest.mark.parametrize("signal", ["silence", "brown_noise"])
async def test_local_backend_returns_nothing_for_a_chunk_without_speech(
    local_backend: LocalBackend, tmp_path: Path, signal: str
) -> None:
    # Without VAD the model "hears" fragments of its Cantonese prompt in noise (measured in
    # bench/asr_eval.py); the default backend must give no segments at all.
    n = 10 * 16000
    if signal == "silence":
        samples = np.zeros(n)
    else:
        walk = np.cumsum(np.random.default_rng(1).standard_normal(n))
        samples = (walk - walk.mean()) / np.abs(walk - walk.mean()).max() * 0.3
    wav = tmp_path / f"{signal}.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((samples * 32767).astype("<i2").tobytes())
    audio, duration = encode_ogg_opus(wav)
    result = await local_backend.transcribe(audio, duration=duration)
    assert result.segments == []
    assert result.billed_seconds == pytest.approx(10.0, abs=0.05)


async def test_word_times_change_no_word_of_a_chunk_longer_than_whisper_s_window(whisper_model: WhisperModel) -> None:
    # 57 s of the meeting: two 30 s windows, the first ending mid-segment, where faster-whisper
    # with word times would seek to the last word and decode again (transcriber.local._window_end).
    samples = decode_audio(str(AUDIO / "ktdc_meeting_2025-01-06_other_matters.mp3"))[147 * 16000 : 204 * 16000]
    audio = io.BytesIO()
    with wave.open(audio, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((samples * 32767).astype(np.int16).tobytes())
    results = {}
    for word_times in (False, True):
        backend = LocalBackend(whisper_model, Settings(asr_threads=2, asr_workers=1, asr_word_times=word_times))
        results[word_times] = await backend.transcribe(audio.getvalue(), duration=57.0)
    assert [s.text for s in results[True].segments] == [s.text for s in results[False].segments]
    words = [w for s in results[True].segments for w in s.words]
    assert "".join(w.text for w in words).replace(" ", "") == "".join(s.text for s in results[True].segments).replace(
        " ", ""
    )
    assert all(0 <= w.start <= w.end <= 57.0 and 0 <= (w.probability or 0) <= 1 for w in words)
    assert not any(s.words for s in results[False].segments)

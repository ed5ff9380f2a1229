"""streamer.live: live frames (raw PCM, WebM/Opus, Ogg/Opus as MediaRecorder sends them) to 16 kHz samples.

The WebM and Ogg streams are made from a shared clip with PyAV as MediaRecorder streams them
(tests.live_media), cut into ~250 ms slices at arbitrary byte boundaries or at Ogg pages.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streamer.errors import LiveInputError
from streamer.live import MAX_FRAME_BYTES, LiveDecoder, LiveFormat
from tests.live_media import ogg_pages, pcm, recorded, slices
from tests.media import load_samples, write_audio
from tests.paths import AUDIO

RATE = 16000
CLIP = AUDIO / "sherpa_yue-2.wav"  # 4.61 s of speech


def _best_correlation(decoded: np.ndarray, reference: np.ndarray, max_lag: int = 480) -> tuple[float, int]:
    """The highest correlation of ``decoded`` with ``reference`` over lags of up to 30 ms, and that lag."""
    n = min(len(decoded), len(reference)) - max_lag
    best = (-1.0, 0)
    for lag in range(-max_lag, max_lag + 1, 4):
        a = decoded[max_lag + lag : max_lag + lag + n - max_lag]
        b = reference[max_lag:n]
        best = max(best, (float(np.corrcoef(a, b)[0, 1]), lag))
    return best


@pytest.fixture(autouse=True)
def no_reader_left() -> Iterator[None]:
    yield
    assert not [t.name for t in threading.enumerate() if t.name.startswith("live-")], "a reader thread was left"


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return load_samples(CLIP)


def _decode_all(decoder: LiveDecoder, frames: Iterator[bytes] | list[bytes]) -> tuple[np.ndarray, list[float]]:
    """Everything decoded, and the seconds decoded after each frame."""
    parts: list[np.ndarray] = []
    progress: list[float] = []
    try:
        for frame in frames:
            parts.append(decoder.feed(frame))
            progress.append(decoder.decoded_s)
    finally:
        parts.append(decoder.close())
    return np.concatenate(parts), progress


@pytest.mark.parametrize("container", ["webm", "ogg"])
def test_container_decodes_as_it_arrives(clip: np.ndarray, container: str) -> None:
    data = recorded(clip, container)
    duration = len(clip) / RATE
    frames = list(slices(data, duration)) if container == "webm" else ogg_pages(data)
    assert len(frames) >= 12
    decoder = LiveDecoder(LiveFormat(container))  # type: ignore[arg-type]
    decoded, progress = _decode_all(decoder, frames)

    assert decoded.dtype == np.float32
    assert abs(len(decoded) - len(clip)) / RATE < 0.03
    correlation, lag = _best_correlation(decoded, clip)
    assert correlation > 0.95 and abs(lag) < 160
    # Incremental: after each frame, everything but the last slice or so has come out already.
    fed = np.cumsum([len(frame) for frame in frames]) / len(data) * duration
    behind = [sent - done for done, sent in zip(progress, fed, strict=True)]
    assert max(behind) < 0.4, behind
    assert progress[len(frames) // 2] > duration / 3


def test_webm_split_in_tiny_frames(clip: np.ndarray) -> None:
    data = recorded(clip[: RATE * 2], "webm")
    frames = [data[i : i + 37] for i in range(0, len(data), 37)]
    decoded, _ = _decode_all(LiveDecoder(LiveFormat("webm")), frames)
    assert abs(len(decoded) - 2 * RATE) / RATE < 0.03


@pytest.mark.parametrize(("rate", "channels"), [(8000, 2), (48000, 1), (16000, 1)])
def test_linear16_odd_splits(clip: np.ndarray, rate: int, channels: int) -> None:
    data = pcm(clip, rate, channels)
    sizes = [1, 3, 1001, 7, 4093, 2, 333, 65]
    frames, offset, i = [], 0, 0
    while offset < len(data):
        frames.append(data[offset : offset + sizes[i % len(sizes)]])
        offset += sizes[i % len(sizes)]
        i += 1
    fmt = LiveFormat("linear16", sample_rate=rate, channels=channels)
    split, _ = _decode_all(LiveDecoder(fmt), frames)
    whole, _ = _decode_all(
        LiveDecoder(fmt), [data[i : i + MAX_FRAME_BYTES] for i in range(0, len(data), MAX_FRAME_BYTES)]
    )

    np.testing.assert_allclose(split, whole, atol=1e-6)  # where the frames split makes no difference
    assert abs(len(split) - len(clip)) / RATE < 0.01
    correlation, lag = _best_correlation(split, clip)
    assert correlation > (0.9 if rate == 8000 else 0.99) and abs(lag) < 16
    level = float(np.sqrt(np.mean(split**2)) / np.sqrt(np.mean(clip**2)))
    expected = 0.75 if channels == 2 else 1.0  # stereo: the mean of both channels
    assert expected - 0.05 < level < expected + 0.05


def test_linear16_ends_inside_a_sample() -> None:
    decoder = LiveDecoder(LiveFormat("linear16", sample_rate=16000))
    assert len(decoder.feed(b"\x00\x10" * 800 + b"\x01")) + len(decoder.close()) == 800


@pytest.mark.parametrize(
    ("query", "allowed"),
    [
        ({"encoding": "linear16", "sample_rate": "7999"}, "8000-48000 Hz"),
        ({"encoding": "linear16", "sample_rate": "48001"}, "8000-48000 Hz"),
        ({"encoding": "linear16", "sample_rate": "16k"}, "8000-48000 Hz"),
        ({"encoding": "linear16", "sample_rate": "16000", "channels": "3"}, "1-2 channels"),
        ({"encoding": "linear16"}, "sample_rate=8000-48000"),
        ({"encoding": "mp3"}, "use linear16"),
        ({}, "encoding is missing"),
    ],
)
def test_format_out_of_range(query: dict[str, str], allowed: str) -> None:
    with pytest.raises(LiveInputError, match=allowed):
        LiveFormat.from_query(query)


def test_format_from_query() -> None:
    query = {"encoding": "linear16", "sample_rate": "44100", "channels": "2", "romanization": "yale"}
    assert LiveFormat.from_query(query) == LiveFormat("linear16", sample_rate=44100, channels=2)
    assert LiveFormat.from_query({"encoding": "webm", "sample_rate": "1"}) == LiveFormat("webm")


def test_frame_too_large_is_refused_and_the_decoder_goes_on() -> None:
    decoder = LiveDecoder(LiveFormat("linear16", sample_rate=16000))
    with pytest.raises(LiveInputError, match="65,536 bytes"):
        decoder.feed(b"\x00" * (65 * 1024))
    assert len(decoder.feed(b"\x00\x01" * 100)) == 100
    decoder.close()


def _first_error(decoder: LiveDecoder, frames: list[bytes]) -> tuple[LiveInputError, int]:
    """The error the decoder raises (at a frame or at close), and the bytes fed until then."""
    fed = 0
    try:
        for frame in frames:
            fed += len(frame)
            decoder.feed(frame)
        fed = -1
        decoder.close()
    except LiveInputError as exc:
        decoder.close()
        return exc, fed
    raise AssertionError("no error")


def test_garbage_declared_as_webm() -> None:
    garbage = np.random.default_rng(1).bytes(20_000)
    error, fed = _first_error(LiveDecoder(LiveFormat("webm")), [garbage[i : i + 4000] for i in range(0, 20_000, 4000)])
    assert error.reason.startswith("These bytes are not WebM audio: they do not start with a WebM header.")
    assert fed == 4000


def test_mp3_declared_as_webm(tmp_path: Path, clip: np.ndarray) -> None:
    mp3 = write_audio(tmp_path / "clip.mp3", clip).read_bytes()
    error, fed = _first_error(LiveDecoder(LiveFormat("webm")), [mp3[i : i + 5000] for i in range(0, len(mp3), 5000)])
    assert "These bytes are not WebM audio: they are MP3." in error.reason and fed == 5000


def test_ogg_declared_as_webm_and_webm_as_linear16(clip: np.ndarray) -> None:
    ogg = recorded(clip[:RATE], "ogg")
    error, _ = _first_error(LiveDecoder(LiveFormat("webm")), [ogg])
    assert "they are Ogg" in error.reason
    webm = recorded(clip[:RATE], "webm")
    error, _ = _first_error(LiveDecoder(LiveFormat("linear16", sample_rate=16000)), [webm])
    assert error.reason.startswith("These bytes are WebM, not raw linear16 PCM")


@pytest.mark.parametrize("size", [5, 60])
def test_webm_header_cut_short(clip: np.ndarray, size: int) -> None:
    webm = recorded(clip[:RATE], "webm")
    error, fed = _first_error(LiveDecoder(LiveFormat("webm")), [webm[:size]])
    assert error.reason.startswith("The stream ended before its WebM header was complete") and fed == -1


def test_webm_without_its_header_is_refused_within_64_kib(clip: np.ndarray) -> None:
    webm = recorded(clip, "webm")
    cut = webm[:40] + webm[len(webm) // 3 :]  # the EBML magic, then clusters from the middle: no tracks
    frames = list(slices(cut + cut + cut, 3 * len(clip) / RATE, seed=2))
    error, fed = _first_error(LiveDecoder(LiveFormat("webm")), frames)
    assert error.reason.startswith("These bytes are not WebM audio") and 0 < fed <= 64 * 1024 + 16_000


def test_webm_that_turns_to_garbage_keeps_what_came_before(clip: np.ndarray) -> None:
    webm = recorded(clip, "webm")
    garbage = np.random.default_rng(3).bytes(100_000)
    frames = list(slices(webm, len(clip) / RATE)) + [garbage[i : i + 4000] for i in range(0, len(garbage), 4000)]
    decoder = LiveDecoder(LiveFormat("webm"))
    error, fed = _first_error(decoder, frames)
    assert "WebM audio" in error.reason and 0 < fed - len(webm) <= 64 * 1024 + 4000
    assert decoder.decoded_s > len(clip) / RATE - 0.5


def test_close_unfed_and_midway(clip: np.ndarray) -> None:
    assert len(LiveDecoder(LiveFormat("ogg")).close()) == 0
    webm = recorded(clip, "webm")
    decoder = LiveDecoder(LiveFormat("webm"))
    got = len(decoder.feed(webm[: len(webm) // 2]))
    got += len(decoder.close())
    assert 0.3 * len(clip) < got < 0.7 * len(clip)
    assert len(decoder.close()) == 0
    with pytest.raises(RuntimeError):
        decoder.feed(b"more")

"""Chunking, silence detection, chunk encoding and the URL guard: no network, no files but tmp ones."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from streamer import encode
from streamer.chunker import SAMPLE_RATE, Chunker, Piece, is_silent
from streamer.encode import encode_chunk, encode_for_bus
from streamer.errors import BlockedURL
from streamer.guard import check_url
from tests.media import load_samples, silence, tone

SR = SAMPLE_RATE
SILENCE_DBFS = -45.0


def make_chunker(min_s: float, max_s: float, *, first_max_s: float = 0.0) -> Chunker:
    """A chunker with the usual silence threshold (no short first piece unless asked)."""
    return Chunker(min_s=min_s, max_s=max_s, silence_dbfs=SILENCE_DBFS, first_max_s=first_max_s)


def chunk(samples: np.ndarray, *, min_s: float, max_s: float, block: int = 1234) -> list[Piece]:
    """Feed ``samples`` in blocks of ``block`` (an awkward size on purpose), then flush."""
    chunker = make_chunker(min_s, max_s)
    pieces: list[Piece] = []
    for start in range(0, len(samples), block):
        pieces.extend(chunker.feed(samples[start : start + block]))
    return pieces + chunker.flush()


def assert_tiles(pieces: list[Piece], samples: np.ndarray) -> None:
    assert pieces[0].offset == 0.0
    for before, after in zip(pieces, pieces[1:], strict=False):
        assert after.offset == pytest.approx(before.offset + before.duration, abs=1e-9)
    for piece in pieces:
        assert piece.duration == len(piece.samples) / SR
        assert piece.samples.dtype == np.float32
    np.testing.assert_array_equal(np.concatenate([p.samples for p in pieces]), samples)


def cuts(pieces: list[Piece]) -> list[float]:
    return [p.end for p in pieces[:-1]]


# --- Chunker ----------------------------------------------------------------------------------------


def test_cuts_in_the_silence_between_two_bursts() -> None:
    samples = np.concatenate([tone(20.0), silence(2.0, noise_dbfs=-70), tone(18.0, freq=300)])
    pieces = chunk(samples, min_s=15, max_s=30)
    assert_tiles(pieces, samples)
    assert len(pieces) == 2
    assert 20.0 <= pieces[0].end <= 22.0
    assert pieces[0].end == pytest.approx(21.0, abs=0.1)  # the middle of a short pause
    assert not any(p.silent for p in pieces)


def test_pieces_stay_within_bounds_and_do_not_depend_on_feed_sizes() -> None:
    rng = np.random.default_rng(7)
    parts = []
    for _ in range(25):
        parts.append(tone(rng.uniform(3, 12), freq=rng.uniform(200, 800), dbfs=rng.uniform(-25, -10)))
        parts.append(silence(rng.uniform(0.2, 1.5), noise_dbfs=-65, seed=int(rng.integers(1000))))
    samples = np.concatenate(parts)
    pieces = chunk(samples, min_s=15, max_s=30)
    assert_tiles(pieces, samples)
    for piece in pieces[:-1]:
        assert 15.0 <= piece.duration <= 30.0
    assert pieces[-1].duration <= 30.0
    assert cuts(chunk(samples, block=len(samples), min_s=15, max_s=30)) == cuts(pieces)
    assert cuts(chunk(samples, block=160, min_s=15, max_s=30)) == cuts(pieces)


def test_every_cut_lands_in_a_pause_when_there_is_one() -> None:
    samples = np.concatenate([tone(9.0), silence(0.5), tone(8.0), silence(0.6), tone(12.0), silence(0.4), tone(7.0)])
    quiet = np.zeros(len(samples), dtype=bool)
    quiet[np.abs(samples) == 0] = True
    pieces = chunk(samples, min_s=10, max_s=20)
    assert_tiles(pieces, samples)
    for at in cuts(pieces):
        i = round(at * SR)
        assert quiet[i - 1] and quiet[i], f"cut at {at:.2f} s is not in a pause"


def test_without_pauses_cuts_at_the_quietest_frame() -> None:
    samples = tone(40.0, dbfs=-15)
    dip = slice(int(23.0 * SR), int(23.09 * SR))
    samples[dip] *= 10 ** (-15 / 20)  # -30 dBFS: quieter, but not silence
    pieces = chunk(samples, min_s=15, max_s=30)
    assert_tiles(pieces, samples)
    assert 23.0 <= pieces[0].end <= 23.09


def test_all_silence_gives_only_silent_pieces() -> None:
    samples = silence(70.0, noise_dbfs=-60)
    pieces = chunk(samples, min_s=15, max_s=30)
    assert_tiles(pieces, samples)
    assert all(p.silent for p in pieces)
    assert all(p.duration <= 30.0 for p in pieces)


def test_a_long_pause_comes_out_as_its_own_silent_piece() -> None:
    samples = np.concatenate([tone(18.0), silence(22.0, noise_dbfs=-70), tone(15.0)])
    pieces = chunk(samples, min_s=15, max_s=30)
    assert_tiles(pieces, samples)
    assert [p.silent for p in pieces] == [False, True, False]
    speech, pause, _ = pieces
    assert 18.0 < speech.end <= 18.5  # keeps a little of the pause, not the whole of it
    assert pause.duration >= 21.0


def test_short_input_is_one_piece_on_flush() -> None:
    short = make_chunker(15, 30)
    assert short.feed(tone(4.0)) == []
    assert short.buffered_s == pytest.approx(4.0)
    [piece] = short.flush()
    assert (piece.offset, piece.duration, piece.silent) == (0.0, 4.0, False)
    assert short.flush() == []


def test_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError):
        make_chunker(30, 15)


# --- is_silent ----------------------------------------------------------------------------------


def test_is_silent() -> None:
    assert is_silent(np.zeros(16000, dtype=np.float32), -45)
    assert is_silent(silence(2.0, noise_dbfs=-60), -45)
    assert is_silent(np.zeros(0, dtype=np.float32), -45)
    assert not is_silent(tone(1.0, dbfs=-30), -45)
    assert not is_silent(silence(2.0, noise_dbfs=-40), -45)
    click = silence(2.0, noise_dbfs=-70)
    click[16000:16480] = tone(0.03, dbfs=-20)
    assert not is_silent(click, -45)
    tail = silence(1.0, noise_dbfs=-70)
    tail[-100:] = 0.5  # in the partial last frame
    assert not is_silent(tail, -45)


# --- encode_chunk ---------------------------------------------------------------------------------


def decoded_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data), "r") as container:
        return sum(frame.samples / frame.sample_rate for frame in container.decode(audio=0))


def test_encode_chunk_default_is_lossless_flac() -> None:
    samples = load_samples(seconds=5.0)
    codec, data = encode_chunk(samples)
    assert codec == "flac" and data[:4] == b"fLaC"
    assert len(data) < 5.0 * SR * 2  # smaller than 16-bit PCM
    with av.open(io.BytesIO(data), "r") as container:
        decoded = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    # Lossless up to 16-bit quantisation.
    assert np.max(np.abs(decoded.astype(np.float32) / 32768.0 - samples[: len(decoded)])) < 1e-3


def test_encode_chunk_is_compact_opus_that_decodes_back() -> None:
    samples = load_samples(seconds=12.5)
    codec, data = encode_chunk(samples, codec="opus")
    assert codec == "opus"
    assert data[:4] == b"OggS"
    assert len(data) < 12.5 * 32000 / 8 * 1.3  # about 32 kb/s
    assert decoded_seconds(data) == pytest.approx(12.5, abs=0.03)


def test_encode_chunk_decodes_with_faster_whisper() -> None:
    from faster_whisper import decode_audio

    samples = load_samples(seconds=6.0)
    _, data = encode_chunk(samples, codec="opus")
    decoded = decode_audio(io.BytesIO(data), sampling_rate=SR)
    assert len(decoded) / SR == pytest.approx(6.0, abs=0.03)
    # Same signal, not just the same length: strongly correlated with the original.
    n = min(len(decoded), len(samples))
    assert np.corrcoef(decoded[:n], samples[:n])[0, 1] > 0.8


def test_encode_chunk_falls_back_to_flac(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encode, "_has_encoder", lambda name: False)  # as on an FFmpeg built without libopus
    samples = tone(3.0)
    codec, data = encode_chunk(samples, codec="opus")
    assert codec == "flac"
    assert data[:4] == b"fLaC"
    assert decoded_seconds(data) == pytest.approx(3.0, abs=0.01)


# --- check_url (literal addresses only: no DNS) ------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.mp3",
        "http://127.1.2.3:8080/",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://172.16.5.4/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://[::1]/",
        "http://[fc00::1]/",
        "http://[fd12:3456::1]/",
        "http://[fe80::1]/",
        "http://[fec0::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://[2002:7f00:1::]/",  # 6to4 wrapping 127.0.0.1
        "http://[64:ff9b::a00:1]/",  # NAT64 wrapping 10.0.0.1
        "http://2130706433/",  # 127.0.0.1 written as one number
        "file:///etc/passwd",
        "ftp://93.184.216.34/a.mp3",
        "gopher://93.184.216.34/",
        "javascript:alert(1)",
        "http:///no-host",
    ],
)
def test_check_url_blocks(url: str) -> None:
    with pytest.raises(BlockedURL) as caught:
        check_url(url, allow_private=False)
    assert caught.value.reason.endswith(".")


@pytest.mark.parametrize(
    "url",
    ["http://93.184.216.34/a.mp3", "https://93.184.216.34:8443/x?y=1", "http://[2606:2800:220:1:248:1893:25c8:1946]/"],
)
def test_check_url_allows_public_addresses(url: str) -> None:
    check_url(url, allow_private=False)


def test_allow_private_lets_loopback_through_but_not_other_schemes() -> None:
    check_url("http://127.0.0.1:8000/clip.ogg", allow_private=True)
    check_url("http://[::1]/", allow_private=True)
    with pytest.raises(BlockedURL):
        check_url("file:///etc/passwd", allow_private=True)


def test_first_speech_piece_is_short_when_asked_then_pieces_grow() -> None:
    # Speech-like tone with a short pause every 4 s: cut points everywhere.
    bursts = [np.concatenate([tone(3.7), silence(0.3)]) for _ in range(20)]
    first_short = make_chunker(15, 30, first_max_s=8)
    pieces = [*first_short.feed(np.concatenate(bursts)), *first_short.flush()]
    speech = [p for p in pieces if not p.silent]
    assert 4.0 <= speech[0].duration <= 8.0
    assert all(15.0 <= p.duration <= 30.0 for p in speech[1:-1])
    assert sum(p.duration for p in pieces) == pytest.approx(80.0, abs=0.01)


def test_chunk_goes_as_opus_when_flac_would_not_fit_the_servers_max_payload() -> None:
    samples = load_samples(seconds=20.0)
    assert encode_for_bus(samples, "flac", 8 * 1024 * 1024)[0] == "flac"
    codec, data = encode_for_bus(samples, "flac", 200_000)  # 20 s of FLAC is about 350 kB
    assert codec == "opus" and len(data) * 4 // 3 < 200_000

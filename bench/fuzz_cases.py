"""Broken, hostile and odd media for fuzzing ``streamer.media``: one generator for the test and the bench.

``tests/unit/test_media_fuzz.py`` runs every case on short clips (a few seconds) and checks
behaviour; ``bench.fuzz_media`` runs the same cases on long ones and prints time and memory.

A ``Corpus`` encodes real speech (the start of ``sherpa_yue-6.wav``) once per format with PyAV
and derives the cases from it: bit flips, truncations, wrong or lying headers, non-media,
playlists, noise, silence and format changes mid-stream. Each case says what the reader should
do with it (``Expect``). ``decode`` runs one input through ``open_media`` the way the streamer
does and reports what came out (``Outcome``), never raising: a crash is a finding, not an error.
"""

from __future__ import annotations

import functools
import io
import struct
import tempfile
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal, cast

import av
import numpy as np

from streamer.errors import InputError
from streamer.media import open_media
from tests.media import CLIP, load_samples, make_video_only

RATE = 16000
# Short pieces, so that a few seconds of audio still make several (the service's come from its settings).
PIECE_OPTIONS = {"min_s": 2.0, "max_s": 30.0, "silence_dbfs": -50.0, "first_max_s": 0.0}
# Samples of a good piece stay in this range; outside it (or NaN/inf) the decode path is broken.
SAMPLE_LIMIT = 1.5
FLIP_RATES = (1e-5, 1e-4, 1e-3, 1e-2)
# Bit flips at these rates that spare the header leave most of the audio decodable.
LOW_FLIP_RATES = (1e-5, 1e-4)
CUT_FRACTIONS = (0.1, 0.5, 0.9)
# At least this many leading bytes survive the "body" flips: the magic and the first header fields.
KEPT_HEAD_BYTES = 64
LYING_HOURS = 5

Expect = Literal["clean", "salvage", "sound", "refused", "any"]
"""What the reader must do with a case, beyond never crashing or hanging:

* ``clean``: a sound file; decode it to the end with no warnings.
* ``salvage``: damaged (truncated, lying header) but partly sound; decode some audio, end
  normally, and say in ``reader.warnings`` what was lost.
* ``sound``: damaged in the payload or changing format; decode some audio and end normally.
* ``refused``: not a single audio recording; raise an ``InputError``.
* ``any``: anything but a crash or a hang.
"""

Kind = Literal["refused", "salvaged", "clean", "crashed", "hung"]


@dataclass(frozen=True)
class AudioFormat:
    """How to encode one source: a PyAV container and codec, with muxer options."""

    name: str
    container: str
    codec: str
    container_options: dict[str, str] = field(default_factory=dict)
    # False when the index comes after the audio (MP4 without faststart): a cut file loses it.
    index_first: bool = True


FORMATS = (
    AudioFormat("wav", "wav", "pcm_s16le"),
    AudioFormat("mp3", "mp3", "libmp3lame"),
    AudioFormat("ogg-opus", "ogg", "libopus"),
    AudioFormat("flac", "flac", "flac"),
    AudioFormat("m4a-faststart", "ipod", "aac", {"movflags": "+faststart"}),
    AudioFormat("m4a", "ipod", "aac", index_first=False),
    AudioFormat("webm-opus", "webm", "libopus"),
)
_FORMATS_BY_NAME = {fmt.name: fmt for fmt in FORMATS}


@dataclass(frozen=True)
class Case:
    """One fuzz input, built on demand.

    Attributes:
        name: Unique, stable name, e.g. ``"mp3/flip-1e-04-body"``.
        make: Builds the bytes (the corpus caches the encodings it derives them from).
        expect: What the reader must do with it (see ``Expect``).
    """

    name: str
    make: Callable[[], bytes] = field(repr=False, compare=False)
    expect: Expect = "any"


@dataclass
class Outcome:
    """What ``decode`` saw for one input.

    Attributes:
        kind: ``refused`` (an ``InputError``), ``salvaged`` (ended normally with warnings),
            ``clean`` (ended normally without), ``crashed`` (any other exception, or invalid
            pieces), ``hung`` (set by the caller's timeout).
        message: The refusal's reason, the warnings, or the crash's exception.
        error: Class name of the exception that ended decoding, if any.
        samples: Samples received in pieces.
        pieces: Pieces received.
        warnings: ``reader.warnings`` after decoding; None when the reader has no such attribute.
        problems: Broken piece invariants (non-finite or out-of-range samples, gaps, too many samples).
        traceback: The crash's traceback, for the report.
    """

    kind: Kind
    message: str = ""
    error: str | None = None
    samples: int = 0
    pieces: int = 0
    warnings: list[str] | None = None
    problems: list[str] = field(default_factory=list)
    traceback: str = ""

    @property
    def decoded_s(self) -> float:
        """Seconds of audio received in pieces."""
        return self.samples / RATE


# --- encoding -------------------------------------------------------------------------------


def encode(samples: np.ndarray, fmt: AudioFormat, *, rate: int = RATE, layout: str = "mono") -> bytes:
    """Encode float32 mono 16 kHz samples as ``fmt``, resampled to ``rate`` and ``layout`` on the way.

    Written through a temporary file because the MP4 muxer's faststart pass reopens its output.
    """
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        path = Path(folder) / "out"
        with av.open(str(path), "w", format=fmt.container, container_options=fmt.container_options) as out:
            stream = cast(av.audio.stream.AudioStream, out.add_stream(fmt.codec, rate=rate, layout=layout))
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1), format="flt", layout="mono"
            )
            frame.sample_rate = RATE
            frame.time_base = Fraction(1, RATE)
            frame.pts = 0
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                out.mux(packet)
        return path.read_bytes()


def encode_image(codec: Literal["png", "mjpeg"]) -> bytes:
    """A small still image: PNG, or JPEG from the MJPEG encoder."""
    pix_fmt = "rgb24" if codec == "png" else "yuvj420p"
    context = cast(av.video.codeccontext.VideoCodecContext, av.CodecContext.create(codec, "w"))
    context.width, context.height, context.pix_fmt = 48, 32, pix_fmt
    context.time_base = Fraction(1, 25)
    image = np.zeros((32, 48, 3), dtype=np.uint8)
    image[:, :24] = (200, 30, 30)
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=pix_fmt)
    frame.pts = 0
    return b"".join(bytes(packet) for packet in [*context.encode(frame), *context.encode(None)])


def video_without_audio() -> bytes:
    """An MP4 with an MPEG-4 video track and no audio track."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        return make_video_only(Path(folder), seconds=1.0).read_bytes()


def audio_start(data: bytes) -> int:
    """Byte offset of the first audio packet, i.e. the length of the container header (0 if unknown)."""
    with av.open(io.BytesIO(data), "r") as container:
        for packet in container.demux(audio=0):
            if packet.pos is not None and packet.pos > 0:
                return int(packet.pos)
    return 0


# --- mutations ------------------------------------------------------------------------------


def seeded_rng(name: str) -> np.random.Generator:
    """A generator seeded from the case name, so each case is the same on every run."""
    return np.random.default_rng(zlib.crc32(name.encode()))


def flip_bits(data: bytes, rate: float, rng: np.random.Generator, *, keep: int = 0) -> bytes:
    """Flip ``rate`` of the bits after the first ``keep`` bytes (at least one bit)."""
    body_bits = (len(data) - keep) * 8
    if body_bits <= 0:
        return data
    count = max(1, round(body_bits * rate))
    positions = rng.integers(0, body_bits, size=count) + keep * 8
    buffer = np.frombuffer(bytearray(data), dtype=np.uint8)
    np.bitwise_xor.at(buffer, positions // 8, (1 << (positions % 8)).astype(np.uint8))
    return buffer.tobytes()


def _wav_chunk(data: bytes, chunk_id: bytes) -> int:
    """Offset of a RIFF chunk's id in a WAV file."""
    offset = data.find(chunk_id, 12)
    if offset < 0:
        raise ValueError(f"no {chunk_id!r} chunk")
    return offset


def patch_wav_format(data: bytes, *, channels: int | None = None, sample_rate: int | None = None) -> bytes:
    """Rewrite fields of the WAV 'fmt ' chunk, leaving the rest (block align, byte rate) as it was."""
    fmt = _wav_chunk(data, b"fmt ") + 8
    patched = bytearray(data)
    if channels is not None:
        struct.pack_into("<H", patched, fmt + 2, channels)
    if sample_rate is not None:
        struct.pack_into("<I", patched, fmt + 4, sample_rate)
    return bytes(patched)


def lie_about_duration(data: bytes, seconds: float) -> bytes:
    """Set a 16-bit mono 16 kHz WAV's data and RIFF sizes as if it held ``seconds`` of audio."""
    size = int(seconds * RATE * 2)
    patched = bytearray(data)
    data_chunk = _wav_chunk(data, b"data")
    struct.pack_into("<I", patched, data_chunk + 4, size)
    struct.pack_into("<I", patched, 4, data_chunk + size)  # the RIFF size counts all but its first 8 bytes
    return bytes(patched)


def riff_header(payload_size: int) -> bytes:
    """A 44-byte PCM WAV header (16 kHz mono 16-bit) for ``payload_size`` bytes of data."""
    fmt = struct.pack("<HHIIHH", 1, 1, RATE, RATE * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + payload_size)
        + b"WAVEfmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", payload_size)
    )


def garble_first_box(data: bytes, rng: np.random.Generator) -> bytes:
    """Replace an MP4's first box (its ftyp) with random bytes of the same length."""
    size = int.from_bytes(data[:4], "big")
    return rng.bytes(size) + data[size:]


# --- the cases ------------------------------------------------------------------------------

PLAYLIST_M3U = "#EXTM3U\n#EXTINF:123,Sample\n/etc/passwd\nfile:///etc/hostname\n"
CONCAT_SCRIPT = "ffconcat version 1.0\nfile '/etc/passwd'\nfile 'http://127.0.0.1/a.mp3'\n"
PLAYLIST_HLS = (
    "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n"
    "http://127.0.0.1/segment0.ts\n#EXTINF:10.0,\nhttp://127.0.0.1:8080/segment1.ts\n#EXT-X-ENDLIST\n"
)
TEXT = "Minutes of the meeting\n\n1. Apologies\n2. Matters arising\n3. Any other business\n" * 40
HTML = (
    "<!DOCTYPE html>\n<html><head><title>Podcast episode 12</title></head>\n"
    '<body><h1>Episode 12</h1><audio src="episode12.mp3" controls></audio></body></html>\n'
)


class Corpus:
    """Clean encodings of real speech, made once, and every fuzz case derived from them.

    Args:
        speech_s: Seconds of speech in each format's clean source.
        noise_s: Seconds of white noise and of digital silence.
        extra_sources: More clean sources by name (for example a long real MP3), mutated like the others.
    """

    def __init__(self, *, speech_s: float, noise_s: float, extra_sources: dict[str, Path] | None = None) -> None:
        self.speech_s = speech_s
        self.noise_s = noise_s
        self.extra_sources = dict(extra_sources or {})
        self._sources: dict[str, bytes] = {}

    @functools.cached_property
    def speech(self) -> np.ndarray:
        """Float32 mono 16 kHz speech, ``speech_s`` long."""
        return load_samples(CLIP, seconds=self.speech_s)

    def source(self, name: str) -> bytes:
        """The clean bytes of one source (a format's name or an extra source's name), encoded once."""
        if name not in self._sources:
            extra = self.extra_sources.get(name)
            self._sources[name] = extra.read_bytes() if extra else encode(self.speech, _FORMATS_BY_NAME[name])
        return self._sources[name]

    def cases(self) -> list[Case]:
        """Every case, cheap to list: the bytes are built when a case's ``make`` is called."""
        cases: list[Case] = []
        for fmt in FORMATS:
            cases += self._mutations(fmt.name, index_first=fmt.index_first)
        for name in self.extra_sources:
            cases += self._mutations(name, index_first=True)
        return cases + self._wrong_headers() + self._not_audio() + self._signals() + self._format_changes()

    def _mutations(self, source: str, *, index_first: bool) -> list[Case]:
        """The clean source, bit flips, truncations and the header alone."""
        clean = functools.partial(self.source, source)
        cases = [Case(f"{source}/clean", clean, "clean")]
        for rate in FLIP_RATES:
            for where in ("body", "all"):
                name = f"{source}/flip-{rate:.0e}-{where}"
                # "body" spares the header; an index at the end (MP4 without faststart) still takes hits.
                sound = where == "body" and rate in LOW_FLIP_RATES and index_first
                cases.append(Case(name, functools.partial(self._flipped, source, name, rate, where), _sound(sound)))
        for fraction in CUT_FRACTIONS:
            # WAV keeps audio from its first bytes and declares its exact length. A compressed file
            # may need more than 10 % for a frame, and losing its last 10 % of a 3 s clip (0.3 s) is
            # within the tolerance for encoder delay and padding (streamer.media._EARLY_END_MIN_S).
            salvage = index_first and (fraction == 0.5 or source == "wav")
            make = functools.partial(self._cut, source, fraction)
            cases.append(Case(f"{source}/cut-{fraction:.0%}", make, "salvage" if salvage else "any"))
        cases.append(Case(f"{source}/header-only", functools.partial(self._header_only, source)))
        return cases

    def _flipped(self, source: str, name: str, rate: float, where: str) -> bytes:
        data = self.source(source)
        keep = max(KEPT_HEAD_BYTES, audio_start(data)) if where == "body" else 0
        return flip_bits(data, rate, seeded_rng(name), keep=keep)

    def _cut(self, source: str, fraction: float) -> bytes:
        data = self.source(source)
        return data[: int(len(data) * fraction)]

    def _header_only(self, source: str) -> bytes:
        data = self.source(source)
        return data[: audio_start(data) or KEPT_HEAD_BYTES]

    def _wrong_headers(self) -> list[Case]:
        def mp3_behind_riff() -> bytes:
            mp3 = self.source("mp3")
            return riff_header(len(mp3)) + mp3

        def lying_wav() -> bytes:
            one_second = encode(self.speech[:RATE], _FORMATS_BY_NAME["wav"])
            return lie_about_duration(one_second, LYING_HOURS * 3600)

        return [
            Case("wrong/mp3-behind-riff-header", mp3_behind_riff),
            Case("wrong/wav-fmt-8-channels", lambda: patch_wav_format(self.source("wav"), channels=8)),
            Case("wrong/wav-fmt-0-hz", lambda: patch_wav_format(self.source("wav"), sample_rate=0)),
            Case("wrong/m4a-ftyp-garbage", lambda: garble_first_box(self.source("m4a-faststart"), seeded_rng("ftyp"))),
            Case(f"lying/wav-{LYING_HOURS}h-header-1s-audio", lying_wav, "salvage"),
        ]

    def _not_audio(self) -> list[Case]:
        return [
            Case("empty", lambda: b"", "refused"),
            Case("one-byte", lambda: b"\x00", "refused"),
            Case("random-bytes", lambda: seeded_rng("random").bytes(4096), "refused"),
            Case("image/png", lambda: encode_image("png"), "refused"),
            Case("image/jpeg", lambda: encode_image("mjpeg"), "refused"),
            Case("video/mp4-no-audio", video_without_audio, "refused"),
            Case("playlist/m3u", lambda: PLAYLIST_M3U.encode(), "refused"),
            Case("playlist/ffconcat", lambda: CONCAT_SCRIPT.encode(), "refused"),
            Case("playlist/hls-localhost", lambda: PLAYLIST_HLS.encode(), "refused"),
            Case("text/plain", lambda: TEXT.encode(), "refused"),
            Case("text/html", lambda: HTML.encode(), "refused"),
        ]

    def _signals(self) -> list[Case]:
        def noise() -> np.ndarray:
            return (seeded_rng("noise").standard_normal(int(self.noise_s * RATE)) * 0.25).clip(-1, 1).astype(np.float32)

        def silence() -> np.ndarray:
            return np.zeros(int(self.noise_s * RATE), dtype=np.float32)

        wav, mp3 = _FORMATS_BY_NAME["wav"], _FORMATS_BY_NAME["mp3"]
        return [
            Case("noise/wav", lambda: encode(noise(), wav), "clean"),
            Case("noise/mp3", lambda: encode(noise(), mp3), "clean"),
            Case("silence/wav", lambda: encode(silence(), wav), "clean"),
            Case("silence/mp3", lambda: encode(silence(), mp3), "clean"),
        ]

    def _format_changes(self) -> list[Case]:
        def joined(fmt: AudioFormat) -> bytes:
            half = len(self.speech) // 2
            first = encode(self.speech[:half], fmt)
            return first + encode(self.speech[half:], fmt, rate=44100, layout="stereo")

        mp3 = _FORMATS_BY_NAME["mp3"]
        adts = AudioFormat("adts", "adts", "aac")
        return [
            Case("change/mp3-16k-mono+44k-stereo", lambda: joined(mp3), "sound"),
            Case("change/adts-16k-mono+44k-stereo", lambda: joined(adts), "sound"),
        ]


def _sound(sound: bool) -> Expect:
    return "sound" if sound else "any"


# --- decoding -------------------------------------------------------------------------------


def max_samples(max_duration_s: float) -> int:
    """The most samples a reader may yield under ``max_duration_s`` (the reader allows 1 s of grace)."""
    return int((max_duration_s + 1.0) * RATE)


def decode(path: Path, *, max_duration_s: float, piece_options: dict[str, float] | None = None) -> Outcome:
    """Open and decode ``path`` as the streamer does, checking every piece; never raises.

    Args:
        path: The input.
        max_duration_s: The reader's duration limit. Decoding stops early (as a problem) once more
            samples came out than the limit allows.
        piece_options: Keyword arguments of ``MediaReader.pieces``; ``PIECE_OPTIONS`` by default.

    Returns:
        What happened; ``kind`` is never ``hung`` (that takes a timeout, which is the caller's).
    """
    outcome = Outcome(kind="clean")
    try:
        with open_media(path, max_duration_s=max_duration_s) as reader:
            try:
                for piece in reader.pieces(**(piece_options or PIECE_OPTIONS)):
                    _check_piece(outcome, piece.offset, piece.duration, piece.samples)
                    if outcome.samples > max_samples(max_duration_s):
                        outcome.problems.append(f"decoded {outcome.decoded_s:.1f} s past the limit")
                        break
            finally:
                outcome.warnings = getattr(reader, "warnings", None)
    except InputError as exc:
        outcome.kind, outcome.error, outcome.message = "refused", type(exc).__name__, exc.reason
    except Exception as exc:  # anything else is a bug in the reader: record it for the report
        outcome.kind, outcome.error, outcome.message = "crashed", type(exc).__name__, f"{type(exc).__name__}: {exc}"
        outcome.traceback = traceback.format_exc()
        return outcome
    if outcome.problems:
        outcome.kind, outcome.message = "crashed", "invalid pieces: " + "; ".join(outcome.problems[:3])
    elif outcome.kind == "clean" and outcome.warnings:
        outcome.kind, outcome.message = "salvaged", " ".join(outcome.warnings)
    return outcome


def _check_piece(outcome: Outcome, offset: float, duration: float, samples: np.ndarray) -> None:
    """Record what is wrong with one piece: values, and its place on the timeline."""
    expected_offset = outcome.samples / RATE
    if abs(offset - expected_offset) > 1e-6:
        outcome.problems.append(f"piece {outcome.pieces} starts at {offset:.6f} s, not {expected_offset:.6f} s")
    if abs(duration - len(samples) / RATE) > 1e-6:
        outcome.problems.append(f"piece {outcome.pieces} lasts {duration} s but holds {len(samples)} samples")
    if not np.all(np.isfinite(samples)):
        outcome.problems.append(f"piece {outcome.pieces} has NaN or infinite samples")
    elif len(samples) and float(np.max(np.abs(samples))) > SAMPLE_LIMIT:
        outcome.problems.append(f"piece {outcome.pieces} has samples beyond ±{SAMPLE_LIMIT}")
    outcome.samples += len(samples)
    outcome.pieces += 1

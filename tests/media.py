"""Build test media files with PyAV from the shared clips (and synthetic signals).

Every ``make_*`` function writes into a directory the caller owns (usually ``tmp_path``) and
returns the path. Samples are float32 mono at 16 kHz throughout, like the streamer's.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from streamer.encode import encode_samples
from tests.paths import AUDIO

RATE = 16000
CLIP = AUDIO / "sherpa_yue-6.wav"  # 30.59 s of read speech
MEETING = AUDIO / "ktdc_meeting_2025-01-06_other_matters.mp3"  # 4'38" meeting

# suffix -> (container format, audio codec, encoder options)
_AUDIO_FORMATS: dict[str, tuple[str, str, dict[str, str]]] = {
    ".wav": ("wav", "pcm_s16le", {}),
    ".ogg": ("ogg", "libopus", {}),
    ".opus": ("ogg", "libopus", {}),
    ".mp3": ("mp3", "libmp3lame", {}),
    ".m4a": ("ipod", "aac", {}),
    ".flac": ("flac", "flac", {}),
}


def load_samples(path: Path = CLIP, *, seconds: float | None = None) -> np.ndarray:
    """Decode a file to float32 mono 16 kHz samples, optionally only its first ``seconds``."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
    parts: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            parts.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
    parts.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    samples = np.concatenate(parts).astype(np.float32)
    return samples if seconds is None else samples[: int(seconds * RATE)]


def tone(seconds: float, *, freq: float = 440.0, dbfs: float = -12.0) -> np.ndarray:
    """A sine tone whose RMS level is ``dbfs``."""
    t = np.arange(int(seconds * RATE), dtype=np.float64) / RATE
    amplitude = np.sqrt(2.0) * 10 ** (dbfs / 20)
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(seconds: float, *, noise_dbfs: float | None = None, seed: int = 0) -> np.ndarray:
    """Digital silence, or faint white noise at ``noise_dbfs`` RMS (a quiet room)."""
    n = int(seconds * RATE)
    if noise_dbfs is None:
        return np.zeros(n, dtype=np.float32)
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n) * 10 ** (noise_dbfs / 20)).astype(np.float32)


def write_audio(path: Path, samples: np.ndarray, *, bit_rate: int | None = None, faststart: bool = True) -> Path:
    """Encode mono 16 kHz samples to ``path``; the suffix picks the format (see ``_AUDIO_FORMATS``).

    ``faststart=False`` leaves an MP4's index (moov) at the end, as many cameras and editors do.
    """
    fmt, codec, options = _AUDIO_FORMATS[path.suffix]
    container_options = {"movflags": "+faststart"} if fmt == "ipod" and faststart else {}
    encode_samples(
        samples,
        str(path),
        container_format=fmt,
        codec=codec,
        bit_rate=bit_rate,
        options=options,
        container_options=container_options,
    )
    return path


def make_audio(
    directory: Path, suffix: str = ".ogg", *, clip: Path = CLIP, seconds: float | None = None, name: str = "clip"
) -> Path:
    """Re-encode (the start of) a shared clip into ``directory/name+suffix``."""
    return write_audio(directory / f"{name}{suffix}", load_samples(clip, seconds=seconds))


def make_m4a(
    directory: Path, *, clip: Path = CLIP, seconds: float | None = None, name: str = "clip", faststart: bool = True
) -> Path:
    """AAC in MP4; with ``faststart`` the index comes first, so it also decodes from a non-seekable stream."""
    return write_audio(directory / f"{name}.m4a", load_samples(clip, seconds=seconds), faststart=faststart)


def make_ogg(directory: Path, *, clip: Path = CLIP, seconds: float | None = None, name: str = "clip") -> Path:
    """Opus in Ogg (a non-seekable Ogg stream has no duration up front)."""
    return make_audio(directory, ".ogg", clip=clip, seconds=seconds, name=name)


def make_mp3(directory: Path, *, clip: Path = CLIP, seconds: float | None = None, name: str = "clip") -> Path:
    """MP3 with a Xing/Info header (exact duration in the metadata)."""
    return make_audio(directory, ".mp3", clip=clip, seconds=seconds, name=name)


def make_long(directory: Path, seconds: float, *, suffix: str = ".ogg", clip: Path = CLIP) -> Path:
    """The clip repeated end to end until ``seconds`` long."""
    one = load_samples(clip)
    repeats = int(np.ceil(seconds * RATE / len(one)))
    samples = np.tile(one, repeats)[: int(seconds * RATE)]
    return write_audio(directory / f"long_{int(seconds)}s{suffix}", samples)


def make_silence_file(directory: Path, seconds: float = 20.0, *, suffix: str = ".ogg") -> Path:
    """A file of faint noise far below the silence threshold (-70 dBFS)."""
    return write_audio(directory / f"silence{suffix}", silence(seconds, noise_dbfs=-70.0))


def make_video_only(directory: Path, seconds: float = 1.0) -> Path:
    """An MP4 with an MPEG-4 video track and no audio track."""
    path = directory / "video_only.mp4"
    fps = 10
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(int(seconds * fps)):
            image = np.full((64, 64, 3), (i * 20) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def make_truncated(directory: Path, suffix: str = ".mp3", *, keep: float = 0.5) -> Path:
    """The first ``keep`` fraction of the bytes of an encoded clip (an interrupted upload)."""
    whole = make_audio(directory, suffix, name="whole")
    data = whole.read_bytes()
    path = directory / f"truncated{suffix}"
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_text_file(directory: Path, name: str = "notes.mp3") -> Path:
    """A plain text file wearing a media extension."""
    path = directory / name
    path.write_text("Minutes of the meeting\n\n1. Apologies\n2. Matters arising\n" * 20, encoding="utf-8")
    return path


def make_playlist(directory: Path, name: str = "list.m3u8") -> Path:
    """An HLS playlist pointing at a local file (must be refused, never followed)."""
    path = directory / name
    path.write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n", encoding="utf-8"
    )
    return path


def make_joined_mp3(directory: Path, *, seconds: float = 8.0) -> Path:
    """Two MP3s joined byte for byte (``cat a.mp3 b.mp3``): 16 kHz mono, then 44.1 kHz stereo.

    The sample rate and the channels change mid-stream, as in files pasted together.
    """
    first = make_audio(directory, ".mp3", clip=AUDIO / "sherpa_yue-6.wav", seconds=seconds, name="first")
    second = directory / "second.mp3"
    samples = load_samples(AUDIO / "sherpa_yue-15.wav", seconds=seconds)
    with av.open(str(second), "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=44100, layout="stereo")
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=44100)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = RATE
        for resampled in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(resampled):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    path = directory / "joined.mp3"
    path.write_bytes(first.read_bytes() + second.read_bytes())
    return path


def make_noise_file(directory: Path, seconds: float = 20.0, *, dbfs: float = -20.0, suffix: str = ".ogg") -> Path:
    """Loud white noise: sound, but no speech."""
    return write_audio(directory / f"noise{suffix}", silence(seconds, noise_dbfs=dbfs, seed=7))


def make_cut_wav(directory: Path, *, keep: float, clip: Path = CLIP) -> Path:
    """A WAV whose bytes stop at ``keep`` of the file: its header still declares the whole clip."""
    whole = write_audio(directory / "whole.wav", load_samples(clip))
    data = whole.read_bytes()
    path = directory / f"cut_{int(keep * 100)}.wav"
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_lying_wav(directory: Path, *, claims_s: float, holds_s: float, clip: Path = CLIP) -> Path:
    """A WAV header that declares ``claims_s`` of audio over only ``holds_s`` of it."""
    whole = write_audio(directory / "honest.wav", load_samples(clip, seconds=holds_s)).read_bytes()
    data_at = whole.index(b"data")
    claimed = min(int(claims_s * RATE * 2), 0xFFFFFFFE)
    lying = bytearray(whole)
    lying[data_at + 4 : data_at + 8] = claimed.to_bytes(4, "little")
    lying[4:8] = min(claimed + data_at, 0xFFFFFFFE).to_bytes(4, "little")
    path = directory / "lying.wav"
    path.write_bytes(bytes(lying))
    return path


def make_png(directory: Path) -> Path:
    """A small PNG picture."""
    path = directory / "picture.png"
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 32, 32, "rgb24"
        frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), dtype=np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path

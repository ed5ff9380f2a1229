"""Live audio as clients send it on ``WS /v1/live``, made with PyAV from 16 kHz mono samples.

``recorded`` writes WebM/Opus or Ogg/Opus to a sink that cannot seek, as a browser's MediaRecorder
writes them (element sizes unknown, no index at the end); ``slices`` cuts a stream into pieces of
about 250 ms at arbitrary byte boundaries, as ``MediaRecorder.start(250)`` delivers them (the
first holds the header); ``ogg_pages`` splits Ogg at its pages; ``pcm`` gives raw linear16.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np

RATE = 16000


class _Sink:
    """A write-only file: the muxer cannot seek back to fill in sizes or write an index."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)


def _frame(samples: np.ndarray) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(samples, np.float32).reshape(1, -1), format="flt", layout="mono"
    )
    frame.sample_rate, frame.pts, frame.time_base = RATE, 0, Fraction(1, RATE)
    return frame


def recorded(samples: np.ndarray, container: str) -> bytes:
    """``samples`` as a recorder streams them: Opus at 48 kHz in ``"webm"`` or ``"ogg"`` (pages of 250 ms)."""
    sink = _Sink()
    options = {"page_duration": "250000"} if container == "ogg" else {}
    with av.open(sink, "w", format=container, container_options=options) as out:
        stream = out.add_stream("libopus", rate=48000, layout="mono")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        for resampled in resampler.resample(_frame(samples)) + resampler.resample(None):
            for packet in stream.encode(resampled):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return b"".join(sink.parts)


def slices(data: bytes, seconds: float, *, seed: int = 0) -> Iterator[bytes]:
    """``data`` (``seconds`` of audio) cut at arbitrary byte boundaries into slices of about 250 ms."""
    rng = np.random.default_rng(seed)
    mean = len(data) / seconds / 4
    offset = 0
    while offset < len(data):
        size = max(1, int(mean * rng.uniform(0.5, 1.5)))
        yield data[offset : offset + size]
        offset += size


def ogg_pages(data: bytes) -> list[bytes]:
    """An Ogg stream split at its pages."""
    starts = [i for i in range(len(data)) if data.startswith(b"OggS", i)]
    return [data[a:b] for a, b in zip(starts, [*starts[1:], len(data)], strict=True)]


def pcm(samples: np.ndarray, rate: int, channels: int) -> bytes:
    """Raw little-endian 16-bit PCM at ``rate``; in stereo the right channel is the left at half level."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    mono = np.concatenate(
        [out.to_ndarray().reshape(-1) for out in resampler.resample(_frame(samples)) + resampler.resample(None)]
    )
    if channels == 2:
        mono = np.stack([mono, mono // 2], axis=1).reshape(-1)
    return mono.astype("<i2").tobytes()

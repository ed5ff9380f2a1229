"""The job's audio for playback: the whole timeline (silences included), Opus in Ogg.

The streamer skips silence when it cuts chunks, but a reader clicking a line must hear it at
the line's time: this writer gets every piece, silent or not, in order, so the file's clock
is the transcript's clock. About 4 kB per second of audio (32 kbit/s).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import av
import av.audio.stream
import numpy as np

from streamer.chunker import SAMPLE_RATE

BIT_RATE = 32_000


class PlaybackWriter:
    """Encodes 16 kHz mono float32 samples to an Ogg/Opus file as they come."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out = av.open(str(path), "w", format="ogg")
        # compression_level 0: 0.5 s instead of 4.5 s to encode the 4'38" meeting; speech does not miss it.
        stream = self._out.add_stream("libopus", rate=SAMPLE_RATE, layout="mono", options={"compression_level": "0"})
        self._stream = cast(av.audio.stream.AudioStream, stream)
        self._stream.bit_rate = BIT_RATE
        self.seconds = 0.0
        self._closed = False

    def write(self, samples: np.ndarray) -> None:
        if len(samples) == 0:
            return
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        for packet in self._stream.encode(frame):
            self._out.mux(packet)
        self.seconds += len(samples) / SAMPLE_RATE

    def close(self) -> None:
        """Flush the encoder and finish the file (again: nothing)."""
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self._stream.encode(None):
                self._out.mux(packet)
        finally:
            self._out.close()

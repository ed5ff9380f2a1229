"""Where a piece of audio holds speech: Silero VAD, as bundled with faster-whisper.

For the local backend the streamer asks whether a piece holds any speech before it sends it,
with faster-whisper's default options, the ones the local backend's own ``vad_filter`` applies
inside each chunk: a piece dropped here would come back empty from the local model anyway. For
an API backend it asks where the speech is, to send that alone (``streamer.cutter``), so noise,
music, hum and pauses are never sent to a paid API. About 2 s of one core per 10 minutes of audio.
"""

from __future__ import annotations

import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps


def has_speech(samples: np.ndarray, options: VadOptions | None = None) -> bool:
    """Whether Silero VAD finds any speech in 16 kHz mono float32 ``samples``.

    Args:
        samples: The piece's audio.
        options: VAD options; faster-whisper's defaults when None.

    Returns:
        True when at least one speech stretch is found.
    """
    stretches = get_speech_timestamps(np.ascontiguousarray(samples, dtype=np.float32), options or VadOptions())
    return bool(stretches)


# An API backend's chunks (streamer.cutter): every pause from 0.1 s on, so that there is one to cut
# at every few seconds, and no padding here: the cutter keeps a little of each pause itself.
STRETCH_OPTIONS = VadOptions(min_silence_duration_ms=30, speech_pad_ms=0)


def speech_stretches(samples: np.ndarray) -> list[tuple[int, int]]:
    """The stretches of speech Silero VAD finds in 16 kHz mono float32 ``samples``, as sample indices.

    Args:
        samples: The audio.

    Returns:
        Sorted, disjoint ``(start, end)`` pairs; pauses between them last at least 0.1 s.
    """
    stretches = get_speech_timestamps(np.ascontiguousarray(samples, dtype=np.float32), STRETCH_OPTIONS)
    return [(s["start"], s["end"]) for s in stretches]

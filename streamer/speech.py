"""Whether a piece of audio holds speech: Silero VAD, as bundled with faster-whisper.

The streamer asks before it sends a piece to ASR, so noise, music and hum are never sent
to a paid API. The options are faster-whisper's defaults, the ones the local backend's own
``vad_filter`` applies inside each chunk: a piece dropped here would come back empty from
the local model anyway. About 2 s of one core per 10 minutes of audio.
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

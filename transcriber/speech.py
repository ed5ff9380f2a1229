"""Where a chunk has speech: Silero VAD, as bundled with faster-whisper, on the chunk's own audio.

The OpenAI backend asks for a model that answers text without timestamps, to place that text
(:mod:`transcriber.placement`). The options are Silero's own defaults (pauses from 100 ms, a
30 ms pad), not faster-whisper's, which are for cropping audio before ASR (2 s pauses, 400 ms
pads) and would merge a whole chunk into one region. A few tens of milliseconds of one core for
a 20 s chunk.
"""

from __future__ import annotations

import io

import av
from faster_whisper import decode_audio
from faster_whisper.vad import VadOptions, get_speech_timestamps

from transcriber.placement import Region

SAMPLE_RATE = 16000
PLACEMENT_VAD = VadOptions(threshold=0.5, min_speech_duration_ms=250, min_silence_duration_ms=100, speech_pad_ms=30)


def speech_regions(audio: bytes, options: VadOptions = PLACEMENT_VAD) -> list[Region] | None:
    """The speech regions of a compressed chunk (blocking: run it in a thread).

    Args:
        audio: The chunk as sent to ASR (FLAC, Ogg/Opus or anything FFmpeg decodes).
        options: Silero VAD's options.

    Returns:
        Start and end of each region in seconds from the chunk start, in order (empty when no
        speech is found), or None when the audio cannot be decoded here.
    """
    try:
        samples = decode_audio(io.BytesIO(audio), sampling_rate=SAMPLE_RATE)
    except (av.FFmpegError, ValueError, IndexError, OSError):
        return None
    found = get_speech_timestamps(samples, options, sampling_rate=SAMPLE_RATE)
    return [(r["start"] / SAMPLE_RATE, r["end"] / SAMPLE_RATE) for r in found]

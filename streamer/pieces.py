"""What to send to ASR from a stream of 16 kHz samples, whatever the samples come from.

A file, a link and (issue 19) a live socket all come down to 16 kHz mono float32 blocks in order;
:func:`speech_chunks` turns those into the chunks the transcribers get, as soon as each is cut:

- the local backend gets whole pieces of ``chunk_lengths`` cut at the quietest point
  (``streamer.chunker``), those that are silent or, with ``SCRIBE_VAD``, have no speech left out;
- an API backend (with ``SCRIBE_VAD``) gets the speech alone, regrouped at the pauses Silero VAD
  finds (``streamer.cutter``), so no pause is billed.

Blocking (Silero VAD runs here); the streamer runs it in its decoding thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from core.settings import Settings
from streamer.chunker import cut
from streamer.cutter import SpeechChunk, SpeechCutter
from streamer.speech import has_speech, speech_stretches


def speech_chunks(
    blocks: Iterable[np.ndarray], settings: Settings, *, keep: Callable[[np.ndarray], None] | None = None
) -> Iterator[tuple[SpeechChunk | None, float]]:
    """The chunks to send, each with the seconds of input read when it was cut.

    Args:
        blocks: 16 kHz mono float32 samples, in order, from the start of the input.
        settings: ``chunk_lengths``, ``chunk_first_max_s``, ``silence_dbfs``, ``vad`` and ``asr_backend``.
        keep: Called with every piece of the timeline as it is read, sent or not (the playback file).

    Yields:
        ``(chunk, seconds)``; ``(None, seconds)`` for a piece of the timeline nothing was sent of, so
        the caller can report progress through silence.
    """
    min_s, max_s = settings.chunk_lengths
    cutter = (
        SpeechCutter(speech_stretches, min_s=min_s, max_s=max_s, first_max_s=settings.chunk_first_max_s)
        if settings.vad and settings.asr_backend == "openai"
        else None
    )
    seconds = 0.0
    pieces = cut(
        blocks, min_s=min_s, max_s=max_s, silence_dbfs=settings.silence_dbfs, first_max_s=settings.chunk_first_max_s
    )
    for piece in pieces:
        if keep is not None:
            keep(piece.samples)
        seconds = piece.end
        if cutter is not None:
            chunks = cutter.feed(piece.samples)
        elif piece.silent or (settings.vad and not has_speech(piece.samples)):
            chunks = []
        else:
            chunks = [SpeechChunk(piece.offset, piece.duration, piece.samples, ())]
        for chunk in chunks:
            yield chunk, seconds
        if not chunks:
            yield None, seconds
    for chunk in cutter.flush() if cutter is not None else ():
        yield chunk, seconds

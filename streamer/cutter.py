"""Chunks of speech for an API backend: cut at the pauses a speech detector finds, sent without them.

A paid API bills every second it is sent, pauses included, and answers many chunks side by side.
So for an API backend the decoded audio is regrouped: a chunk runs from a stretch of speech to
the longest pause ``min_s`` to ``max_s`` later, and what is sent is its speech stretches joined,
each with up to ``pad_s`` of the pause on either side so that no word is clipped. The rest of
each pause is never sent. ``SpeechChunk.speech`` says where the joined stretches sit in the
chunk, so the transcriber puts the times it gets back on the chunk's timeline, as faster-whisper's
own ``vad_filter`` does (``collect_chunks``, ``SpeechTimestampsMap``).

Pure apart from the detector it is given: Silero VAD in the streamer (``streamer.speech``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from core.messages import SPEECH_PAD_S
from streamer.chunker import FRAME, SAMPLE_RATE, frame_levels

Detect = Callable[[np.ndarray], Sequence[tuple[int, int]]]
"""The speech stretches of 16 kHz mono samples: sorted, disjoint ``(start, end)`` sample indices."""

_TICK = SAMPLE_RATE // 1000  # every cut falls on a whole millisecond, so times in seconds are exact
# A pause this long is a clear break (a sentence's or a phrase's end): the last one between min_s and
# max_s ends the chunk, so chunks are as long as they may be and a video needs fewer calls side by side.
CLEAR_PAUSE_S = 0.5


@dataclass(frozen=True)
class SpeechChunk:
    """A stretch of the input to send: its span on the timeline and the speech in it.

    Attributes:
        offset: Seconds from the start of the input to the start of the chunk.
        duration: Seconds the chunk spans on the timeline.
        samples: float32 mono at 16 kHz: the stretches of ``speech``, joined.
        speech: ``(start, end)`` seconds from ``offset`` of each stretch ``samples`` holds, in order.
    """

    offset: float
    duration: float
    samples: np.ndarray = field(repr=False)
    speech: tuple[tuple[float, float], ...]

    @property
    def end(self) -> float:
        """Seconds from the start of the input to the end of this chunk."""
        return self.offset + self.duration


class SpeechCutter:
    """Feed 16 kHz float32 mono samples, get chunks of speech cut at pauses (see the module doc).

    Rules, on the stretches ``detect`` finds in the next ``max_s + lookahead_s + slack_s`` of audio:

    - A chunk starts ``pad_s`` before its first stretch (a pause before it is skipped) and ends in the
      last clear pause (:data:`CLEAR_PAUSE_S`) between ``min_s`` and ``max_s`` from its start, else the
      longest pause there, ``pad_s`` (or half the pause, if shorter) after the speech; failing one, in the
      longest pause before ``min_s``; failing that (speech
      without a pause for ``max_s``), at the quietest 30 ms frame between ``min_s`` and ``max_s``.
    - With ``first_max_s`` above 0, the first chunk is cut between half that and that, so the first line
      comes back sooner.
    - Audio without speech is dropped. ``flush`` emits the rest: in one chunk where it fits ``max_s``. The
      result does not depend on how the input was split across ``feed`` calls: the detector always sees the
      same stretches of audio.
    """

    def __init__(
        self,
        detect: Detect,
        *,
        min_s: float,
        max_s: float,
        first_max_s: float = 0.0,
        pad_s: float = SPEECH_PAD_S,
        lookahead_s: float = 1.0,
        slack_s: float = 2.0,
    ) -> None:
        """Set the cut rules.

        Args:
            detect: Finds the speech stretches in samples (Silero VAD in the streamer).
            min_s: Shortest chunk, where a pause allows.
            max_s: Longest chunk.
            first_max_s: If above 0, the first chunk is cut between half this and this.
            pad_s: Pause kept on each side of a stretch of speech.
            lookahead_s: Audio past ``max_s`` the detector sees, to know the pauses near it.
            slack_s: Leading pause the detector's window has room for before it is skipped and looked at again.

        Raises:
            ValueError: Unless ``0 < min_s <= max_s``.
        """
        if not 0 < min_s <= max_s:
            raise ValueError(f"need 0 < min_s <= max_s, got {min_s}, {max_s}")
        self._detect = detect
        self._min, self._max = _samples(min_s), _samples(max_s)
        first = min(self._max, _samples(first_max_s))
        self._first: tuple[int, int] | None = (_floor(first // 2), first) if first > 0 else None
        self._pad = _samples(pad_s)
        self._look = _samples(lookahead_s)
        self._slack = _samples(slack_s)
        self._clear = _samples(CLEAR_PAUSE_S)
        self._buf = np.empty(0, dtype=np.float32)
        self._start = 0  # absolute sample index of _buf[0]

    def feed(self, samples: np.ndarray) -> list[SpeechChunk]:
        """Add samples; return the chunks that can be cut now (often none).

        Args:
            samples: 1-D float32 mono samples at 16 kHz, following the ones fed before.
        """
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError("feed() takes 1-D mono samples")
        self._buf = np.concatenate((self._buf, samples))
        return self._drain(final=False)

    def flush(self) -> list[SpeechChunk]:
        """Return the chunks of the rest of the input; the cutter is empty afterwards (offsets keep counting)."""
        chunks = self._drain(final=True)
        self._drop(len(self._buf))
        return chunks

    def _drain(self, *, final: bool) -> list[SpeechChunk]:
        chunks: list[SpeechChunk] = []
        while len(self._buf):
            low, high = self._first or (self._min, self._max)
            window = high + self._look + self._slack
            if len(self._buf) < window and not final:
                break
            seen = self._buf[:window]
            at_end = final and len(seen) == len(self._buf)  # nothing comes after what the detector sees
            stretches = [(int(a), int(b)) for a, b in self._detect(seen)]
            if not stretches:  # no speech: dropped, but for the end, where speech may be starting
                self._drop(len(seen) if at_end else len(seen) - self._look)
                continue
            start = _floor(max(0, stretches[0][0] - self._pad))
            if start > self._slack and not at_end:  # a long pause first: skip it, look again
                self._drop(start)
                continue
            end = self._cut(seen, stretches, start, low, high, at_end=at_end)
            chunks.append(self._chunk(stretches, start, end, len(seen)))
            self._drop(end)
            self._first = None
        return chunks

    def _cut(
        self, seen: np.ndarray, stretches: list[tuple[int, int]], start: int, low: int, high: int, *, at_end: bool
    ) -> int:
        """Where the chunk starting at ``start`` ends: in a pause ``low`` to ``high`` samples on, if there is one."""
        low = max(start + low, stretches[0][0] + _TICK)  # with some speech in it, however short min_s is
        high = max(start + high, low)
        last = min(len(seen), _ceil(stretches[-1][1] + self._pad))
        if at_end and last <= high:  # the rest fits
            return last
        pauses = []  # (length, where the chunk ends when cut in it)
        for i, (_, speech_end) in enumerate(stretches):
            after = stretches[i + 1][0] if i + 1 < len(stretches) else len(seen)
            if after > speech_end:  # not speech up to the end of what was seen
                pauses.append((after - speech_end, speech_end + _floor(min(self._pad, (after - speech_end) // 2))))
        within = [p for p in pauses if low <= p[1] <= high]
        before = [p for p in pauses if p[1] < low]
        if clear := [p for p in within if p[0] >= self._clear]:
            return clear[-1][1]  # the last clear pause: chunks as long as they may be, so fewer calls
        if within or before:
            return max(within or before, key=lambda p: p[0])[1]
        # Speech without a pause for the whole window: cut where it is quietest.
        quietest = int(np.argmin(frame_levels(seen[low:high]))) if high - low >= FRAME else 0
        return min(high, low + quietest * FRAME + FRAME // 2)

    def _chunk(self, stretches: list[tuple[int, int]], start: int, end: int, seen: int) -> SpeechChunk:
        """The chunk spanning ``start`` to ``end`` of the buffer: its stretches, padded into their pauses, joined."""
        kept: list[tuple[int, int]] = []
        for i, (a, b) in enumerate(stretches):
            if a >= end:
                break
            before = (a - stretches[i - 1][1]) // 2 if i else a  # the pause is shared with the stretch before
            after = ((stretches[i + 1][0] if i + 1 < len(stretches) else seen) - b) // 2
            a = max(start, _floor(a - min(self._pad, before)))
            b = min(end, _ceil(b + min(self._pad, after)))
            if kept and a <= kept[-1][1]:
                kept[-1] = (kept[-1][0], b)
            else:
                kept.append((a, b))
        return SpeechChunk(
            offset=(self._start + start) / SAMPLE_RATE,
            duration=(end - start) / SAMPLE_RATE,
            samples=np.concatenate([self._buf[a:b] for a, b in kept]),
            speech=tuple(((a - start) / SAMPLE_RATE, (b - start) / SAMPLE_RATE) for a, b in kept),
        )

    def _drop(self, n: int) -> None:
        self._buf = self._buf[n:]
        self._start += n


def _samples(seconds: float) -> int:
    """Seconds as samples, on a whole millisecond."""
    return _floor(round(seconds * SAMPLE_RATE))


def _floor(n: int) -> int:
    return n - n % _TICK


def _ceil(n: int) -> int:
    return _floor(n + _TICK - 1)

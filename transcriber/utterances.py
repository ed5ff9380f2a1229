"""Live audio with a paid backend: utterances cut at pauses, each sent once.

Re-decoding a rolling buffer (:class:`transcriber.live.LocalAgreement`) would bill the same audio
5-20 times. :class:`Utterances` instead finds speech with Silero VAD (as bundled with
faster-whisper; the transcriber does not import the streamer), waits for a pause of
``pause_s`` after speech, or for ``max_utterance_s`` of speech, and sends the speech up to there
once. What comes back is committed as it is: no interim. Silence before an utterance is never
sent, and no sample is sent twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import numpy as np
from faster_whisper.vad import get_speech_timestamps

from core.messages import RawSegment, RawWord
from transcriber.live import SAMPLE_RATE, STEP_S, TAIL_CHARS, Line, LiveStart, LiveUpdate
from transcriber.speech import PLACEMENT_VAD

PAUSE_S = 0.5  # a pause this long after speech ends an utterance
MAX_UTTERANCE_S = 15.0
PAD_S = 0.1  # silence kept around an utterance's speech (inside the pause)
QUIET_KEEP_S = 0.5  # with no speech in the buffer, only its last half second is kept (speech may be starting)

Send = Callable[[np.ndarray, float], Awaitable[list[RawSegment]]]
"""Transcribe one utterance (billed) that starts at the given session second; segment times relative to its
first sample."""

Region = tuple[float, float]
FindSpeech = Callable[[np.ndarray], list[Region]]


def silero_speech(samples: np.ndarray) -> list[Region]:
    """Speech regions of 16 kHz samples in seconds (Silero's own options: pauses from 100 ms)."""
    found = get_speech_timestamps(samples, PLACEMENT_VAD, sampling_rate=SAMPLE_RATE)
    return [(r["start"] / SAMPLE_RATE, r["end"] / SAMPLE_RATE) for r in found]


class Utterances:
    """Utterance mode: the live policy of a backend that bills each call."""

    def __init__(
        self,
        send: Send,
        *,
        start: LiveStart | None = None,
        find_speech: FindSpeech = silero_speech,
        step_s: float = STEP_S,
        pause_s: float = PAUSE_S,
        max_utterance_s: float = MAX_UTTERANCE_S,
    ) -> None:
        """Start a session (or take one over at ``start``).

        Args:
            send: The paid backend (encodes, sends, records usage).
            start: Where to start; default a new session at time 0.
            find_speech: Speech regions of samples, in seconds (blocking: run in a thread).
            step_s: Seconds of new audio before :attr:`ready`.
            pause_s: The pause that ends an utterance.
            max_utterance_s: The longest utterance sent; longer speech is cut at its widest pause.
        """
        start = start or LiveStart()
        self._send = send
        self._find_speech = find_speech
        self._step = int(step_s * SAMPLE_RATE)
        self._pause_s = pause_s
        self._max_s = max_utterance_s
        self._offset = start.committed_until
        self._buffer = np.zeros(0, dtype=np.float32)
        self._checked = 0
        self._next_line = start.next_line
        self._tail = start.tail

    def feed(self, samples: np.ndarray) -> None:
        """Append 16 kHz mono float32 samples (the session's audio, in order)."""
        self._buffer = np.concatenate([self._buffer, np.asarray(samples, dtype=np.float32)])

    @property
    def ready(self) -> bool:
        """Whether a step's worth of audio has arrived since the last look for a pause."""
        return len(self._buffer) - self._checked >= self._step

    @property
    def heard_until(self) -> float:
        """Session seconds of audio fed so far."""
        return self._offset + len(self._buffer) / SAMPLE_RATE

    @property
    def state(self) -> LiveStart:
        """Where another transcriber would resume this session."""
        return LiveStart(committed_until=round(self._offset, 3), next_line=self._next_line, tail=self._tail)

    async def step(self) -> LiveUpdate:
        """Send every utterance that a pause (or the length limit) has ended."""
        return await self._send_ended(final=False)

    async def finish(self) -> LiveUpdate:
        """Send what speech remains."""
        return await self._send_ended(final=True)

    async def _send_ended(self, *, final: bool) -> LiveUpdate:
        lines: list[Line] = []
        while True:
            self._checked = len(self._buffer)
            regions = await asyncio.to_thread(self._find_speech, self._buffer)
            heard = len(self._buffer) / SAMPLE_RATE
            if not regions:
                self._drop(heard if final else heard - QUIET_KEEP_S)
                return LiveUpdate(lines=lines)
            end = _utterance_end(regions, heard, pause_s=self._pause_s, max_s=self._max_s, final=final)
            if end is None:
                self._drop(regions[0][0] - PAD_S)  # the silence before the speech is never sent
                return LiveUpdate(lines=lines)
            lines.extend(await self._send_utterance(max(0.0, regions[0][0] - PAD_S), end))

    async def _send_utterance(self, start: float, end: float) -> list[Line]:
        """Send the buffer's ``[start, end)`` seconds, commit what comes back, drop the buffer up to ``end``."""
        samples = self._buffer[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
        at = self._offset + start
        segments = await self._send(samples, round(at, 3))
        self._drop(end)
        lines = []
        for segment in segments:
            if not segment.text.strip():
                continue
            lines.append(Line(index=self._next_line, segment=_shifted(segment, at, end - start)))
            self._next_line += 1
            self._tail = (self._tail + segment.text.strip())[-TAIL_CHARS:]
        return lines

    def _drop(self, seconds: float) -> None:
        samples = min(max(0, int(seconds * SAMPLE_RATE)), len(self._buffer))
        self._buffer = self._buffer[samples:]
        self._checked = max(0, self._checked - samples)
        self._offset += samples / SAMPLE_RATE


def _utterance_end(
    regions: Sequence[Region], heard: float, *, pause_s: float, max_s: float, final: bool
) -> float | None:
    """Where the utterance that starts with ``regions[0]`` ends (buffer seconds), or None if it has not ended.

    It ends at the last pause of at least ``pause_s`` after speech within ``max_s`` of its start (a
    pause at the buffer's end counts once heard, and always at the session's end); past ``max_s`` of
    speech, at the widest pause within ``max_s``, or at ``max_s`` if it has none.
    """
    first = max(0.0, regions[0][0] - PAD_S)  # where the utterance sent starts
    gaps = [(regions[i + 1][0] - end, end) for i, (_, end) in enumerate(regions[:-1])]
    gaps.append((float("inf") if final else heard - regions[-1][1], regions[-1][1]))
    ends = [end for gap, end in gaps if gap >= pause_s and end - first <= max_s]
    if ends:
        end = ends[-1]
        gap = next(g for g, e in gaps if e == end)
        return min(heard, end + min(PAD_S, gap / 2))
    if heard - first <= max_s and not final:
        return None
    inside = [(gap, end) for gap, end in gaps if end - first <= max_s and gap != float("inf")]
    if inside:
        gap, end = max(inside)
        return min(heard, end + gap / 2)
    return min(heard, first + max_s)


def _shifted(segment: RawSegment, at: float, duration: float) -> RawSegment:
    """A segment of an utterance starting at ``at`` on the session timeline (clamped into the utterance)."""

    def time(seconds: float) -> float:
        return round(at + min(max(0.0, seconds), duration), 3)

    words = [
        RawWord(text=w.text, start=time(w.start), end=time(w.end), probability=w.probability) for w in segment.words
    ]
    return RawSegment(start=time(segment.start), end=time(segment.end), text=segment.text.strip(), words=words)

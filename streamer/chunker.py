"""Cutting 16 kHz mono samples into pieces at silences: pure, no I/O.

Pieces tile the timeline with no overlap, are cut at a pause between ``min_s`` and ``max_s`` when
there is one, and long silences come out as their own ``silent`` pieces, which the service does not
send to ASR.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 16000
FRAME = 480  # 30 ms analysis frame
_DB_FLOOR = -120.0


def frame_levels(samples: np.ndarray) -> np.ndarray:
    """RMS level in dBFS of each complete 30 ms frame (a partial last frame is ignored)."""
    n = len(samples) // FRAME
    if n == 0:
        return np.empty(0, dtype=np.float64)
    frames = np.asarray(samples[: n * FRAME], dtype=np.float32).reshape(n, FRAME)
    power = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / FRAME
    return np.maximum(10.0 * np.log10(power + 1e-30), _DB_FLOOR)


def is_silent(samples: np.ndarray, silence_dbfs: float) -> bool:
    """True when every 30 ms frame (and the partial last one) is below ``silence_dbfs`` RMS.

    Args:
        samples: float32 mono samples in [-1, 1].
        silence_dbfs: Threshold in dBFS (RMS of a full-scale sine is -3 dBFS).
    """
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    levels = frame_levels(samples)
    tail = samples[len(levels) * FRAME :]
    if len(tail):
        tail_power = float(np.dot(tail, tail)) / len(tail)
        levels = np.append(levels, 10.0 * math.log10(tail_power + 1e-30))
    return bool(np.all(levels < silence_dbfs))


@dataclass(frozen=True)
class Piece:
    """A stretch of the input, cut at a pause.

    Attributes:
        offset: Seconds from the start of the input.
        duration: Seconds.
        samples: float32 mono at 16 kHz.
        silent: True when the whole piece is below the silence threshold (not sent to ASR).
    """

    offset: float
    duration: float
    samples: np.ndarray = field(repr=False)
    silent: bool

    @property
    def end(self) -> float:
        """Seconds from the start of the input to the end of this piece."""
        return self.offset + self.duration


class Chunker:
    """Pure, no I/O: feed 16 kHz float32 mono samples, get pieces cut at silences.

    Rules (all on 30 ms frames, a frame is quiet when its RMS is below ``silence_dbfs``):

    - A piece is cut between ``min_s`` and ``max_s`` (frame-rounded) from its start, once ``max_s``
      of audio is buffered: in the longest quiet run in that window (its middle; or just after the
      speech when the run is long enough to be a piece of its own), else at the quietest frame.
    - A quiet run of at least ``min_silence_s`` at the start of the buffer becomes its own silent
      piece (up to ``max_s`` each), leaving ``pad_s`` of quiet on the speech side so words are not
      clipped. Silent pieces may be shorter than ``min_s``: they are never sent to ASR.
    - With ``first_max_s`` above 0, the first speech piece is cut between half that and that: a short
      first chunk is transcribed sooner, so the first line reaches the user sooner.
    - ``flush`` emits the rest. Pieces tile the input exactly (no gap, no overlap) and the result
      does not depend on how the input was split across ``feed`` calls.
    """

    def __init__(
        self,
        *,
        min_s: float,
        max_s: float,
        silence_dbfs: float,
        first_max_s: float,
        min_silence_s: float = 3.0,
        pad_s: float = 0.2,
    ) -> None:
        """Set the cut rules (the service passes the ``chunk_*`` and ``silence_dbfs`` settings).

        Args:
            min_s: Shortest piece (except the last and silent ones).
            max_s: Longest piece.
            silence_dbfs: RMS threshold under which a 30 ms frame counts as quiet.
            first_max_s: If above 0, the first speech piece is cut between half this and this.
            min_silence_s: Shortest quiet run that becomes its own silent piece.
            pad_s: Quiet kept on the speech side of a silent piece.

        Raises:
            ValueError: Unless ``0 < min_s <= max_s``.
        """
        if not 0 < min_s <= max_s:
            raise ValueError(f"need 0 < min_s <= max_s, got {min_s}, {max_s}")
        frame_s = FRAME / SAMPLE_RATE
        self._max_f = max(1, math.floor(max_s / frame_s + 1e-9))
        self._min_f = min(self._max_f, max(1, math.ceil(min_s / frame_s - 1e-9)))
        # (min, max) frames of the first speech piece, when it is to be short.
        first_max_f = min(self._max_f, math.floor(first_max_s / frame_s + 1e-9))
        self._first: tuple[int, int] | None = (max(1, first_max_f // 2), first_max_f) if first_max_f > 0 else None
        self._pad_f = max(0, round(pad_s / frame_s))
        self._silent_run_f = min(self._max_f, max(self._pad_f + 1, math.ceil(min_silence_s / frame_s - 1e-9)))
        self.silence_dbfs = silence_dbfs
        capacity = (self._max_f + 1) * FRAME * 2
        self._buf = np.empty(capacity, dtype=np.float32)
        self._db = np.empty(capacity // FRAME + 1, dtype=np.float64)
        self._head = 0  # first unconsumed sample in _buf (always a frame boundary)
        self._n = 0  # samples in _buf
        self._nf = 0  # complete frames in _buf whose level is in _db
        self._start = 0  # absolute sample index of _buf[_head]

    @property
    def buffered_s(self) -> float:
        """Seconds of audio fed but not yet emitted."""
        return (self._n - self._head) / SAMPLE_RATE

    def feed(self, samples: np.ndarray) -> list[Piece]:
        """Add samples; return the pieces that can be cut now (often none).

        Args:
            samples: 1-D float32 mono samples at 16 kHz.
        """
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError("feed() takes 1-D mono samples")
        self._append(samples)
        return self._drain(final=False)

    def flush(self) -> list[Piece]:
        """Return every remaining piece; the chunker is empty afterwards (offsets keep counting)."""
        pieces = self._drain(final=True)
        self._head = self._n = self._nf = 0
        return pieces

    def _append(self, samples: np.ndarray) -> None:
        need = self._n - self._head + len(samples)
        if self._n + len(samples) > len(self._buf):
            keep_f = self._head // FRAME
            live = self._n - self._head
            if need > len(self._buf) // 2:  # grow; otherwise compacting is enough
                buf = np.empty(max(need * 2, len(self._buf)), dtype=np.float32)
                db = np.empty(len(buf) // FRAME + 1, dtype=np.float64)
            else:
                buf, db = self._buf, self._db
            buf[:live] = self._buf[self._head : self._n]
            db[: self._nf - keep_f] = self._db[keep_f : self._nf]
            self._buf, self._db = buf, db
            self._n, self._nf, self._head = live, self._nf - keep_f, 0
        self._buf[self._n : self._n + len(samples)] = samples
        self._n += len(samples)
        new_nf = self._n // FRAME
        if new_nf > self._nf:
            self._db[self._nf : new_nf] = frame_levels(self._buf[self._nf * FRAME : new_nf * FRAME])
            self._nf = new_nf

    def _drain(self, *, final: bool) -> list[Piece]:
        pieces = []
        while (piece := self._next_piece(final=final)) is not None:
            pieces.append(piece)
        return pieces

    def _next_piece(self, *, final: bool) -> Piece | None:
        available = self._n - self._head
        if available == 0:
            return None
        first_f = self._head // FRAME
        quiet = self._db[first_f : self._nf] < self.silence_dbfs
        frames = len(quiet)
        lead = frames if quiet.all() else int(np.argmin(quiet))  # leading quiet frames
        lead_closed = lead < frames

        if lead >= self._silent_run_f:  # a long pause at the start: its own silent piece
            if lead_closed:
                return self._emit(min(lead - self._pad_f, self._max_f) * FRAME)
            if frames >= self._max_f:
                return self._emit(self._max_f * FRAME)
            return self._emit(available) if final else None
        lo, hi = self._first or (self._min_f, self._max_f)
        if frames >= hi:
            return self._emit(self._choose_cut(quiet, lo, hi) * FRAME)
        return self._emit(available) if final else None

    def _choose_cut(self, quiet: np.ndarray, lo: int, hi: int) -> int:
        """Frame index in [lo, hi] to end the next piece at, from the buffer's quiet frames."""
        edges = np.diff(np.concatenate(([0], quiet.astype(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        overlapping = (ends > lo) & (starts < hi)
        if overlapping.any():
            starts, ends = starts[overlapping], ends[overlapping]
            best = int(np.argmax(ends - starts))  # longest run, counting its part outside the window
            start, end = int(starts[best]), int(ends[best])
            if end - start >= self._silent_run_f:
                cut = start + self._pad_f  # the rest of the pause becomes a silent piece
            else:
                cut = (start + end) // 2
            return min(max(cut, lo), hi)
        first_f = self._head // FRAME
        window = self._db[first_f + lo : first_f + hi]
        return lo + int(np.argmin(window))

    def _emit(self, n: int) -> Piece:
        samples = self._buf[self._head : self._head + n].copy()
        piece = Piece(
            offset=self._start / SAMPLE_RATE,
            duration=n / SAMPLE_RATE,
            samples=samples,
            silent=is_silent(samples, self.silence_dbfs),
        )
        self._head += n
        self._start += n
        if not piece.silent:
            self._first = None
        return piece


def cut(
    blocks: Iterable[np.ndarray], *, min_s: float, max_s: float, silence_dbfs: float, first_max_s: float
) -> Iterator[Piece]:
    """The pieces of a stream of 16 kHz float32 mono blocks (a file's, a link's, a live socket's), each as
    soon as it is cut: a :class:`Chunker` with these rules fed every block, then flushed.
    """
    chunker = Chunker(min_s=min_s, max_s=max_s, silence_dbfs=silence_dbfs, first_max_s=first_max_s)
    for block in blocks:
        yield from chunker.feed(block)
    yield from chunker.flush()

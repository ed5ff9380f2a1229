"""Live audio with the local model: LocalAgreement-2 over a rolling buffer, and the types both live policies share.

A live session is a stream of 16 kHz mono float32 samples. The local model costs compute only, so
:class:`LocalAgreement` re-decodes the buffer from its start every step (about 1 s of new audio),
with the committed text's tail as the prompt, and keeps what two consecutive hypotheses agree on
(LocalAgreement-2, after ufal/whisper_streaming's ``HypothesisBuffer``, written again for our
types). The paid backend bills every decode, so it uses :class:`transcriber.utterances.Utterances`
instead. Both give the same outputs:

- :class:`Interim`: the line in progress. ``stable`` only grows until the line is committed;
  ``tentative`` may change. Each interim replaces the previous one.
- :class:`Line`: a committed :class:`~core.messages.RawSegment` with its session-wide line number,
  never changed or repeated afterwards. Times are seconds since the session's first sample.

Hypotheses are compared in *units*: one character for Chinese (Whisper's Chinese "words" are
single tokens of one to a few characters, and two decodes of the same audio may split them
differently), one run of letters or digits for Latin text. A line is committed when a break in
it is stable: a sentence-end mark, or a segment end both hypotheses put in the same place (a
pause); or, for stable units said ``settled_s`` (1.5 s) ago with no break since, up to the last clause
mark or pause among them (or all of them once they span 6 s); or, when the buffer passes
``max_buffer_s``, whatever is stable.
The buffer is then cut after the committed line, so a decode stays short whatever the session's
length.

A session can move to another transcriber: :attr:`LocalAgreement.state` (a :class:`LiveStart`) is
all a new policy needs, fed with the audio from ``committed_until`` on.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from core.messages import Interim, RawSegment, RawWord
from core.text import CLAUSE_ENDS, SENTENCE_ENDS
from transcriber.local import LocalBackend

SAMPLE_RATE = 16000
STEP_S = 1.0  # new audio between two decodes
MAX_BUFFER_S = 20.0  # past this, what is stable is committed and the buffer cut
SETTLED_S = 1.5  # stable units said this long ago are committed without waiting for a break ...
PAUSE_GAP_S = 0.2  # ... up to a clause mark or a pause this long between two units ...
SETTLED_LINE_S = 6.0  # ... or, with neither, once they span this long
TAIL_CHARS = 60  # committed text in the prompt (about 80 tokens, beside the deployment's prompt)
QUIET_KEEP_S = 2.0  # with nothing heard in the buffer, only its last seconds are kept (speech may be starting)
REPEAT_WINDOW_S = 0.3  # units starting this close to a cut that repeat the committed tail were committed already
LOOP_REPEATS = 4  # a run of units said this many times in a row is a decoding loop, not speech
# Tokens a decode may write per second of audio: fast Cantonese is about 7 characters a second,
# a character one or two tokens. Whisper stuck in a loop at the buffer's end would otherwise write
# up to its limit (448 tokens) at every step, taking seconds each time.
TOKENS_PER_SECOND = 15

Decode = Callable[[np.ndarray, str | None], Awaitable[list[RawSegment]]]
"""Transcribe samples (prompt: words after the deployment's prompt); times relative to the first sample."""

_UNIT = re.compile(r"[0-9A-Za-z\u00C0-\u024F]+(?:['.][0-9A-Za-z\u00C0-\u024F]+)*|\S")


@dataclass(frozen=True)
class Line:
    """A committed line: its session-wide number (from 0, without gaps) and its segment."""

    index: int
    segment: RawSegment


@dataclass(frozen=True)
class LiveUpdate:
    """What one step gives: lines committed now (in order), and the interim that replaces the last one.

    ``interim`` is None from :meth:`LocalAgreement.finish` and from utterance mode, which has none.
    """

    lines: list[Line] = field(default_factory=list)
    interim: Interim | None = None


@dataclass(frozen=True)
class LiveStart:
    """Where a policy starts: a new session (the default), or one taken over from another transcriber.

    Attributes:
        committed_until: Session seconds up to which everything is committed; the first sample fed
            is at this time.
        next_line: The number of the next committed line.
        tail: The end of the committed text (for the prompt and to drop a repeat at the cut).
    """

    committed_until: float = 0.0
    next_line: int = 0
    tail: str = ""


@dataclass(frozen=True)
class _Unit:
    text: str  # one character or mark, or a run of Latin letters or digits
    start: float  # session seconds
    end: float
    probability: float | None
    space: bool  # the model wrote a space before it (between Latin words)
    brk: bool = False  # a line may end after it (a segment end; in the stable part, an agreed one)


class LocalAgreement:
    """LocalAgreement-2 over a rolling buffer, for a decoder that is cheap to call again."""

    def __init__(
        self,
        decode: Decode,
        *,
        start: LiveStart | None = None,
        context: str | None = None,
        step_s: float = STEP_S,
        max_buffer_s: float = MAX_BUFFER_S,
        settled_s: float = SETTLED_S,
    ) -> None:
        """Start a session (or take one over at ``start``).

        Args:
            decode: The model (``LocalBackend.decode``); called with the whole buffer each step.
            start: Where to start; default a new session at time 0.
            context: The job's own words (names, terms), put before the committed tail in the prompt.
            step_s: Seconds of new audio before :attr:`ready`.
            max_buffer_s: The longest buffer before what is stable is committed anyway.
            settled_s: Stable units said this long ago are committed without a break (inf: never).
        """
        start = start or LiveStart()
        self._decode = decode
        self._context = (context or "").strip()
        self._step = int(step_s * SAMPLE_RATE)
        self._max_buffer_s = max_buffer_s
        self._settled_s = settled_s
        self._offset = start.committed_until  # session time of the buffer's first sample
        self._buffer = np.zeros(0, dtype=np.float32)
        self._decoded = 0  # samples of the buffer the last decode saw
        self._next_line = start.next_line
        self._tail = start.tail[-TAIL_CHARS:]
        self._stable: list[_Unit] = []  # agreed, not committed
        self._previous: list[_Unit] = []  # the last hypothesis after the stable part
        self._cut_in_pause = False  # the buffer was last cut in a pause the hypotheses agreed on

    def feed(self, samples: np.ndarray) -> None:
        """Append 16 kHz mono float32 samples (the session's audio, in order)."""
        self._buffer = np.concatenate([self._buffer, np.asarray(samples, dtype=np.float32)])

    @property
    def ready(self) -> bool:
        """Whether a step's worth of audio has arrived since the last decode."""
        return len(self._buffer) - self._decoded >= self._step

    @property
    def heard_until(self) -> float:
        """Session seconds of audio fed so far."""
        return self._offset + len(self._buffer) / SAMPLE_RATE

    @property
    def buffer_seconds(self) -> float:
        """Seconds of audio in the buffer (what the next decode reads)."""
        return len(self._buffer) / SAMPLE_RATE

    @property
    def state(self) -> LiveStart:
        """Where another transcriber would resume this session."""
        return LiveStart(committed_until=round(self._offset, 3), next_line=self._next_line, tail=self._tail)

    async def step(self) -> LiveUpdate:
        """Decode the buffer, grow the stable part, commit the lines whose end is stable, cut the buffer."""
        new = await self._hypothesis()
        agreed = 0
        while agreed < min(len(new), len(self._previous)) and new[agreed].text == self._previous[agreed].text:
            unit = new[agreed]
            agreed_break = unit.brk and self._previous[agreed].brk
            self._stable.append(replace(unit, brk=agreed_break or unit.text in SENTENCE_ENDS))
            agreed += 1
        self._previous = new[agreed:]
        lines = self._commit_breaks()
        if (settled := self._settled()) is not None:
            lines.append(self._commit(settled))
        if self.buffer_seconds > self._max_buffer_s:
            if not self._stable:  # nothing agreed in all that time: the latest hypothesis is the best guess
                self._stable, self._previous = self._previous, []
            if self._stable:
                lines.append(self._commit(len(self._stable)))
        if not self._stable and not self._previous:
            self._drop_quiet()
        return LiveUpdate(lines=lines, interim=self._interim())

    async def finish(self) -> LiveUpdate:
        """Commit everything heard: the stable part and the last hypothesis (decoding new audio first)."""
        new = await self._hypothesis() if len(self._buffer) > self._decoded else self._previous
        units = self._stable + [replace(u, brk=u.brk or u.text in SENTENCE_ENDS) for u in new]
        self._stable, self._previous = units, []
        lines = self._commit_breaks()
        if self._stable:
            lines.append(self._commit(len(self._stable)))
        self._drop(len(self._buffer))
        return LiveUpdate(lines=lines)

    async def _hypothesis(self) -> list[_Unit]:
        """Decode the buffer; its units after those that cover the stable part."""
        self._decoded = len(self._buffer)
        segments = await self._decode(self._buffer.copy(), self._prompt())
        units = self._without_repeat(_before_loop(_hypothesis_units(segments, self._offset)))
        covered = _covering(self._stable, units)
        return units[covered:]

    def _prompt(self) -> str | None:
        return " ".join(part for part in (self._context, self._tail) if part) or None

    def _without_repeat(self, units: list[_Unit]) -> list[_Unit]:
        """Drop units at the cut that repeat the end of the committed text (a word cut in two)."""
        tail = _UNIT.findall(self._tail)
        if self._cut_in_pause or not units or units[0].start >= self._offset + REPEAT_WINDOW_S:
            return units  # a cut in a clear pause cut no word in two: a unit said again there is said again
        for n in range(min(5, len(tail), len(units)), 0, -1):
            if [u.text for u in units[:n]] == tail[-n:]:
                return units[n:]
        return units

    def _commit_breaks(self) -> list[Line]:
        """Commit the stable part up to each break in it, a line each (what follows the last stays stable)."""
        lines = []
        while (end := next((i for i, unit in enumerate(self._stable) if unit.brk), None)) is not None:
            lines.append(self._commit(end + 1))
        return lines

    def _settled(self) -> int | None:
        """How many stable units to commit because they were said ``settled_s`` ago and no break came.

        A sentence without marks or agreed segment ends (fast speech, a model that writes no
        punctuation) would otherwise wait for the buffer's limit. Agreed units that old are committed
        up to the last place among them where a line may end well: a clause mark, or a pause of
        :data:`PAUSE_GAP_S` before the next unit. Without one, they wait until they span
        :data:`SETTLED_LINE_S`, and are then committed whole (a line ending mid-sentence).
        """
        old = [i for i, unit in enumerate(self._stable) if unit.end <= self.heard_until - self._settled_s]
        if not old:
            return None
        after = [*self._stable, *self._previous]
        ends = [
            i
            for i in old
            if self._stable[i].text in CLAUSE_ENDS
            or (i + 1 < len(after) and after[i + 1].start - self._stable[i].end >= PAUSE_GAP_S)
        ]
        if ends:
            return ends[-1] + 1
        if self._stable[old[-1]].end - self._stable[0].start >= SETTLED_LINE_S:
            return old[-1] + 1
        return None

    def _commit(self, count: int) -> Line:
        """Commit the first ``count`` units of the stable part as a line and cut the buffer after them."""
        line_units, self._stable = self._stable[:count], self._stable[count:]
        floor = self._offset
        words = [_word(u, floor) for u in line_units]
        start = words[0].start
        end = max(start, max(w.end for w in words))
        segment = RawSegment(start=start, end=end, text=_text(line_units), words=words)
        line = Line(index=self._next_line, segment=segment)
        self._next_line += 1
        self._tail = (self._tail + segment.text)[-TAIL_CHARS:]
        # Cut in the pause before the next unit: a cut inside a word would have it heard twice.
        after = next(iter(self._stable or self._previous), None)
        cut = end if after is None or after.start <= end else (end + after.start) / 2
        self._cut_in_pause = after is not None and after.start - end >= PAUSE_GAP_S
        self._drop(int(round((cut - self._offset) * SAMPLE_RATE)))
        return line

    def _drop_quiet(self) -> None:
        """With nothing heard in the buffer, keep only its last :data:`QUIET_KEEP_S`."""
        self._drop(len(self._buffer) - int(QUIET_KEEP_S * SAMPLE_RATE))

    def _drop(self, samples: int) -> None:
        """Cut the first ``samples`` off the buffer (none if not positive, at most all of it)."""
        samples = min(max(0, samples), len(self._buffer))
        self._buffer = self._buffer[samples:]
        self._decoded = max(0, self._decoded - samples)
        self._offset += samples / SAMPLE_RATE

    def _interim(self) -> Interim:
        units = self._stable + self._previous
        whole, stable = _text(units), _text(self._stable)
        words = [_word(u, self._offset) for u in units]
        start = words[0].start if words else round(self.heard_until, 3)
        end = max((w.end for w in words), default=start)
        return Interim(start=start, end=end, stable=stable, tentative=whole[len(stable) :], words=words)


def _hypothesis_units(segments: Sequence[RawSegment], offset: float) -> list[_Unit]:
    """A decode's units on the session timeline, each segment's last one marked as a break."""
    units: list[_Unit] = []
    for segment in segments:
        words = segment.words or [RawWord(text=segment.text, start=segment.start, end=segment.end)]
        found = [unit for word in words for unit in _word_units(word, offset)]
        if found:
            found[-1] = replace(found[-1], brk=True)
        units.extend(found)
    return units


def _word_units(word: RawWord, offset: float) -> list[_Unit]:
    """A word's units, its time shared among those that are not punctuation (a mark takes none)."""
    parts = [(m.group(), m.start()) for m in _UNIT.finditer(word.text)]
    spoken = sum(1 for text, _ in parts if not _is_mark(text))
    share = (word.end - word.start) / max(1, spoken)
    at = offset + word.start
    units = []
    for text, position in parts:
        start = at
        if not _is_mark(text):
            at += share
        space = position > 0 and word.text[position - 1].isspace()
        units.append(_Unit(text=text, start=start, end=at, probability=word.probability, space=space))
    return units


def _before_loop(units: list[_Unit]) -> list[_Unit]:
    """The units before a decoding loop (one to four units said :data:`LOOP_REPEATS` times in a row).

    The loop's first saying is kept, and the line does not end there: a loop is what Whisper writes
    for audio it cannot read yet, at the buffer's end, and the next decode usually says it right.
    """
    texts = [u.text for u in units]
    for at in range(len(texts)):
        for size in range(1, 5):
            pattern = texts[at : at + size]
            if len(pattern) == size and texts[at : at + size * LOOP_REPEATS] == pattern * LOOP_REPEATS:
                return [*units[: at + size - 1], replace(units[at + size - 1], brk=False)]
    return units


def local_decoder(backend: LocalBackend) -> Decode:
    """The local backend as the policy's decoder, a decode's tokens bounded by the audio's length."""

    async def decode(samples: np.ndarray, prompt: str | None) -> list[RawSegment]:
        bound = 20 + int(TOKENS_PER_SECOND * len(samples) / SAMPLE_RATE)
        return await backend.decode(samples, prompt, max_new_tokens=bound)

    return decode


def _covering(stable: Sequence[_Unit], units: Sequence[_Unit]) -> int:
    """How many of ``units`` say the stable part again: the prefix of them closest to it (edit distance).

    Usually the hypothesis starts with the stable text; when the model changes its mind about it,
    the stable text still stands and the hypothesis continues after its closest prefix.
    """
    said, heard = [u.text for u in stable], [u.text for u in units]
    if heard[: len(said)] == said:
        return len(said)
    row = list(range(len(heard) + 1))  # row[j]: the distance from the stable text to heard[:j]
    for i, unit in enumerate(said, start=1):
        current = [i]
        for j, other in enumerate(heard, start=1):
            current.append(min(row[j - 1] + (unit != other), row[j] + 1, current[j - 1] + 1))
        row = current
    return min(range(len(row)), key=lambda j: (row[j], abs(j - len(said))))


def _is_mark(text: str) -> bool:
    return unicodedata.category(text[0]).startswith("P")


def _text(units: Sequence[_Unit]) -> str:
    return "".join((" " if unit.space and i else "") + unit.text for i, unit in enumerate(units))


def _word(unit: _Unit, floor: float) -> RawWord:
    """A unit as a word of an interim or a line (never before ``floor``: the committed part)."""
    start = round(max(floor, unit.start), 3)
    return RawWord(
        text=(" " if unit.space else "") + unit.text,
        start=start,
        end=round(max(start, unit.end), 3),
        probability=unit.probability,
    )

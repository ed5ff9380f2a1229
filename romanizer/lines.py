"""Lines a learner can repeat: each character timed, long lines cut at sentence and clause ends.

Whisper's segments run up to 30 s and 140 characters: a paragraph, not a line to shadow. The
romanizer reads each segment whole (the G2P reads words in context), then

1. times each character from the ASR's timed words (:func:`char_timings`): a word's span is
   shared evenly by its characters, and the words' text is aligned to the normalised line, so
   what normalising changed (script, spaces, punctuation) keeps or loses its times one by one;
2. cuts the line (:func:`cut`) after every sentence end (``。？！``), and a sentence longer than
   :data:`~core.messages.MAX_LINE_CHARS` characters or :data:`~core.messages.MAX_LINE_SECONDS`
   seconds in two where it is best cut: at a clause end (``，、；：``), at a pause, near the
   middle; again until every piece fits. Cuts fall only between the reader's tokens, so a word
   or a number is never split, and never before punctuation.

A line's times are those of its first and last timed characters; where the backend gave no
word times they are the segment's, shared out by character count.
"""

from __future__ import annotations

import dataclasses
import difflib
import unicodedata
from collections.abc import Callable, Sequence

import msgspec

from core.messages import MAX_LINE_CHARS, MAX_LINE_SECONDS, Char, RawSegment, Word
from core.text import CLAUSE_ENDS, SENTENCE_ENDS, join_words
from romanizer.romanize import Reading, Token

_OPENING = frozenset("「『（《〈“‘([")


@dataclasses.dataclass(frozen=True, slots=True)
class Timing:
    """When a character is spoken, and the probability of the word it is in."""

    start: float
    end: float
    confidence: float | None


@dataclasses.dataclass(frozen=True)
class Piece:
    """A cut of a read line: its words and timed characters, and its span on the job's timeline."""

    start: float
    end: float
    text: str
    words: list[Word]
    chars: list[Char]

    @property
    def jyutping(self) -> str:
        return join_words(self.words, "jyutping")

    @property
    def yale(self) -> str:
        return join_words(self.words, "yale")


def char_timings(raw: RawSegment, text: str, traditional: Callable[[str], str]) -> list[Timing | None]:
    """One timing per character of ``text`` (the segment's text normalised), or None where unknown.

    Args:
        raw: The ASR's segment, with its timed words (none: every timing is None).
        text: The line as the romanizer reads it.
        traditional: The romanizer's length-keeping script conversion, applied to the words' text
            so that the alignment compares like with like.
    """
    spoken: list[str] = []
    timings: list[Timing | None] = []
    for word in raw.words:
        letters = [c for c in word.text if not c.isspace()]
        sounded = sum(1 for c in letters if not _is_mark(c))  # punctuation takes no time
        step = (word.end - word.start) / max(1, sounded)
        at = word.start
        for letter in letters:
            spoken.append(letter)
            if _is_mark(letter):
                timings.append(None)
                continue
            timings.append(Timing(round(at, 3), round(at + step, 3), word.probability))
            at += step
    out: list[Timing | None] = [None] * len(text)
    if not spoken:
        return out
    matcher = difflib.SequenceMatcher(None, traditional("".join(spoken)), text, autojunk=False)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and a1 - a0 == b1 - b0):  # "," widened to "，" keeps its time
            out[b0:b1] = timings[a0:a1]
    return out


def cut(reading: Reading, timings: Sequence[Timing | None], start: float, end: float) -> list[Piece]:
    """The line cut into pieces that each fit the line limits, in order.

    Args:
        reading: The line as the romanizer read it.
        timings: :func:`char_timings` of its text.
        start: The segment's start (used where no character is timed).
        end: The segment's end.

    Returns:
        The pieces; their texts concatenate to the line without the spaces at the cuts.
    """
    line = _Line(reading.tokens, timings, start, end)
    pieces: list[tuple[int, int]] = []
    for sentence in line.sentences():
        pieces.extend(line.fit(*sentence))
    return [line.piece(a, b) for a, b in pieces]


def whole(reading: Reading, timings: Sequence[Timing | None], start: float, end: float) -> Piece:
    """The line as one piece, uncut: a live session's interim line (its length is the speaker's)."""
    line = _Line(reading.tokens, timings, start, end)
    return line.piece(0, len(reading.tokens))


class _Line:
    """A read line as tokens, with where each token starts in the text and the characters' times."""

    def __init__(self, tokens: Sequence[Token], timings: Sequence[Timing | None], start: float, end: float) -> None:
        self.tokens = tokens
        self.offsets = [0]
        for token in tokens:
            self.offsets.append(self.offsets[-1] + len(token.text))
        self.timings = timings
        self.start, self.end = start, max(start, end)

    # --- measures of a piece (tokens a..b) -------------------------------------------------

    def letters(self, a: int, b: int) -> int:
        return sum(len(t.text) for t in self.tokens[a:b] if t.kind not in ("space", "mark"))

    def estimate(self, position: int) -> float:
        """Where character ``position`` falls when the segment's span is shared by character count."""
        total = max(1, self.offsets[-1])
        return self.start + (self.end - self.start) * position / total

    def first_time(self, a: int, b: int) -> float:
        for timing in self.timings[self.offsets[a] : self.offsets[b]]:
            if timing is not None:
                return timing.start
        return self.estimate(self.offsets[a]) if a else self.start

    def last_time(self, a: int, b: int) -> float:
        for timing in reversed(self.timings[self.offsets[a] : self.offsets[b]]):
            if timing is not None:
                return timing.end
        return self.estimate(self.offsets[b]) if b < len(self.tokens) else self.end

    def fits(self, a: int, b: int) -> bool:
        return self.letters(a, b) <= MAX_LINE_CHARS and self.last_time(a, b) - self.first_time(a, b) <= MAX_LINE_SECONDS

    # --- where to cut ----------------------------------------------------------------------

    def _before(self, k: int, a: int) -> Token | None:
        """The last token before cut ``k`` that is not a space."""
        for token in reversed(self.tokens[a:k]):
            if token.kind != "space":
                return token
        return None

    def _after(self, k: int, b: int) -> Token | None:
        for token in self.tokens[k:b]:
            if token.kind != "space":
                return token
        return None

    def cuttable(self, k: int, a: int, b: int) -> bool:
        """A cut at ``k`` leaves text on both sides and starts no piece with closing punctuation."""
        after = self._after(k, b)
        if self._before(k, a) is None or after is None:
            return False
        return after.kind != "mark" or after.text in _OPENING

    def sentences(self) -> list[tuple[int, int]]:
        out, a = [], 0
        for k in range(1, len(self.tokens)):
            before = self._before(k, a)
            if before is not None and before.text[-1:] in SENTENCE_ENDS and self.cuttable(k, a, len(self.tokens)):
                out.append((a, k))
                a = k
        return [*out, (a, len(self.tokens))]

    def score(self, k: int, a: int, b: int) -> float:
        """How good a cut at ``k`` is: at a clause end, at a pause, near the middle, not after a number."""
        left, right = self.letters(a, k), self.letters(k, b)
        before = self._before(k, a)
        score = 3.0 if before is not None and before.text[-1:] in CLAUSE_ENDS else 0.0
        pause = self.first_time(k, b) - self.last_time(a, k)
        score += 3.0 * min(1.0, max(0.0, pause))
        score -= 3.0 * abs(left - right) / max(1, left + right)
        if before is not None and before.kind == "number":
            score -= 2.0  # 2021 | 年: a number and its unit belong together
        return score

    def fit(self, a: int, b: int) -> list[tuple[int, int]]:
        """Tokens a..b in pieces that fit, cutting the best place first."""
        if self.fits(a, b):
            return [(a, b)]
        cuts = [k for k in range(a + 1, b) if self.cuttable(k, a, b)]
        if not cuts:
            return [(a, b)]  # one long word or number: it stays whole
        best = max(cuts, key=lambda k: self.score(k, a, b))
        return [*self.fit(a, best), *self.fit(best, b)]

    # --- the piece itself ------------------------------------------------------------------

    def piece(self, a: int, b: int) -> Piece:
        while a < b and self.tokens[a].kind == "space":
            a += 1
        while b > a and self.tokens[b - 1].kind == "space":
            b -= 1
        chars: list[Char] = []
        for i, token in enumerate(self.tokens[a:b], start=a):
            for j, char in enumerate(token.chars):
                timing = self.timings[self.offsets[i] + j]
                if timing is None or token.kind in ("space", "mark"):
                    chars.append(char)
                else:
                    chars.append(
                        msgspec.structs.replace(
                            char, start=timing.start, end=timing.end, confidence=_rounded(timing.confidence)
                        )
                    )
        start, end = self.first_time(a, b), self.last_time(a, b)
        return Piece(
            start=round(start, 3),
            end=round(max(start, end), 3),
            text="".join(t.text for t in self.tokens[a:b]),
            words=[t.word() for t in self.tokens[a:b]],
            chars=chars,
        )


def _is_mark(char: str) -> bool:
    return unicodedata.category(char)[0] in "PS"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)

"""Times for the text of a model without timestamps: its sentences placed on the chunk's speech.

gpt-4o-transcribe and gpt-4o-mini-transcribe answer a chunk with its text alone. Pure, no I/O:
:func:`place` turns that text and the speech regions Silero VAD found in the chunk
(:mod:`transcriber.speech`) into one segment per sentence, with timed words:

1. Each spoken character gets a weight, its expected share of speaking time (:func:`weights`):
   a Chinese character or a digit is one syllable, a spelled-out acronym (CCTV) one a letter,
   another Latin word a third of a syllable a letter. A sentence end, clause end or space
   between two characters of one speech region takes :data:`BREAK_SYLLABLES` (a pause too short
   for the VAD); one where a region ends is the pause itself.
2. Each pause between two speech regions is given a place in the text, all together by dynamic
   programming, so that each region's share of the text fits its length at the chunk's mean
   speaking rate (:data:`RATE_WEIGHT`), and pauses fall after sentence ends, clause ends or
   spaces rather than inside a phrase (:data:`PAUSE_WEIGHT`). Without the second term this is
   the text shared out over the speech by weight.
3. Within a region, its characters share its time by weight.
4. The sentences (cut after :data:`~core.text.SENTENCE_ENDS`) come back as segments whose words
   are the runs of text between marks inside one region. The romanizer cuts a sentence too long
   for a line at its clause ends and pauses, from these times, as it cuts whisper-1's segments
   (``romanizer.lines``); nothing here limits a line's length.

The times are estimates: a phrase said fast or slowly inside one region is timed at the mean
rate, so the error grows with the chunk (bench/untimed_lines.py: short chunks for these models).
The weights come from statistics of the local model's word times on the first two minutes of the
meeting recording in the shared data, which that bench therefore reports apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from core.messages import RawWord
from core.text import CLAUSE_ENDS, SENTENCE_ENDS
from transcriber.asr import Piece

# Bump when what place() makes of a text changes: the chunk cache then asks json-only models again.
PLACEMENT_VERSION = 1

Region = tuple[float, float]
"""Start and end of a stretch of speech, in seconds from the chunk start."""

# How strongly the text invites a pause before its next spoken character: its share of PAUSE_WEIGHT.
SENTENCE_BREAK, CLAUSE_BREAK, SPACE_BREAK = 1.0, 0.9, 0.5
# The gain of putting a pause between two speech regions after a sentence end: about the log of how
# much likelier a pause is there than inside a phrase (measured: 39 % of the pauses fell at a sentence
# or clause end, where 6 % of the places between characters are).
PAUSE_WEIGHT = 2.0
# The cost of a region's share of the text against its length: RATE_WEIGHT x seconds x (log of the
# ratio of the characters it gets to those the mean rate gives it, each plus one)^2. That is the negative
# log-likelihood of a speaking rate whose log varies with a variance of 0.14 over a second of speech
# (measured: 0.34 standard deviation over 1.2 s, 0.21 over 3.3 s).
RATE_WEIGHT = 3.5
# A sentence end, clause end or space inside a region takes the time of this many syllables (a pause
# too short for the VAD, a slower last syllable; measured: 0.48 s from the character before one to the
# character after it, 0.19 s between two characters of a phrase).
BREAK_SYLLABLES = 1.5
# Regions x (spoken characters + 1)^2 the dynamic programme may take (a 60 s chunk has about
# 300 characters and 40 regions: 3.6 million); past it the shortest pauses count as speech.
MAX_CELLS = 6_000_000


def weights(text: str) -> list[float]:
    """Each character's expected share of speaking time, in syllables (0 for marks and spaces).

    Args:
        text: The text as the model wrote it.

    Returns:
        One weight per character of ``text``.
    """
    out = [1.0 if _spoken(c) else 0.0 for c in text]
    start = None
    for i, char in enumerate([*text, " "]):
        if char.isascii() and char.isalpha():
            start = i if start is None else start
            continue
        if start is not None:  # a Latin word: letters spelled out when it is a short acronym
            word = text[start:i]
            each = 1.0 if len(word) <= 4 and word.isupper() else 1.0 / 3.0
            out[start:i] = [each] * len(word)
            start = None
    return out


def place(text: str, regions: Sequence[Region], duration: float, *, pause_weight: float = PAUSE_WEIGHT) -> list[Piece]:
    """Place a chunk's text on its speech: one segment per sentence, with timed words.

    Args:
        text: The model's answer for the chunk.
        regions: Where speech was heard, in seconds from the chunk start, in order; empty (or
            none inside the chunk) when nothing was found: the text then spans the chunk.
        duration: The chunk's duration; every time is inside [0, duration].
        pause_weight: :data:`PAUSE_WEIGHT`; 0 shares the text out over the speech by weight alone.

    Returns:
        Segments as ``(start, end, text, words)`` (for :func:`transcriber.asr.raw_segments`), in
        order, their times increasing; none for a blank text.
    """
    if not text.strip():
        return []
    speech = _regions(regions, duration)
    weight = weights(text)
    spoken = [i for i, w in enumerate(weight) if w > 0]
    if not spoken:  # marks only: nothing to time
        return [(speech[0][0], speech[-1][1], text, [])]
    syllables = [weight[i] for i in spoken]
    breaks = _breaks(text, spoken)
    inside = [BREAK_SYLLABLES if strength > 0 else 0.0 for strength in breaks]
    speech = _fewer(speech, len(spoken))
    cuts = _assign(np.array(syllables), np.array(inside), np.array(breaks), speech, pause_weight)
    times: list[tuple[float, float, int]] = []  # (start, end, region) of each spoken character
    for m, (a, b) in enumerate(zip(cuts, cuts[1:], strict=False)):
        start, end = speech[m]
        share = (end - start) / _run(syllables, inside, a, b) if b > a else 0.0
        at = 0.0
        for c in range(a, b):
            at += inside[c] if c > a else 0.0  # a break at the region's start is the pause before it
            times.append((start + share * at, start + share * (at + syllables[c]), m))
            at += syllables[c]
    return _segments(text, spoken, times)


def _spoken(char: str) -> bool:
    return char.isalnum()


def _regions(regions: Sequence[Region], duration: float) -> list[Region]:
    """The regions inside [0, duration], in order, without overlaps or empty ones; the chunk when none."""
    limit = max(0.0, duration)
    out: list[Region] = []
    for start, end in sorted(regions):
        start, end = max(0.0, start, out[-1][1] if out else 0.0), min(end, limit)
        if end > start:
            out.append((start, end))
    return out or [(0.0, limit)]


def _breaks(text: str, spoken: list[int]) -> list[float]:
    """How strongly the text invites a pause before each spoken character (0 before the first and at the end)."""
    out = [0.0] * (len(spoken) + 1)
    for c in range(1, len(spoken)):
        between = text[spoken[c - 1] + 1 : spoken[c]]
        if any(m in SENTENCE_ENDS for m in between):
            out[c] = SENTENCE_BREAK
        elif any(m in CLAUSE_ENDS for m in between):
            out[c] = CLAUSE_BREAK
        elif any(m.isspace() for m in between):
            out[c] = SPACE_BREAK
    return out


def _fewer(speech: list[Region], characters: int) -> list[Region]:
    """The regions joined across their shortest pauses until the dynamic programme fits :data:`MAX_CELLS`."""
    keep = max(1, MAX_CELLS // (characters + 1) ** 2)
    if len(speech) <= keep:
        return speech
    pauses = sorted(range(1, len(speech)), key=lambda k: speech[k][0] - speech[k - 1][1], reverse=True)
    starts = sorted([0, *pauses[: keep - 1]])
    ends = [*starts[1:], len(speech)]
    return [(speech[a][0], speech[b - 1][1]) for a, b in zip(starts, ends, strict=True)]


def _run(syllables: list[float], inside: list[float], a: int, b: int) -> float:
    """The syllables spoken characters ``a`` to ``b`` (not included) take, with the breaks between them."""
    return sum(syllables[a:b]) + sum(inside[a + 1 : b])


def _assign(
    syllables: np.ndarray, inside: np.ndarray, breaks: np.ndarray, speech: list[Region], pause_weight: float
) -> list[int]:
    """Where each region's text starts: spoken-character indices ``[0, ..., len(syllables)]``, one more than regions.

    Minimises the rate cost of every region's share less the pause gains, over every way to cut
    the text into as many runs (possibly empty) as there are regions, in order.
    """
    last = len(syllables)
    if len(speech) == 1:
        return [0, last]
    seconds = np.array([end - start for start, end in speech])
    spoken = np.concatenate(([0.0], np.cumsum(syllables)))
    between = np.concatenate(([0.0], np.cumsum(inside)))  # between[k]: breaks before character k
    # got[a, b]: the syllables of characters a..b-1 and the breaks between them (b < a: impossible).
    got = spoken[None, :] - spoken[:, None] + np.maximum(0.0, between[None, : last + 1] - between[1:, None])
    log_got = np.where(np.triu(np.ones_like(got, dtype=bool)), np.log(np.maximum(got, 0.0) + 1.0), np.inf)
    # The breaks the pauses take fall out of the text's time: the mean rate counts the others.
    total = spoken[-1] + inside.sum() - BREAK_SYLLABLES * min(len(speech) - 1, int(np.count_nonzero(inside)))
    rate = total / seconds.sum()
    best = np.full(last + 1, np.inf)
    best[0] = 0.0
    back: list[np.ndarray] = []
    for m in range(len(speech)):
        cost = RATE_WEIGHT * seconds[m] * (log_got - np.log(seconds[m] * rate + 1.0)) ** 2
        paths = best[:, None] + cost
        if m == len(speech) - 1:
            back.append(np.full(last + 1, int(np.argmin(paths[:, last]))))
            break
        back.append(np.argmin(paths, axis=0))
        best = paths.min(axis=0) - pause_weight * breaks
    cuts = [last]
    for choice in reversed(back):
        cuts.append(int(choice[cuts[-1]]))
    return cuts[::-1]


@dataclass
class _Run:
    """Text timed as one stretch: a sentence, or a word in one region between marks."""

    text: str = ""
    start: float | None = None
    end: float = 0.0
    region: int = -1
    words: list[RawWord] = field(default_factory=list)

    def add(self, text: str, start: float | None = None, end: float | None = None) -> None:
        self.text += text
        if start is not None and end is not None:
            self.start = start if self.start is None else self.start
            self.end = end


def _segments(text: str, spoken: list[int], times: list[tuple[float, float, int]]) -> list[Piece]:
    """The text as sentence segments of words, from each spoken character's time and region."""
    at = dict(zip(spoken, times, strict=True))
    out: list[Piece] = []
    sentence, word = _Run(), _Run()
    separated = ended = False

    def close_word() -> None:
        nonlocal word
        if word.start is not None:
            sentence.words.append(RawWord(text=word.text, start=round(word.start, 3), end=round(word.end, 3)))
            sentence.add(word.text, word.start, word.end)
        else:
            sentence.add(word.text)
        word = _Run()

    def close_sentence() -> None:
        nonlocal sentence
        close_word()
        if sentence.start is not None:
            out.append((sentence.start, sentence.end, sentence.text, sentence.words))
        sentence = _Run()

    for i, char in enumerate(text):
        if i not in at:
            word.add(char)
            separated = True
            ended = ended or char in SENTENCE_ENDS
            continue
        start, end, region = at[i]
        if ended:
            close_sentence()
        elif word.start is not None and (separated or region != word.region):
            close_word()
        separated = ended = False
        word.add(char, start, end)
        word.region = region
    close_sentence()
    return out

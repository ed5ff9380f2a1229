"""Text joining shared by the romanizer and the output formats, and where sentences and clauses end.

:func:`join_words` builds a Jyutping or Yale line from :class:`~core.messages.Word`s; the
romanizer uses it for ``Segment.jyutping``/``Segment.yale`` and the subtitle formats for the
pieces of a long segment, so both read the same way: ``ngo5 hai6 Peter, nei5 ne1?``
(syllables and Latin words spaced, punctuation attached, Chinese punctuation written as its
ASCII counterpart).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

from core.messages import Word

System = Literal["jyutping", "yale"]

ReadingLines = Literal["jyutping", "yale", "yale_numeric", "both", "none"]
"""The reading lines a download (txt, srt, vtt) or the terminal shows under the characters: Jyutping,
Yale with tone marks, Yale with tone numbers 1-6, Jyutping then Yale, or none (characters only).
Wider than :data:`core.messages.Romanization`, the job option, which it leaves as it is."""
READING_LINES: tuple[str, ...] = get_args(ReadingLines)

# Where a transcript line may end: after a sentence end always, after a clause end when the sentence
# is too long for one line (romanizer.lines), and where the transcriber places the sentences of a model
# without timestamps (transcriber.placement). ASCII "." is left out: 3.5, Amara.org.
SENTENCE_ENDS = frozenset("。？！?!…")
CLAUSE_ENDS = frozenset("，、；：,;:")

# How punctuation sits in a romanization line: closing marks stick to the word before,
# opening marks to the word after, joiners to both (e-mail, R&D); anything else stands alone.
_ASCII = str.maketrans(
    {
        "，": ",",
        "、": ",",
        "。": ".",
        "？": "?",
        "！": "!",
        "：": ":",
        "；": ";",
        "（": "(",
        "）": ")",
        "「": '"',
        "」": '"',
        "『": '"',
        "』": '"',
        "《": '"',
        "》": '"',
        "〈": '"',
        "〉": '"',
        "“": '"',
        "”": '"',
    }
)
_CLOSING = frozenset(",.?!:;)]}”’…，、。？！：；）」』》〉％%")
_OPENING = frozenset("([{“‘（「『《〈")
_JOINERS = frozenset("-‐‑/·・&+_@#'’")
_INNER = frozenset(".,:")  # joiners between two Latin words
_OPENING_ASCII = frozenset(ch.translate(_ASCII) for ch in _OPENING)


def join_words(words: Sequence[Word], system: System) -> str:
    """Build one romanization line from words.

    Romanized words contribute their syllables; words without romanization (Latin text,
    unknown characters) contribute their text as is; punctuation attaches to its
    neighbours; whitespace words only separate.

    Args:
        words: The words of a line, in order.
        system: ``"jyutping"`` or ``"yale"``.

    Returns:
        The line, e.g. ``"ngo5 hai6 Peter, nei5 ne1?"``.
    """
    out: list[str] = []
    glue = True  # no space before the next token
    spaced = False  # the previous word was whitespace
    for index, word in enumerate(words):
        romanized = word.jyutping if system == "jyutping" else word.yale
        text = word.text
        if romanized is None and (not text or text.isspace()):
            spaced = True
            continue
        kind = "token" if romanized is not None else _kind(text)
        if (
            text in _INNER
            and 0 < index < len(words) - 1
            and _is_latin(words[index - 1])
            and _is_latin(words[index + 1])
        ):
            kind = "join"  # Amara.org, U.S.A
        token = romanized if romanized is not None else text.translate(_ASCII)
        if kind == "close":
            out.append(token)
            glue = False
        elif kind == "join" and not spaced:
            out.append(token)
            glue = True
        else:
            if out and (not glue or (spaced and out[-1] not in _OPENING_ASCII)):
                out.append(" ")
            out.append(token)
            glue = kind == "open"
        spaced = False
    return "".join(out)


def _is_latin(word: Word) -> bool:
    return word.jyutping is None and word.text[:1].isascii() and word.text[:1].isalnum()


def _kind(text: str) -> str:
    first = text[0]
    if first in _CLOSING:
        return "close"
    if first in _OPENING:
        return "open"
    if first in _JOINERS:
        return "join"
    return "token"

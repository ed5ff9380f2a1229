"""Cantonese grapheme-to-phoneme: text in, tokens with per-character Jyutping and Yale out.

::

    g2p = G2P()
    for token in g2p.tokens("佢行咗去銀行。"):
        for reading in token.chars:
            print(reading.char, reading.jyutping, reading.yale, reading.yale_numeric)

Every input character gets exactly one :class:`CharReading`, in order, so a viewer can put
ruby over each character: ``len(g2p.chars(text)) == len(text)`` always.

How a line is read:

1. Script: a line containing Simplified-only characters goes through OpenCC ``s2hk``
   (character for character, so the alignment holds); full-width digits and Latin letters
   are read as ASCII. The output keeps the characters as the user wrote them.
2. The line is cut into runs of Chinese characters, numbers, Latin words, spaces and
   marks. Latin words and other scripts are kept with no romanization; punctuation and
   spaces get none either.
3. A Chinese run is segmented into lexicon words (:mod:`romanizer.lexicon`) by dynamic
   programming: fewest words, then the words commonest in conversation (HKCanCor), then
   the longest words (the largest sum of squared lengths). Each word takes its preferred
   reading.
   Lexicon words that speech almost always keeps apart (都會 in 我都會去) are not used
   (:mod:`romanizer.context`).
4. A model learnt from HKCanCor re-reads a few polyphonic characters that stand alone
   as one-character words (下 haa5/haa6, 着, 返, 到 ...) from their neighbours
   (:mod:`romanizer.context`); then context rules (:mod:`romanizer.rules`), which state
   grammatical facts, re-read those and others (行, 長, 重, 好, 覺, 會, sentence-final
   particles ...) where they apply.
5. Numbers, dates, times, money and percentages are read the Cantonese way by
   :mod:`romanizer.numbers` (``2024年`` -> ``ji6 ling4 ji6 sei3 nin4``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Literal

import opencc

from romanizer import lexicon as lexicon_module
from romanizer.context import ContextModel
from romanizer.numbers import DIGITS, NUMBER, read_money, read_number
from romanizer.rules import apply_rules
from romanizer.script import WIDTH, simplified_only
from romanizer.yale import yale_parts

CJK = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
TOKEN = re.compile(
    rf"(?P<space>\s+)"
    rf"|(?P<number>{NUMBER.pattern})"
    rf"|(?P<latin>[A-Za-z\u00c0-\u024f][A-Za-z0-9\u00c0-\u024f]*(?:['’][A-Za-z]+)*)"
    rf"|(?P<cjk>[{CJK}]+)"
    rf"|(?P<other>(?:(?![{CJK}])[^\W\d_])+)"  # other scripts (kana, hangul): kept as is
    rf"|(?P<mark>.)",
    re.DOTALL,
)
"""How a normalised line is cut: spaces, numbers, Latin words, Chinese runs, other
scripts, single marks."""

Kind = Literal["word", "number", "latin", "other", "space", "mark"]
_KINDS: dict[str | None, Kind] = {
    "cjk": "word",
    "number": "number",
    "latin": "latin",
    "other": "other",
    "space": "space",
    "mark": "mark",
}
_MAX_WORD = 12  # longer lexicon entries are idioms that shorter words cover as well
_CURRENCY = frozenset("$＄")
_MONEY_UNITS = frozenset("蚊元個")  # $100蚊 already says its unit


@dataclasses.dataclass(frozen=True, slots=True)
class CharReading:
    """One input character and its romanization (all ``None`` when it has none)."""

    char: str
    jyutping: str | None
    yale: str | None
    yale_numeric: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Token:
    """A word, number, Latin word, space or mark of the input, with per-character readings.

    ``text`` is the input as written (Simplified stays Simplified); ``jyutping`` is the
    reading of the whole token, space-separated, or ``None``. For words each character has
    its own syllable; a number's whole reading sits on its first character, because
    ``100`` reads as two syllables over three digits.
    """

    text: str
    kind: Kind
    jyutping: str | None
    chars: tuple[CharReading, ...]

    @property
    def yale(self) -> str | None:
        """Yale with tone marks for the whole token, or ``None``."""
        return _yale(self.jyutping, 0)

    @property
    def yale_numeric(self) -> str | None:
        """Yale with tone numbers for the whole token, or ``None``."""
        return _yale(self.jyutping, 1)


class G2P:
    """Reads Cantonese text. Loads the lexicon (about 0.2 s); thread-safe once built."""

    def __init__(
        self,
        lexicon: lexicon_module.Lexicon | None = None,
        *,
        context: ContextModel | None = None,
        read_numbers: bool = True,
    ) -> None:
        """Load the lexicon, the context model and OpenCC.

        Args:
            lexicon: Word -> readings; the packaged lexicon when ``None``.
            context: Words to split and per-character weights; the packaged model when
                ``None``, ``ContextModel()`` for none.
            read_numbers: Read digits the Cantonese way; when ``False`` they stay as written
                with no romanization.
        """
        lexicon = lexicon if lexicon is not None else lexicon_module.load()
        self.context = context if context is not None else ContextModel.load()
        if self.context.splits:
            lexicon = {word: readings for word, readings in lexicon.items() if word not in self.context.splits}
        self.lexicon = lexicon
        self.read_numbers = read_numbers
        self._prefixes = frozenset(word[:end] for word in self.lexicon for end in range(1, min(len(word), _MAX_WORD)))
        self.s2hk = opencc.OpenCC("s2hk")
        self.simplified = simplified_only(self.s2hk)
        self._cache: dict[str, tuple[tuple[str, str | None], ...]] = {}  # bounded: stops filling

    def traditional(self, text: str) -> str:
        """Hong Kong Traditional characters for a line, one output character per input character.

        Folds full-width digits and Latin letters to ASCII; converts with OpenCC ``s2hk``
        only when the line has Simplified-only characters (s2hk would also rewrite
        characters both scripts share, 晒 -> 曬), and character by character if a phrase
        conversion would change the length.

        Args:
            text: Any line.

        Returns:
            A string of the same length.
        """
        text = text.translate(WIDTH)
        if not any(char in self.simplified for char in text):
            return text
        converted = self.s2hk.convert(text)
        if len(converted) == len(text):
            return converted
        pieces = [self.s2hk.convert(char) for char in text]
        return "".join(new if len(new) == 1 else old for old, new in zip(text, pieces, strict=True))

    def tokens(self, text: str) -> list[Token]:
        """Romanize a line.

        Args:
            text: Any line: Traditional or Simplified, with digits, Latin text, punctuation.

        Returns:
            Tokens whose texts concatenate to ``text`` and whose ``chars`` together have
            one entry per character of ``text``.
        """
        normal = self.traditional(text)
        out: list[Token] = []
        for match in TOKEN.finditer(normal):
            kind, start, end = _KINDS[match.lastgroup], match.start(), match.end()
            if kind == "word":
                position = start
                for word, reading in self.words(match.group(), after=normal[end : end + 1]):
                    out.append(_token(text[position : position + len(word)], "word", reading))
                    position += len(word)
            elif kind == "number" and self.read_numbers:
                out.append(_token(text[start:end], "number", self._number(normal, start, end)))
            else:
                out.append(_token(text[start:end], kind, None))
        return out

    def chars(self, text: str) -> list[CharReading]:
        """Per-character readings of a line, one per input character.

        Args:
            text: Any line.

        Returns:
            ``len(text)`` readings in order.
        """
        return [reading for token in self.tokens(text) for reading in token.chars]

    def words(self, run: str, after: str = "") -> tuple[tuple[str, str | None], ...]:
        """Segment a run of Chinese characters and read it in context.

        Args:
            run: Chinese characters only (Traditional).
            after: The character after the run (punctuation matters to particles).

        Returns:
            ``(word, jyutping)`` pairs spelling ``run``; the Jyutping has one syllable per
            character, or is ``None`` for a character the lexicon lacks.
        """
        key = run + "\0" + after
        cached = self._cache.get(key)
        if cached is None:
            read = self.context.apply(self.segment(run), after, self.lexicon)
            cached = tuple(apply_rules(read, after, self.context.tags))
            if len(self._cache) < 200_000:
                self._cache[key] = cached
        return cached

    def segment(self, run: str) -> list[tuple[str, str | None]]:
        """Segment a run into lexicon words, each with its preferred reading.

        Fewest words; among those, the words commonest in HKCanCor (成為/咗 rather than
        成/為咗); among those, the largest sum of squared lengths (the longest words).

        Args:
            run: Chinese characters only (Traditional).

        Returns:
            ``(word, jyutping)`` pairs spelling ``run`` (``None`` for a character the
            lexicon lacks).
        """
        size = len(run)
        # best[i]: (words, -frequency, -sum of squares, start of the last word) for run[:i]
        best: list[tuple[int, float, int, int]] = [(0, 0.0, 0, 0)] + [(size + 1, 0.0, 0, 0)] * size
        lexicon, prefixes, frequency = self.lexicon, self._prefixes, self.context.frequency
        for start in range(size):
            words, common, squares, _ = best[start]
            if words > size:
                continue
            for end in range(start + 1, min(size, start + _MAX_WORD) + 1):
                piece = run[start:end]
                if end - start == 1 or piece in lexicon:
                    length = end - start
                    candidate = (words + 1, common - frequency.get(piece, 0.0), squares - length * length, start)
                    if candidate[:3] < best[end][:3]:
                        best[end] = candidate
                if piece not in prefixes:
                    break
        out: list[tuple[str, str | None]] = []
        end = size
        while end:
            start = best[end][3]
            piece = run[start:end]
            readings = lexicon.get(piece)
            out.append((piece, readings[0] if readings else None))
            end = start
        out.reverse()
        return out

    def _number(self, text: str, start: int, end: int) -> str | None:
        before = text[max(0, start - 1) : start]
        token = text[start:end]
        if before in _CURRENCY and text[end : end + 1] not in _MONEY_UNITS:
            return read_money(token)
        return read_number(token, context_after=text[end : end + 2])


def _token(text: str, kind: Kind, jyutping: str | None) -> Token:
    if jyutping is None:
        return Token(text, kind, None, tuple(CharReading(char, None, None, None) for char in text))
    syllables = jyutping.split()
    if kind == "number" and syllables != [DIGITS[int(char)] if char.isdigit() else "" for char in text]:
        syllables = [jyutping] + [""] * (len(text) - 1)  # 100 is two syllables over three digits
    chars = tuple(
        CharReading(char, syllable or None, _yale(syllable, 0), _yale(syllable, 1))
        for char, syllable in zip(text, syllables, strict=True)
    )
    return Token(text, kind, jyutping, chars)


def _yale(jyutping: str | None, form: int) -> str | None:
    if not jyutping:
        return None
    parts = [yale_parts(syllable) for syllable in jyutping.split()]
    return " ".join(part[form] for part in parts if part is not None) if all(parts) else None


def read_line(g2p: G2P, text: str) -> dict[str, object]:
    """The ``scribe romanize`` JSON object for one line.

    Args:
        g2p: The reader.
        text: One input line (without its newline).

    Returns:
        ``{"text": text, "chars": [{"char", "jyutping", "yale", "yale_numeric"}, ...]}``.
    """
    # Plain dicts, not dataclasses.asdict: it deep-copies and triples the cost of a line.
    chars = [
        {"char": r.char, "jyutping": r.jyutping, "yale": r.yale, "yale_numeric": r.yale_numeric}
        for r in g2p.chars(text)
    ]
    return {"text": text, "chars": chars}


def jyutping_per_char(g2p: G2P, text: str) -> Sequence[str | None]:
    """Just the per-character Jyutping of a line (for evaluation).

    Args:
        g2p: The reader.
        text: One line.

    Returns:
        One syllable or ``None`` per character.
    """
    return [reading.jyutping for reading in g2p.chars(text)]

"""The one romanizer front end: a line of text in, per-character Jyutping and Yale out.

The pipeline (``romanizer.service``) and ``scribe romanize`` both call :class:`Romanizer`,
so a line reads the same wherever it is read::

    romanizer = Romanizer()
    line = romanizer.read("佢行咗去銀行。")
    [(c.char, c.jyutping, c.yale, c.yale_numeric) for c in line.chars]

Every input character gets exactly one :class:`~core.messages.Char`, in order, so a viewer
can put ruby over each character: ``len(romanizer.read(text).chars) == len(text)`` always.

How a line is read:

1. Script: a line containing Simplified-only characters is read through OpenCC ``s2hk``
   (character for character, so the alignment holds); full-width digits and Latin letters
   are read as ASCII. The characters stay as written.
2. The line is cut into runs of Chinese characters, numbers, Latin words, spaces and
   marks (:data:`TOKEN`). Latin words and other scripts keep their text with no
   romanization (``我今日好busy``); punctuation and spaces get none either.
3. Each Chinese run is segmented into words and read in context by the G2P
   (:class:`romanizer.g2p.G2P`); a character the lexicon lacks has no reading.
4. Numbers, dates, times, money and percentages are read the Cantonese way by
   :mod:`romanizer.numbers` (``2024年`` -> ``ji6 ling4 ji6 sei3 nin4``, ``$100`` ->
   ``jat1 baak3 man1``); a number's whole reading sits on its first digit.
5. Yale comes from the Jyutping through :func:`romanizer.yale.to_yale`, with tone marks
   (``gām yaht``) and with tone numbers (``gam1 yat6``).

The pipeline first normalises what the ASR wrote (:meth:`Romanizer.normalise`: Hong Kong
Traditional, single spaces, Chinese punctuation after Chinese characters) and reads the
normalised line; the Jyutping and Yale lines are joined from the words by
:func:`core.text.join_words` (``ngo5 hai6 Peter, nei5 ne1?``).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Literal

import opencc

from core.messages import Char, Word
from core.text import join_words
from romanizer.g2p import G2P
from romanizer.numbers import DIGITS, NUMBER, read_money, read_number
from romanizer.script import WIDTH, simplified_only
from romanizer.yale import to_yale, yale_parts

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
"""How a line is cut: spaces, numbers, Latin words, Chinese runs, other scripts, single marks."""

Kind = Literal["word", "number", "latin", "other", "space", "mark"]
_KINDS: dict[str | None, Kind] = {
    "cjk": "word",
    "number": "number",
    "latin": "latin",
    "other": "other",
    "space": "space",
    "mark": "mark",
}
_CURRENCY = frozenset("$＄")
_MONEY_UNITS = frozenset("蚊元個")  # $100蚊 already says its unit
# Never shown: U+FFFD and C0/C1 controls other than whitespace.
_UNSHOWABLE = re.compile("[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"\s+")
# Half-width punctuation written right after a Chinese character, and followed by another
# Chinese character or the end of the line, is Chinese punctuation that Whisper wrote narrow.
_NARROW_PUNCT = re.compile(rf"(?<=[{CJK}])\s?([,.?!:;]+)(?:\s?(?=[{CJK}])|\s*$)")
_FULL_WIDTH = str.maketrans({",": "，", ".": "。", "?": "？", "!": "！", ":": "：", ";": "；"})


@dataclasses.dataclass(frozen=True, slots=True)
class Token:
    """A word, number, Latin word, space or mark of a line, with its per-character readings.

    ``text`` is the input as written (Simplified stays Simplified); ``jyutping`` and ``yale``
    are the readings of the whole token, space-separated, or ``None``.
    """

    text: str
    kind: Kind
    jyutping: str | None
    yale: str | None
    chars: tuple[Char, ...]

    def word(self) -> Word:
        """The token as a word of the line contract."""
        return Word(text=self.text, jyutping=self.jyutping, yale=self.yale)


@dataclasses.dataclass(frozen=True)
class Reading:
    """A line read: its tokens, and what the line contract carries, each worked out once.

    Attributes:
        text: The line that was read.
        tokens: Tokens whose texts concatenate to ``text``.
    """

    text: str
    tokens: tuple[Token, ...]

    @functools.cached_property
    def chars(self) -> list[Char]:
        """One reading per character of ``text``."""
        return [char for token in self.tokens for char in token.chars]

    @functools.cached_property
    def words(self) -> list[Word]:
        """The tokens as words of the line contract."""
        return [token.word() for token in self.tokens]

    @functools.cached_property
    def jyutping(self) -> str:
        """The Jyutping line (``ngo5 hai6 Peter, nei5 ne1?``)."""
        return join_words(self.words, "jyutping")

    @functools.cached_property
    def yale(self) -> str:
        """The Yale line, with tone marks."""
        return join_words(self.words, "yale")


class Romanizer:
    """Reads lines of Cantonese. Loads the G2P and OpenCC (about half a second); thread-safe once built."""

    def __init__(self, g2p: G2P | None = None, *, read_numbers: bool = True) -> None:
        """Load the readers.

        Args:
            g2p: The reader of Chinese runs; a new :class:`romanizer.g2p.G2P` when ``None``.
            read_numbers: Read digits the Cantonese way; when ``False`` they stay as written
                with no romanization (``scribe romanize --digits``).
        """
        self.g2p = g2p or G2P()
        self.read_numbers = read_numbers
        # OpenCC converters are thread-safe (BYVoid/OpenCC#231).
        self._s2hk = opencc.OpenCC("s2hk")
        self._simplified = simplified_only(self._s2hk)

    def traditional(self, text: str) -> str:
        """Hong Kong Traditional characters for a line, one output character per input character.

        Folds full-width digits and Latin letters to ASCII; converts with OpenCC ``s2hk``
        only when the line has Simplified-only characters (s2hk would also rewrite
        characters both scripts share, 晒 -> 曬, 喂 -> 餵), and character by character if a
        phrase conversion would change the length.

        Args:
            text: Any line.

        Returns:
            A string of the same length.
        """
        text = text.translate(WIDTH)
        if not any(char in self._simplified for char in text):
            return text
        converted = self._s2hk.convert(text)
        if len(converted) == len(text):
            return converted
        pieces = [self._s2hk.convert(char) for char in text]
        return "".join(new if len(new) == 1 else old for old, new in zip(text, pieces, strict=True))

    def normalise(self, text: str) -> str:
        """Normalise a line the ASR wrote, for display and reading.

        Hong Kong Traditional as :meth:`traditional` makes it, whitespace collapsed to single
        spaces, and ``, . ? ! : ;`` written as ``，。？！：；`` where they follow a Chinese
        character (and precede one or end the line). Latin text and digits are kept.
        Replacement characters (U+FFFD: half a character the model wrote from damaged audio)
        and control characters are dropped. Normalising twice changes nothing.

        Args:
            text: One line as the ASR backend wrote it.

        Returns:
            The normalised line.
        """
        text = _UNSHOWABLE.sub("", text)
        text = _SPACES.sub(" ", self.traditional(text)).strip()
        return _NARROW_PUNCT.sub(_widen, text)

    def read(self, text: str) -> Reading:
        """Read a line as it is written: what ``scribe romanize`` prints, and what the pipeline stores.

        The pipeline reads each line after :meth:`normalise` and the clean-up of
        ``romanizer.cleanup`` (``romanizer.service.romanize_chunk``).

        Args:
            text: Any line: Traditional or Simplified, with digits, Latin text, punctuation.

        Returns:
            The tokens, whose texts concatenate to ``text`` and whose characters together
            have one reading per character of ``text``.
        """
        normal = self.traditional(text)
        out: list[Token] = []
        for match in TOKEN.finditer(normal):
            kind, start, end = _KINDS[match.lastgroup], match.start(), match.end()
            if kind == "word":
                position = start
                for word, reading in self.g2p.words(match.group(), after=normal[end : end + 1]):
                    out.append(_token(text[position : position + len(word)], "word", reading))
                    position += len(word)
            elif kind == "number" and self.read_numbers:
                out.append(_token(text[start:end], "number", _number(normal, start, end)))
            else:
                out.append(_token(text[start:end], kind, None))
        return Reading(text, tuple(out))


def _number(text: str, start: int, end: int) -> str | None:
    before = text[max(0, start - 1) : start]
    token = text[start:end]
    if before in _CURRENCY and text[end : end + 1] not in _MONEY_UNITS:
        return read_money(token)
    return read_number(token, context_after=text[end : end + 2])


def _token(text: str, kind: Kind, jyutping: str | None) -> Token:
    if jyutping is None:
        return Token(text, kind, None, None, tuple(_unread(char) for char in text))
    yale = to_yale(jyutping)
    syllables = jyutping.split()
    if kind == "number" and syllables != [DIGITS[int(char)] if char.isdigit() else "" for char in text]:
        # 100 is two syllables over three digits: the whole reading sits on the first digit.
        first = Char(char=text[0], jyutping=jyutping, yale=yale, yale_numeric=to_yale(jyutping, numbers=True))
        return Token(text, kind, jyutping, yale, (first, *(_unread(char) for char in text[1:])))
    chars = tuple(_char(char, syllable) for char, syllable in zip(text, syllables, strict=True))
    return Token(text, kind, jyutping, yale, chars)


def _char(char: str, syllable: str) -> Char:
    parts = yale_parts(syllable)
    if parts is None:
        return Char(char=char, jyutping=syllable, yale=None, yale_numeric=None)
    return Char(char=char, jyutping=syllable, yale=parts[0], yale_numeric=parts[1])


def _unread(char: str) -> Char:
    return Char(char=char, jyutping=None, yale=None, yale_numeric=None)


def _widen(match: re.Match[str]) -> str:
    marks = match.group(1)
    if set(marks) == {"."} and len(marks) > 1:
        return "……"
    return marks.translate(_FULL_WIDTH)

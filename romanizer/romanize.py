"""Script normalisation and Jyutping/Yale romanization of transcript lines.

A line goes through :meth:`Romanizer.normalise` (OpenCC ``s2hk`` for lines written in
Simplified characters, width folding, Chinese punctuation between Chinese characters,
single spaces) and is then cut into words that spell it exactly, whitespace included::

    "".join(word.text for word in romanizer.words(text)) == text   # for normalised text

so a viewer can put ruby over every word. The cut is made in two steps: a tokenizer
separates runs of Chinese characters, numbers, Latin words, single spaces and single
punctuation marks; PyCantonese then segments each Chinese run into words and gives
their Jyutping. What PyCantonese cannot read is handled here:

- Latin words (code-switching: ``我今日好busy``) keep their text, with no romanization;
- numbers are read the Cantonese way by :func:`romanizer.numbers.read_number`;
- an unknown word is retried character by character; a character still unknown
  (a rare character) gets no romanization and appears as itself in the lines;
- punctuation and spaces get no romanization; the lines are built by
  :func:`scribe.formats.join_words` (``ngo5 hai6 Peter, nei5 ne1?``).

Yale comes from the Jyutping through ``pycantonese.jyutping_to_yale``, with tone marks and
one space between syllables (``gām yaht``), numbers included.
"""

from __future__ import annotations

import functools
import re
import threading

import opencc
import pycantonese

from romanizer.numbers import NUMBER, read_number
from scribe.formats import join_words
from scribe.messages import Word

_CJK = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_TOKEN = re.compile(
    rf"(?P<space>\s+)"
    rf"|(?P<number>{NUMBER.pattern})"
    rf"|(?P<latin>[A-Za-z\u00c0-\u024f][A-Za-z0-9\u00c0-\u024f]*(?:['’][A-Za-z]+)*)"
    rf"|(?P<cjk>[{_CJK}]+)"
    rf"|(?P<other>(?:(?![{_CJK}])[^\W\d_])+)"  # other scripts (kana, hangul): kept as is
    rf"|(?P<mark>.)",
    re.DOTALL,
)
# Full-width Latin letters, digits and % (and the ideographic space) fold to ASCII;
# full-width Chinese punctuation stays as it is.
_WIDTH = str.maketrans(
    {
        **{chr(code): chr(code - 0xFEE0) for code in range(0xFF10, 0xFF1A)},
        **{chr(code): chr(code - 0xFEE0) for code in range(0xFF21, 0xFF3B)},
        **{chr(code): chr(code - 0xFEE0) for code in range(0xFF41, 0xFF5B)},
        "％": "%",
        "\u3000": " ",
    }
)
_SPACES = re.compile(r"\s+")
# Half-width punctuation written right after a Chinese character, and followed by another
# Chinese character or the end of the line, is Chinese punctuation that Whisper wrote narrow.
_NARROW_PUNCT = re.compile(rf"(?<=[{_CJK}])\s?([,.?!:;]+)(?:\s?(?=[{_CJK}])|\s*$)")
_FULL_WIDTH = str.maketrans({",": "，", ".": "。", "?": "？", "!": "！", ":": "：", ";": "；"})


class Romanizer:
    """Loads OpenCC s2hk and warms PyCantonese once; thread-safe to call.

    Results are cached per Chinese run (the text between punctuation, spaces, numbers
    and Latin words) and per Jyutping word, so repeated phrases cost a dictionary lookup.
    """

    def __init__(self, cache_size: int = 65_536) -> None:
        """Load the converters (about two seconds, once per process).

        Args:
            cache_size: How many Chinese runs and Jyutping words to keep converted.
        """
        # OpenCC converters are thread-safe (BYVoid/OpenCC#231); PyCantonese makes no such
        # promise (its segmenter keeps mutable lookup tables), so its calls take a lock.
        self._lock = threading.Lock()
        self._s2hk = opencc.OpenCC("s2hk")
        self._simplified = _simplified_only(self._s2hk)
        self._run = functools.lru_cache(maxsize=cache_size)(self._romanize_run)
        self._yale = functools.lru_cache(maxsize=cache_size)(_to_yale)
        pycantonese.characters_to_jyutping("香港人講廣東話。")  # loads the corpus and segmenter

    def normalise(self, text: str) -> str:
        """Normalise a raw ASR line for display and romanization.

        Converts a line that contains Simplified-only characters (这, 们) to Hong Kong
        Traditional with OpenCC ``s2hk``; a line that is already Traditional is left alone,
        because s2hk rewrites characters both scripts share (晒 -> 曬, 喂 -> 餵, 了解 -> 瞭解).
        Then folds full-width Latin letters and digits to ASCII, writes ``, . ? ! : ;`` as
        ``，。？！：；`` where they follow a Chinese character (and precede one or end the
        line), and collapses whitespace to single spaces. Latin text and digits are kept.
        Normalising twice changes nothing.

        Args:
            text: One line as the ASR backend wrote it.

        Returns:
            The normalised line.
        """
        text = text.translate(_WIDTH)
        if any(char in self._simplified for char in text):
            text = self._s2hk.convert(text)
        text = _SPACES.sub(" ", text).strip()
        return _NARROW_PUNCT.sub(_widen, text)

    def words(self, text: str) -> list[Word]:
        """Cut a normalised line into romanized words that spell it exactly.

        Args:
            text: A line already passed through :meth:`normalise`.

        Returns:
            Words whose texts concatenate to ``text``; spaces and punctuation are words
            with no romanization, Latin words keep their text with no romanization.
        """
        out: list[Word] = []
        for match in _TOKEN.finditer(text):
            kind, token = match.lastgroup, match.group()
            if kind == "cjk":
                out += self._run(token)
            elif kind == "number":
                jyutping = read_number(token, context_after=text[match.end() : match.end() + 2])
                out.append(Word(text=token, jyutping=jyutping, yale=self._yale(jyutping) if jyutping else None))
            else:
                out.append(Word(text=token, jyutping=None, yale=None))
        return out

    def line(self, text: str) -> tuple[str, list[Word], str, str]:
        """Normalise and romanize one ASR line.

        Args:
            text: One line as the ASR backend wrote it.

        Returns:
            ``(normalised text, words, Jyutping line, Yale line)``.
        """
        normalised = self.normalise(text)
        words = self.words(normalised)
        return normalised, words, join_words(words, "jyutping"), join_words(words, "yale")

    def _romanize_run(self, run: str) -> tuple[Word, ...]:
        with self._lock:
            pairs = pycantonese.characters_to_jyutping(run)
            # Retry unknown words one character at a time (a list input skips segmentation).
            retried = {
                word: pycantonese.characters_to_jyutping(list(word)) for word, jyutping in pairs if jyutping is None
            }
        out: list[Word] = []
        for word, jyutping in pairs:
            for piece, piece_jyutping in retried.get(word, [(word, jyutping)]):
                yale = self._yale(piece_jyutping) if piece_jyutping else None
                out.append(Word(text=piece, jyutping=piece_jyutping, yale=yale))
        return tuple(out)


def _simplified_only(s2hk: opencc.OpenCC) -> frozenset[str]:
    """Characters that only Simplified Chinese uses: s2hk changes them and Big5 lacks them.

    Many characters are both Simplified and Traditional (晒 saai3 "all", 吓, 郁, 喂, 面, 了,
    出); s2hk rewrites them (曬, 嚇, 鬱, 餵, 麪, 瞭, 齣) even in a line that is already
    Traditional. Big5 holds Traditional characters, so a character s2hk changes that Big5
    cannot encode (这, 们, 说) is Simplified for sure.
    """
    chars = [chr(code) for code in range(0x3400, 0xA000)]
    # One call for all of them: newlines keep OpenCC from reading neighbours as phrases.
    converted = s2hk.convert("\n".join(chars)).split("\n")
    return frozenset(
        char
        for char, new in zip(chars, converted, strict=True)
        if new != char and not _in_big5(char) and char not in _HK_OUTSIDE_BIG5
    )


# Hong Kong characters outside Big5 (in HKSCS) that s2hk would still rewrite:
# 吓 (haa5, 試吓), 揾 (wan2), 糍 (糯米糍), and the HK forms 撑, 温, 恒 (恒生).
_HK_OUTSIDE_BIG5 = frozenset("吓揾糍撑温恒")


def _in_big5(char: str) -> bool:
    try:
        char.encode("cp950")
    except UnicodeEncodeError:
        return False
    return True


def _to_yale(jyutping: str) -> str | None:
    """Yale with tone marks, one space between syllables; ``None`` for invalid Jyutping."""
    try:
        return " ".join(pycantonese.jyutping_to_yale(jyutping))
    except ValueError:
        return None


def _widen(match: re.Match[str]) -> str:
    marks = match.group(1)
    if set(marks) == {"."} and len(marks) > 1:
        return "……"
    return marks.translate(_FULL_WIDTH)

"""Script normalisation and Jyutping/Yale romanization of transcript lines.

A line goes through :meth:`Romanizer.normalise` (OpenCC ``s2hk`` for lines written in
Simplified characters, width folding, Chinese punctuation between Chinese characters,
single spaces) and is then cut into words that spell it exactly, whitespace included::

    "".join(word.text for word in romanizer.words(text)) == text   # for normalised text

so a viewer can put ruby over every word. The cut is made in two steps: a tokenizer
separates runs of Chinese characters, numbers, Latin words, single spaces and single
punctuation marks; the G2P (:class:`romanizer.g2p.G2P`, the module behind
``scribe romanize``) then segments each Chinese run into words and reads polyphonic
characters in context. Besides:

- Latin words (code-switching: ``我今日好busy``) keep their text, with no romanization;
- numbers are read the Cantonese way by :func:`romanizer.numbers.read_number`;
- a character the lexicon lacks (a rare character) is a word of its own with no
  romanization and appears as itself in the lines;
- punctuation and spaces get no romanization; the lines are built by
  :func:`scribe.formats.join_words` (``ngo5 hai6 Peter, nei5 ne1?``).

Yale comes from the Jyutping through :func:`romanizer.yale.to_yale`, with tone marks and
one space between syllables (``gām yaht``), numbers included.
"""

from __future__ import annotations

import functools
import re

from romanizer.g2p import CJK as _CJK
from romanizer.g2p import G2P
from romanizer.g2p import TOKEN as _TOKEN
from romanizer.numbers import read_number
from romanizer.script import WIDTH as _WIDTH
from romanizer.yale import to_yale as _to_yale
from scribe.formats import join_words
from scribe.messages import Word

_SPACES = re.compile(r"\s+")
# Half-width punctuation written right after a Chinese character, and followed by another
# Chinese character or the end of the line, is Chinese punctuation that Whisper wrote narrow.
_NARROW_PUNCT = re.compile(rf"(?<=[{_CJK}])\s?([,.?!:;]+)(?:\s?(?=[{_CJK}])|\s*$)")
_FULL_WIDTH = str.maketrans({",": "，", ".": "。", "?": "？", "!": "！", ":": "：", ";": "；"})


class Romanizer:
    """Loads OpenCC s2hk and the G2P lexicon once; thread-safe to call.

    Results are cached per Chinese run (the text between punctuation, spaces, numbers
    and Latin words) and per Jyutping word, so repeated phrases cost a dictionary lookup.
    """

    def __init__(self, cache_size: int = 65_536, g2p: G2P | None = None) -> None:
        """Load the converters (about half a second, once per process).

        Args:
            cache_size: How many Chinese runs and Jyutping words to keep converted.
            g2p: The reader to use; a new :class:`romanizer.g2p.G2P` when ``None``.
        """
        # OpenCC converters are thread-safe (BYVoid/OpenCC#231); the G2P only reads its
        # lexicon, and its cache is a dict filled with immutable values.
        self._g2p = g2p or G2P()
        self._s2hk = self._g2p.s2hk
        self._simplified = self._g2p.simplified
        self._run = functools.lru_cache(maxsize=cache_size)(self._romanize_run)
        self._yale = functools.lru_cache(maxsize=cache_size)(_to_yale)

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
                out += self._run(token, text[match.end() : match.end() + 1])
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

    def _romanize_run(self, run: str, after: str) -> tuple[Word, ...]:
        return tuple(
            Word(text=word, jyutping=jyutping, yale=self._yale(jyutping) if jyutping else None)
            for word, jyutping in self._g2p.words(run, after)
        )


def _widen(match: re.Match[str]) -> str:
    marks = match.group(1)
    if set(marks) == {"."} and len(marks) > 1:
        return "……"
    return marks.translate(_FULL_WIDTH)

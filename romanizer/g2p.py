"""Cantonese grapheme-to-phoneme for runs of Chinese characters: words in, readings in context out.

::

    g2p = G2P()
    g2p.words("佢行咗去銀行")   # (("佢", "keoi5"), ("行", "haang4"), ("咗", "zo2"), ...)

A line as a whole (scripts, numbers, Latin words, punctuation, per-character readings) is
read by :class:`romanizer.romanize.Romanizer`, the one front end that the pipeline and
``scribe romanize`` share; this module reads the Chinese runs it finds:

1. A run is segmented into lexicon words (:mod:`romanizer.lexicon`) by dynamic
   programming: fewest words, then the words commonest in conversation (HKCanCor), then
   the longest words (the largest sum of squared lengths). Each word takes its preferred
   reading. Lexicon words that speech almost always keeps apart (都會 in 我都會去) are not
   used (:mod:`romanizer.context`).
2. A model learnt from HKCanCor re-reads a few polyphonic characters that stand alone
   as one-character words (下 haa5/haa6, 着, 返, 到 ...) from their neighbours
   (:mod:`romanizer.context`); then context rules (:mod:`romanizer.rules`), which state
   grammatical facts, re-read those and others (行, 長, 重, 好, 覺, 會, sentence-final
   particles ...) where they apply.
"""

from __future__ import annotations

from romanizer import lexicon as lexicon_module
from romanizer.context import ContextModel
from romanizer.rules import apply_rules

_MAX_WORD = 12  # longer lexicon entries are idioms that shorter words cover as well
_CACHE_SIZE = 200_000  # runs kept read; the cache stops filling there


class G2P:
    """Reads runs of Chinese characters. Loads the lexicon (about 0.2 s); thread-safe once built.

    Readings are cached per run and the character after it: the cache is a dict filled
    with immutable values, which threads may share.
    """

    def __init__(self, lexicon: lexicon_module.Lexicon | None = None, *, context: ContextModel | None = None) -> None:
        """Load the lexicon and the context model.

        Args:
            lexicon: Word -> readings; the packaged lexicon when ``None``.
            context: Words to split and per-character weights; the packaged model when
                ``None``, ``ContextModel()`` for none.
        """
        lexicon = lexicon if lexicon is not None else lexicon_module.load()
        self.context = context if context is not None else ContextModel.load()
        if self.context.splits:
            lexicon = {word: readings for word, readings in lexicon.items() if word not in self.context.splits}
        self.lexicon = lexicon
        self._prefixes = frozenset(word[:end] for word in self.lexicon for end in range(1, min(len(word), _MAX_WORD)))
        self._cache: dict[str, tuple[tuple[str, str | None], ...]] = {}

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
            if len(self._cache) < _CACHE_SIZE:
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

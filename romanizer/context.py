"""Context model for polyphonic characters, learnt from the Hong Kong Cantonese Corpus.

What is learnt from HKCanCor (conversational Hong Kong Cantonese with human Jyutping,
CC BY 4.0, shipped inside PyCantonese) lives in ``romanizer/data/context.json.gz``:

- **Splits**: lexicon words that, in running speech, are almost always two words read
  differently. ``都會`` is "metropolis" (dou1 wui6) in the lexicon, but ``我都會去`` is
  都 + 會 "will" (wui5): HKCanCor has 都 會 as two words 83 times and 都會 as one never.
  A lexicon word is split when HKCanCor has it as separate words at least three times as
  often as whole, and the separate words are mostly read otherwise than the lexicon reads
  the whole.
- **Parts of speech and word frequencies**: each word's commonest HKCanCor tag (``v``
  verb, ``n`` noun, ``q`` measure word ...) for the rules and the model, and its count, so
  that among equally short segmentations the one with words common in speech wins.
- **Readings in context**: an averaged perceptron per character, for the characters in
  :data:`CHARACTERS`, that chooses among the lexicon's readings of a character standing
  alone as a one-character word, from its neighbours (characters and words on each side,
  and their parts of speech). ``你試下加冰`` -> 下 haa5 "a bit"; ``我要着件外套`` -> 着 zoek3
  "wear". The rules of :mod:`romanizer.rules` run after it and have the last word.

:data:`CHARACTERS` holds the characters with at least ten HKCanCor examples where the
model beat the lexicon and rules on the development rows of the shared words.hk data (the
others were tried): elsewhere HKCanCor's transcription conventions (難 laan6, 間 gaan3,
嚟 lai4) differ from dictionary readings and the model does harm. For 返, 位, 聲 and 嘞
HKCanCor has one reading only, so the model just sets their reading when they stand
alone (返 faan1, not faan2).
No words.hk or CantoMap text goes into the model, and the held-out rows of
``bench/romanize_eval.py`` informed nothing.

The model is learnt by :mod:`romanizer.build.context`, which the runtime never imports.
Rebuild (needs PyCantonese 5, whose package data holds HKCanCor)::

    python -m romanizer.build.context
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections.abc import Sequence
from pathlib import Path

MODEL_PATH = Path(__file__).resolve().parent / "data" / "context.json.gz"
CHARACTERS = "下着轉返成位房聲女當到嘞吓樣"
"""Characters read by the model (chosen on development rows; see the module text)."""
ALIASES = {"著": "着"}
"""Characters read with another's weights: Hong Kong text writes 着 "wear" as 著 too."""

Words = list[tuple[str, str | None]]


def features(
    words: Sequence[tuple[str, str | None]], index: int, after: str, tags: dict[str, str] | None = None
) -> list[str]:
    """What the model sees of a one-character word and its neighbours.

    Args:
        words: ``(word, jyutping)`` pairs of one Chinese run, as segmented and read by the
            lexicon.
        index: The one-character word to read.
        after: What follows the run (a punctuation mark, or ``""`` at the end of a line).
        tags: Word -> its commonest HKCanCor part of speech (``v`` verb, ``q`` measure
            word, ``n`` noun ...).

    Returns:
        Feature names: the current reading, the characters one and two to each side, the
        words on each side and their parts of speech.
    """
    before = "^" + "".join(word for word, _ in words[max(0, index - 2) : index])  # two words hold two characters
    rest = "".join(word for word, _ in words[index + 1 : index + 3]) + (after or "$")
    p1, p2 = before[-1:], before[-2:]
    n1, n2 = rest[:1], rest[:2]
    previous_word = words[index - 1][0] if index else "^"
    next_word = words[index + 1][0] if index + 1 < len(words) else (after or "$")
    tags = tags or {}
    previous_tag = "^" if not index else tags.get(previous_word) or tags.get(previous_word[-1], "?")
    next_tag = "$" if index + 1 == len(words) else tags.get(next_word) or tags.get(next_word[0], "?")
    return [
        f"b={words[index][1]}",
        f"pt={previous_tag}",
        f"nt={next_tag}",
        f"ptnt={previous_tag}{next_tag}",
        f"p1={p1}",
        f"n1={n1}",
        f"p2={p2}",
        f"n2={n2}",
        f"p1n1={p1}{n1}",
        f"pw={previous_word}",
        f"nw={next_word}",
        "bias",
    ]


@dataclasses.dataclass
class ContextModel:
    """Lexicon words to split, parts of speech, per-character weights ``feature -> reading -> weight``."""

    splits: frozenset[str] = frozenset()
    weights: dict[str, dict[str, dict[str, float]]] = dataclasses.field(default_factory=dict)
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    frequency: dict[str, float] = dataclasses.field(default_factory=dict)
    """Word -> log(1 + its count in HKCanCor), for words seen at least twice."""

    @classmethod
    def load(cls, path: Path = MODEL_PATH) -> ContextModel:
        """Read the packaged model.

        Args:
            path: A gzip-compressed JSON file written by :func:`train`.

        Returns:
            The model.
        """
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            data = json.load(handle)
        return cls(frozenset(data["splits"]), data["weights"], data["tags"], data["frequency"])

    def save(self, path: Path = MODEL_PATH) -> None:
        """Write the model as gzip-compressed JSON, sorted so rebuilds compare equal."""
        data = {"splits": sorted(self.splits), "weights": self.weights, "tags": self.tags, "frequency": self.frequency}
        text = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as handle:
            handle.write(text.encode("utf-8"))

    def choose(self, char: str, feats: Sequence[str], candidates: Sequence[str]) -> str:
        """The highest-scoring reading; ties go to the first candidate (the current reading)."""
        return best(self.weights.get(ALIASES.get(char, char), {}), feats, candidates)

    def apply(self, words: Words, after: str, lexicon: dict[str, tuple[str, ...]]) -> Words:
        """Re-read the model's characters where they stand alone as words.

        Args:
            words: ``(word, jyutping)`` pairs of one Chinese run.
            after: What follows the run.
            lexicon: Where a character's candidate readings come from.

        Returns:
            The pairs, with some readings changed.
        """
        out = words
        for index, (word, reading) in enumerate(words):
            if reading is None or ALIASES.get(word, word) not in self.weights:
                continue
            options = candidates(reading, lexicon.get(word, ()))
            if len(options) > 1:
                choice = self.choose(word, features(words, index, after, self.tags), options)
                if choice != reading:
                    out = out if out is not words else list(words)
                    out[index] = (word, choice)
        return out


def best(table: dict[str, dict[str, float]], feats: Sequence[str], options: Sequence[str]) -> str:
    """The option with the highest summed weight; the first wins ties (the model's one scoring function)."""
    scores = dict.fromkeys(options, 0.0)
    for feature in feats:
        for reading, weight in table.get(feature, {}).items():
            if reading in scores:
                scores[reading] += weight
    return max(options, key=scores.__getitem__)


def candidates(reading: str, readings: Sequence[str]) -> list[str]:
    """The current reading first, then the lexicon's others."""
    return [reading, *(other for other in readings if other != reading)]

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

Rebuild (needs PyCantonese 5, whose package data holds HKCanCor)::

    python -m romanizer.context
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from romanizer.g2p import G2P

MODEL_PATH = Path(__file__).resolve().parent / "data" / "context.json.gz"
CHARACTERS = "下着轉返成位房聲女當到嘞吓樣"
"""Characters read by the model (chosen on development rows; see the module text)."""
ALIASES = {"著": "着"}
"""Characters read with another's weights: Hong Kong text writes 着 "wear" as 著 too."""

_EPOCHS = 5
_SYLLABLE = re.compile(r"[a-z]+[1-6]")

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
        return _best(self.weights.get(ALIASES.get(char, char), {}), feats, candidates)

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
            candidates = _candidates(reading, lexicon.get(word, ()))
            if len(candidates) > 1:
                choice = self.choose(word, features(words, index, after, self.tags), candidates)
                if choice != reading:
                    out = out if out is not words else list(words)
                    out[index] = (word, choice)
        return out


def _best(table: dict[str, dict[str, float]], feats: Sequence[str], candidates: Sequence[str]) -> str:
    """The candidate with the highest summed weight; the first wins ties."""
    scores = dict.fromkeys(candidates, 0.0)
    for feature in feats:
        for reading, weight in table.get(feature, {}).items():
            if reading in scores:
                scores[reading] += weight
    return max(candidates, key=scores.__getitem__)


def _candidates(reading: str, readings: Sequence[str]) -> list[str]:
    return [reading, *(other for other in readings if other != reading)]


class _Perceptron:
    """Multi-class averaged perceptron over sparse binary features."""

    def __init__(self) -> None:
        self.weights: dict[str, dict[str, float]] = defaultdict(dict)
        self._totals: dict[tuple[str, str], float] = defaultdict(float)
        self._stamps: dict[tuple[str, str], int] = defaultdict(int)
        self._step = 0

    def predict(self, feats: Sequence[str], candidates: Sequence[str]) -> str:
        return _best(self.weights, feats, candidates)

    def update(self, feats: Sequence[str], gold: str, guess: str) -> None:
        self._step += 1
        if gold == guess:
            return
        for feature in feats:
            for reading, delta in ((gold, 1.0), (guess, -1.0)):
                key = (feature, reading)
                row = self.weights[feature]
                self._totals[key] += (self._step - self._stamps[key]) * row.get(reading, 0.0)
                self._stamps[key] = self._step
                row[reading] = row.get(reading, 0.0) + delta

    def averaged(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for feature, row in self.weights.items():
            for reading, weight in row.items():
                key = (feature, reading)
                total = self._totals[key] + (self._step - self._stamps[key]) * weight
                average = round(total / max(self._step, 1), 3)
                if average:
                    out.setdefault(feature, {})[reading] = average
        return out


def hkcancor_sentences(tags: Counter[tuple[str, str]] | None = None) -> Iterator[tuple[list[str], list[str | None]]]:
    """HKCanCor utterances as gold words and one Jyutping syllable (or ``None``) per character.

    Args:
        tags: When given, counts of (word, part of speech) are added to it.
    """
    import pycantonese

    for utterance in pycantonese.hkcancor().utterances():
        assert not isinstance(utterance, list)  # a list only when asked for by file
        words: list[str] = []
        syllables: list[str | None] = []
        for token in utterance.tokens:
            found = _SYLLABLE.findall(token.jyutping or "")
            words.append(token.word)
            syllables += found if len(found) == len(token.word) else [None] * len(token.word)
            if tags is not None and token.pos:
                tags[token.word, token.pos[:1].lower()] += 1
        yield words, syllables


def learn_tags(counts: Counter[tuple[str, str]], minimum: int = 2) -> tuple[dict[str, str], dict[str, float]]:
    """Each word's commonest part of speech, and its log frequency, for words seen ``minimum`` times."""
    best: dict[str, tuple[int, str]] = {}
    totals: Counter[str] = Counter()
    for (word, tag), count in counts.items():
        totals[word] += count
        if (count, tag) > best.get(word, (0, "")):
            best[word] = (count, tag)
    kept = sorted(word for word, total in totals.items() if total >= minimum)
    return {word: best[word][1] for word in kept}, {word: round(math.log1p(totals[word]), 3) for word in kept}


def learn_splits(
    sentences: Sequence[tuple[list[str], list[str | None]]], lexicon: dict[str, tuple[str, ...]]
) -> frozenset[str]:
    """Lexicon words that speech keeps apart and reads otherwise (see the module text)."""
    whole: Counter[str] = Counter()
    apart: Counter[str] = Counter()
    apart_readings: dict[str, Counter[str]] = defaultdict(Counter)
    for words, syllables in sentences:
        starts = [0]
        for word in words:
            starts.append(starts[-1] + len(word))
            if len(word) > 1 and word in lexicon:
                whole[word] += 1
        for first in range(len(words)):
            for last in range(first + 1, min(first + 3, len(words))):
                joined = "".join(words[first : last + 1])
                if len(joined) <= 4 and joined in lexicon:
                    apart[joined] += 1
                    read = syllables[starts[first] : starts[last + 1]]
                    if all(read):
                        apart_readings[joined][" ".join(s for s in read if s)] += 1
    out = set()
    for word, count in apart.items():
        if count < 3 or count < 3 * (whole[word] + 1) or not apart_readings[word]:
            continue
        reading, agreeing = apart_readings[word].most_common(1)[0]
        if reading != lexicon[word][0] and agreeing >= max(3, 0.6 * count):
            out.add(word)
    return frozenset(out)


def _examples(
    g2p: G2P, sentences: Sequence[tuple[list[str], list[str | None]]]
) -> list[tuple[str, list[str], str, list[str]]]:
    """(character, features, gold reading, candidates) for the model's characters."""
    from romanizer.g2p import TOKEN

    out = []
    for words, syllables in sentences:
        text = "".join(words)
        if not any(char in CHARACTERS for char in text):
            continue
        for match in TOKEN.finditer(text):
            if match.lastgroup != "cjk":
                continue
            start, end = match.span()
            read = g2p.segment(match.group())
            position = start
            for index, (word, reading) in enumerate(read):
                gold = syllables[position]
                position += len(word)
                if len(word) != 1 or word not in CHARACTERS or reading is None or gold is None:
                    continue
                candidates = _candidates(reading, g2p.lexicon.get(word, ()))
                if gold in candidates and len(candidates) > 1:  # HKCanCor's own variants (laan6) are not learnt
                    feats = features(read, index, text[end : end + 1], g2p.context.tags)
                    out.append((word, feats, gold, candidates))
    return out


def train(seed: int = 0) -> ContextModel:
    """Learn the splits and the per-character weights from HKCanCor.

    Args:
        seed: For the order of training examples in each epoch.

    Returns:
        The model (deterministic for a given PyCantonese and lexicon).
    """
    from romanizer import lexicon as lexicon_module
    from romanizer.g2p import G2P

    counts: Counter[tuple[str, str]] = Counter()
    sentences = list(hkcancor_sentences(counts))
    tags, frequency = learn_tags(counts)
    lexicon = lexicon_module.load()
    splits = learn_splits(sentences, lexicon)
    g2p = G2P(lexicon, context=ContextModel(splits, tags=tags, frequency=frequency))
    examples = _examples(g2p, sentences)
    seen = Counter(char for char, *_ in examples)
    if thin := [char for char in CHARACTERS if seen[char] < 10]:
        raise ValueError(f"too few HKCanCor examples to learn {''.join(thin)}")
    models = {char: _Perceptron() for char in CHARACTERS}
    shuffle = random.Random(seed)
    for _ in range(_EPOCHS):
        shuffle.shuffle(examples)
        for char, feats, gold, candidates in examples:
            model = models[char]
            model.update(feats, gold, model.predict(feats, candidates))
    weights = {char: model.averaged() for char, model in models.items()}
    return ContextModel(splits, weights, tags, frequency)


if __name__ == "__main__":
    trained = train()
    trained.save()
    print(len(trained.splits), "splits;", sum(map(len, trained.weights.values())), "features")

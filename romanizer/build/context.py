"""Learning the context model (``romanizer/data/context.json.gz``) from HKCanCor.

What is learnt, and why, is described in :mod:`romanizer.context`, which reads the result
at run time and never imports this module. Rebuild (needs PyCantonese 5, whose package
data holds HKCanCor)::

    python -m romanizer.build.context
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence

from romanizer import lexicon as lexicon_module
from romanizer.context import CHARACTERS, ContextModel, best, candidates, features
from romanizer.g2p import G2P
from romanizer.romanize import TOKEN

_EPOCHS = 5
_SYLLABLE = re.compile(r"[a-z]+[1-6]")


class _Perceptron:
    """Multi-class averaged perceptron over sparse binary features."""

    def __init__(self) -> None:
        self.weights: dict[str, dict[str, float]] = defaultdict(dict)
        self._totals: dict[tuple[str, str], float] = defaultdict(float)
        self._stamps: dict[tuple[str, str], int] = defaultdict(int)
        self._step = 0

    def predict(self, feats: Sequence[str], options: Sequence[str]) -> str:
        return best(self.weights, feats, options)

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
                options = candidates(reading, g2p.lexicon.get(word, ()))
                if gold in options and len(options) > 1:  # HKCanCor's own variants (laan6) are not learnt
                    feats = features(read, index, text[end : end + 1], g2p.context.tags)
                    out.append((word, feats, gold, options))
    return out


def train(seed: int = 0) -> ContextModel:
    """Learn the splits and the per-character weights from HKCanCor.

    Args:
        seed: For the order of training examples in each epoch.

    Returns:
        The model (deterministic for a given PyCantonese and lexicon).
    """
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
        for char, feats, gold, options in examples:
            model = models[char]
            model.update(feats, gold, model.predict(feats, options))
    weights = {char: model.averaged() for char, model in models.items()}
    return ContextModel(splits, weights, tags, frequency)


if __name__ == "__main__":
    trained = train()
    trained.save()
    print(len(trained.splits), "splits;", sum(map(len, trained.weights.values())), "features")

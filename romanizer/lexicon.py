"""The pronunciation lexicon: words and characters with their Jyutping readings.

``romanizer/data/lexicon.tsv.gz`` holds one ``word<TAB>reading|reading...`` line per entry,
the preferred reading first. It merges two openly licensed sources (see
``romanizer/data/NOTICE``):

- ToJyutping 3.2.0 (BSD-2-Clause, CanCLID): its character and word table, whose reading
  order puts the commonest reading of a character first;
- rime-cantonese-upstream (CC BY 4.0, CanCLID): its word list, for words ToJyutping lacks
  and for extra readings of words it has.

Both write the OpenCC standard forms (因爲, 衛生, 裏面); each word is also entered under
the spellings Hong Kong and Taiwan text use (因為, 衞生, 裡面, 著數 for 着數), so text
written either way is read by whole words.

Nothing from words.hk or CantoMap goes into it. It is built by
:mod:`romanizer.build.lexicon`, which the runtime never imports::

    python -m romanizer.build.lexicon RIME_WORDS_TSV   # needs ToJyutping installed
"""

from __future__ import annotations

import gzip
from pathlib import Path

LEXICON_PATH = Path(__file__).resolve().parent / "data" / "lexicon.tsv.gz"

Lexicon = dict[str, tuple[str, ...]]
"""Word -> its readings (space-separated Jyutping, one syllable per character), best first."""


def load(path: Path = LEXICON_PATH) -> Lexicon:
    """Read the lexicon file.

    Args:
        path: A gzip-compressed ``word<TAB>reading|reading`` file.

    Returns:
        The lexicon.
    """
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    out: Lexicon = {}
    for line in lines:
        word, _, readings = line.partition("\t")
        out[word] = tuple(readings.split("|"))
    return out

"""Building the pronunciation lexicon (``romanizer/data/lexicon.tsv.gz``).

Its sources and licences are described in :mod:`romanizer.lexicon`, which reads the result
at run time and never imports this module. Rebuild with::

    python -m romanizer.build.lexicon RIME_WORDS_TSV   # needs ToJyutping installed
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import opencc

from romanizer.lexicon import LEXICON_PATH


def build(rime_words: Path, path: Path = LEXICON_PATH) -> int:
    """Build the lexicon file from ToJyutping's table and the rime-cantonese word list.

    Args:
        rime_words: The rime-cantonese-upstream word list as ``word<TAB>jyutping`` lines.
        path: Where to write the gzip file.

    Returns:
        The number of entries written.
    """
    merged: dict[str, list[str]] = {}
    for word, readings in _tojyutping_entries():
        # A few characters read as two syllables (兛 cin1 hak1): the alignment needs one each.
        kept = [reading for reading in readings if len(reading.split()) == len(word)]
        if kept:
            merged[word] = kept
    for line in rime_words.read_text(encoding="utf-8").splitlines():
        word, _, reading = line.partition("\t")
        reading = " ".join(reading.split())
        if not word or len(reading.split()) != len(word):
            continue
        readings = merged.setdefault(word, [])
        if reading not in readings:
            readings.append(reading)
    converters = [opencc.OpenCC(name) for name in ("t2hk", "t2tw")]
    for word, readings in list(merged.items()):
        variants = {converter.convert(word) for converter in converters} | {word.replace("着", "著")}
        for variant in variants:
            if len(variant) == len(word) and variant not in merged:
                merged[variant] = readings
    text = "".join(f"{word}\t{'|'.join(readings)}\n" for word, readings in sorted(merged.items()))
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=9) as handle:
        handle.write(text)
    return len(merged)


def _tojyutping_entries() -> list[tuple[str, list[str]]]:
    """Every entry of ToJyutping's trie, readings in its order (its first is its choice)."""
    from ToJyutping import Trie  # type: ignore[import-not-found, unused-ignore]  # rebuild only
    from ToJyutping.Jyutping import JyutpingList  # type: ignore[import-not-found, unused-ignore]

    out: list[tuple[str, list[str]]] = []
    stack = [("", Trie.root)]
    while stack:
        word, node = stack.pop()
        if node.v:
            readings = [
                " ".join(s.jyutping for s in value) if isinstance(value, JyutpingList) else value.jyutping
                for value in node.v
            ]
            out.append((word, readings))
        stack.extend((word + char, child) for char, child in node.items())
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1])), "entries")

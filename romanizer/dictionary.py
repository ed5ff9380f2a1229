"""The dictionary behind a tap on a word: English definitions with Jyutping and Yale.

``romanizer/data/dictionary.tsv.gz`` holds one ``traditional<TAB>simplified<TAB>jyutping<TAB>
source<TAB>definition<TAB>definition...`` line per entry, sorted by headword, CC-Canto's
entries before CC-CEDICT's (see ``romanizer/data/NOTICE``; both CC BY-SA):

- CC-Canto 2016-01-15 (Pleco): Cantonese words and Cantonese senses, with their Jyutping;
- CC-CEDICT 2023-11-07 (MDBG): the general Chinese-English dictionary, read with CC-Canto's
  Cantonese readings for CC-CEDICT, or by :class:`romanizer.romanize.Romanizer` for the
  entries those readings lack. Entries of one headword that read the same in Cantonese
  (Mandarin told them apart) are merged.

A query is looked up as written, as Simplified, and in the other Traditional spellings OpenCC
knows (裏/裡, 衞/衛, 着/著). A query that is no headword is read as the longest headwords from
its left, down to single characters, so a phrase or a word the dictionary lacks still shows
its parts. Nothing from words.hk or CantoMap goes into it. It is built by
:mod:`romanizer.build.dictionary`, which the runtime never imports.

The file is kept in memory as it is (about 140,000 lines, 12 MB) with an array of where each
line starts, searched by bisection: no Python object per entry, nothing for the garbage
collector to walk; lines are parsed when looked up.
"""

from __future__ import annotations

import array
import bisect
import dataclasses
import re
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import opencc

from romanizer.script import WIDTH
from romanizer.yale import to_yale

DICTIONARY_PATH = Path(__file__).resolve().parent / "data" / "dictionary.tsv.gz"
MAX_ENTRIES = 8
MAX_QUERY = 16
"""The longest query, in characters: a word or a short phrase, not a sentence."""

Source = Literal["CC-Canto", "CC-CEDICT"]
SOURCES: dict[str, Source] = {"canto": "CC-Canto", "cedict": "CC-CEDICT"}
"""The source column's codes."""

# A query's other Traditional spellings: OpenCC's standard, Taiwan's and Hong Kong's. Simplified
# is found through the entries' own Simplified headwords: OpenCC's s2t would cost 27 MB.
_CONVERSIONS = ("hk2t", "t2tw", "tw2t", "t2hk")
_HEADWORDS = re.compile(rb"([^\t\n]*)\t([^\t\n]*)\t[^\n]*\n")  # a line's two headwords


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One dictionary entry: a headword, its Cantonese reading and its English senses.

    Attributes:
        traditional: The headword in Traditional characters.
        simplified: The headword in Simplified characters.
        jyutping: Space-separated Jyutping, or ``None`` where no reading is known.
        yale: The Yale of ``jyutping`` with tone marks (``ngàhn hòhng``), or ``None``.
        definitions: English definitions, in the dictionary's order.
        source: The dictionary the entry comes from.
    """

    traditional: str
    simplified: str
    jyutping: str | None
    yale: str | None
    definitions: tuple[str, ...]
    source: Source


@dataclasses.dataclass(frozen=True, slots=True)
class Lookup:
    """What a query found.

    Attributes:
        query: The query, stripped of surrounding spaces.
        parts: The headwords the query was read as: the query itself (in each spelling that
            matched: 发 is 發 and 髮) when it is a headword, else its longest headwords from
            the left.
        whole: Whether the query itself is a headword (rather than only its parts).
        entries: At most :data:`MAX_ENTRIES` entries, every part's first entry before any
            part's second, in the order of the parts.
    """

    query: str
    parts: tuple[str, ...]
    whole: bool
    entries: tuple[Entry, ...]


class Dictionary:
    """CC-Canto and CC-CEDICT in memory (about 20 MB); :meth:`load` takes a quarter of a second. Thread-safe."""

    def __init__(self, lines: Table, simplified: Table) -> None:
        """Wrap loaded tables (use :meth:`load` to read the packaged file).

        Args:
            lines: The entry lines, by Traditional headword.
            simplified: ``simplified<TAB>traditional`` lines, for the headwords whose two
                spellings differ.
        """
        self._lines = lines
        self._simplified = simplified
        # OpenCC converters are thread-safe (BYVoid/OpenCC#231).
        self._converters = [opencc.OpenCC(name) for name in _CONVERSIONS]

    @classmethod
    def load(cls, path: Path = DICTIONARY_PATH) -> Dictionary:
        """Read the dictionary file.

        Args:
            path: A gzip file of entry lines sorted by headword, after ``#`` comment lines.

        Returns:
            The dictionary.
        """
        packed = path.read_bytes()
        # gzip, inflated at once into a buffer of the size its trailer gives: no growing copies.
        data = zlib.decompress(packed, wbits=31, bufsize=int.from_bytes(packed[-4:], "little"))
        del packed
        lines = Table(data)
        pairs = {
            match[2] + b"\t" + match[1] for match in _HEADWORDS.finditer(data, lines.first) if match[1] != match[2]
        }
        return cls(lines, Table(b"\n".join([*sorted(pairs), b""])))

    def __len__(self) -> int:
        """The number of entries."""
        return len(self._lines)

    def lookup(self, query: str, limit: int = MAX_ENTRIES) -> Lookup:
        """Look a word up: as a headword, else by its parts.

        Args:
            query: A word or short phrase, Traditional or Simplified (full-width letters and
                digits are read as ASCII; surrounding spaces are ignored).
            limit: The most entries to return.

        Returns:
            The parts found and their entries; no parts and no entries when nothing matched.
        """
        # A lone surrogate (half a character) can be neither encoded nor converted: it matches nothing.
        text = query.strip().translate(WIDTH).encode("utf-8", "replace").decode("utf-8")
        whole = self.headwords(text)
        parts = whole or self._segment(text)
        found = _interleave([self.entries(part) for part in parts], limit)
        return Lookup(query=query.strip(), parts=tuple(parts), whole=bool(whole), entries=tuple(found))

    def headwords(self, text: str) -> list[str]:
        """The Traditional headwords a text spells: as written, as Simplified, in other spellings.

        Args:
            text: A candidate word.

        Returns:
            Matching headwords, the exact one first; empty if none.
        """
        if not text:
            return []
        forms = [text, *(converter.convert(text) for converter in self._converters)]
        found: list[str] = []
        for form in dict.fromkeys(form for form in forms if len(form) == len(text)):
            found += [form] if self._lines.find(form) else []
            found += [line.split("\t")[1] for line in self._simplified.find(form)]
        return list(dict.fromkeys(found))

    def entries(self, headword: str) -> list[Entry]:
        """Every entry of a Traditional headword, CC-Canto's first.

        Args:
            headword: As :meth:`headwords` returns it.

        Returns:
            The entries; empty if there is no such headword.
        """
        return [_entry(line) for line in self._lines.find(headword)]

    def _segment(self, text: str) -> list[str]:
        """The longest headwords from the left; characters that are no headword are skipped."""
        parts: list[str] = []
        start = 0
        while start < len(text):
            for end in range(len(text), start, -1):
                found = self.headwords(text[start:end])
                if found:
                    parts.append(found[0])
                    start = end
                    break
            else:
                start += 1
        return parts


class Table:
    """Tab-separated lines sorted by their first field, kept as one ``bytes`` and found by bisection.

    Less than half the memory of a ``dict`` of the same lines (no object per line), and
    nothing for the garbage collector to walk. UTF-8 sorts as the code points do, so the
    build's sort by ``str`` is this sort.
    """

    def __init__(self, data: bytes) -> None:
        """Index the lines.

        Args:
            data: Newline-terminated lines, sorted by their first field, after any ``#`` comment
                lines (skipped).
        """
        self._data = data
        position = 0
        while data.startswith(b"#", position):
            position = data.index(b"\n", position) + 1
        self.first = position
        """Where the first line that is no comment starts."""
        starts = array.array("I")
        while position < len(data):
            starts.append(position)
            position = data.index(b"\n", position) + 1
        self._starts = starts

    def __len__(self) -> int:
        """The number of lines."""
        return len(self._starts)

    def find(self, key: str) -> list[str]:
        """Every line whose first field is ``key``, in file order."""
        wanted = key.encode()
        index = bisect.bisect_left(self._starts, wanted, key=self._key)
        out: list[str] = []
        while index < len(self._starts) and self._key(self._starts[index]) == wanted:
            start = self._starts[index]
            out.append(self._data[start : self._data.index(b"\n", start)].decode())
            index += 1
        return out

    def _key(self, start: int) -> bytes:
        return self._data[start : self._data.index(b"\t", start)]


def _entry(line: str) -> Entry:
    traditional, simplified, jyutping, source, *definitions = line.split("\t")
    return Entry(
        traditional=traditional,
        simplified=simplified,
        jyutping=jyutping or None,
        yale=yale(jyutping) if jyutping else None,
        definitions=tuple(definitions),
        source=SOURCES[source],
    )


def yale(jyutping: str) -> str:
    """Yale with tone marks, syllable by syllable; what is not Jyutping (``OK``, ``，``) stays as written.

    Args:
        jyutping: Space-separated Jyutping (``kaa1 laai1 OK``).

    Returns:
        The Yale (``kā lāai OK``).
    """
    return " ".join(to_yale(syllable) or syllable for syllable in jyutping.split())


def _interleave(groups: Iterable[list[Entry]], limit: int) -> list[Entry]:
    """Up to ``limit`` entries, every group's first before any group's second, kept in group order."""
    groups = list(groups)
    taken = [0] * len(groups)
    total = 0
    for depth in range(max((len(group) for group in groups), default=0)):
        for index, group in enumerate(groups):
            if total < limit and depth < len(group):
                taken[index] += 1
                total += 1
    return [entry for group, count in zip(groups, taken, strict=True) for entry in group[:count]]

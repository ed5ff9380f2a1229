"""Jyutping to Yale: the pingyam syllable inventory, the dictionaries' tone marks, tone numbers 1-6."""

from __future__ import annotations

import re
import unicodedata

import pycantonese
import pytest

from romanizer.yale import to_yale, yale_parts
from tests.paths import ROMANIZATION

# Rows of the pingyam table that are typing slips in the source, not Yale: a doubled coda
# letter (gagk, kakk, popt) and a spacing macron or tilde instead of a combining macron.
_PINGYAM_SLIPS = {"gak6", "kak6", "pot6", "m1", "ng1", "hm1", "hng1"}
# Finals whose tone mark the pingyam table puts on the second vowel (leúhng, heūng, biū,
# buī); we follow PyCantonese and the dictionaries (léuhng, hēung, bīu, būi).
_FIRST_VOWEL_FINALS = re.compile(r"(iu|ui|oe(?:ng|k|t)|eo[nt])[1-6]$")
_NINE_TONES = {"7": "1", "8": "3", "9": "6"}  # the table's checked tones, as Jyutping numbers them


def _pingyam() -> list[tuple[str, str, str]]:
    lines = (ROMANIZATION / "yale_syllables_pingyam.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [(j, unicodedata.normalize("NFC", d), n) for j, d, n in (line.split("\t") for line in lines)]


def _pycantonese_yale(jyutping: str) -> str:
    return unicodedata.normalize("NFC", pycantonese.jyutping_to_yale(jyutping)[0])


def test_every_pingyam_syllable_has_its_spelling_with_jyutping_tone_numbers() -> None:
    rows = _pingyam()
    assert len(rows) > 3900
    wrong = []
    for jyutping, _marked, numeric in rows:
        parts = yale_parts(jyutping)
        expected = numeric[:-1] + _NINE_TONES.get(numeric[-1], numeric[-1])
        if jyutping not in _PINGYAM_SLIPS and (parts is None or parts[1] != expected):
            wrong.append((jyutping, numeric, parts))
    assert wrong == []


def test_tone_marks_follow_the_pingyam_table_except_where_the_dictionaries_differ() -> None:
    rows = [(j, d) for j, d, _ in _pingyam() if j not in _PINGYAM_SLIPS]
    table = [(j, d, yale_parts(j)) for j, d in rows if not _FIRST_VOWEL_FINALS.search(j)]
    assert [row for row in table if row[2] is None or row[2][0] != row[1]] == []
    dictionaries = [(j, yale_parts(j)) for j, _ in rows if _FIRST_VOWEL_FINALS.search(j)]
    assert len(dictionaries) > 150  # iu, ui, eung, euk, eun, eut in all their onsets and tones
    assert [(j, p) for j, p in dictionaries if p is None or p[0] != _pycantonese_yale(j)] == []


@pytest.mark.parametrize(
    ("jyutping", "marked", "numbers"),
    [
        ("loeng5", "léuhng", "leung5"),  # 兩: the mark on the first vowel of the final
        ("hoeng1", "hēung", "heung1"),  # 香
        ("biu1", "bīu", "biu1"),  # 標
        ("bui1", "būi", "bui1"),  # 杯
        ("syu1", "syū", "syu1"),  # 書: yu is one vowel
        ("goek3", "geuk", "geuk3"),  # 腳: tone 3, not the old 8
        ("hok6", "hohk", "hok6"),  # 學: tone 6, not the old 9
        ("jat1", "yāt", "yat1"),  # 一: tone 1, not the old 7
    ],
)
def test_the_settled_conventions(jyutping: str, marked: str, numbers: str) -> None:
    assert yale_parts(jyutping) == (marked, numbers)


def test_the_pingyam_slips_are_slips() -> None:
    rows = {j: (d, n) for j, d, n in _pingyam()}
    assert {j: rows[j][0] for j in ("gak6", "kak6", "pot6")} == {"gak6": "gagk", "kak6": "kakk", "pot6": "popt"}
    assert yale_parts("gak6") == ("gahk", "gak6")
    assert yale_parts("m1") == ("m̄", "m1")


@pytest.mark.parametrize(
    ("jyutping", "yale", "numeric"),
    [
        ("m4 goi1", "m̀h gōi", "m4 goi1"),
        ("gwong2 dung1 waa2", "gwóng dūng wá", "gwong2 dung1 wa2"),
        ("hei3 hau6", "hei hauh", "hei3 hau6"),
        ("gwong2 zau1 waa2", "gwóng jāu wá", "gwong2 jau1 wa2"),
        ("jat6 jyu4", "yaht yùh", "yat6 yu4"),
    ],
)
def test_yale_lines(jyutping: str, yale: str, numeric: str) -> None:
    assert to_yale(jyutping) == yale
    assert to_yale(jyutping, numbers=True) == numeric


@pytest.mark.parametrize("bad", ["", "xyz1", "gam7", "hello"])
def test_invalid_jyutping_has_no_yale(bad: str) -> None:
    assert to_yale(bad) is None
    assert to_yale(bad, numbers=True) is None

"""The dictionary behind a tap on a word: the packaged CC-Canto and CC-CEDICT, looked up by
headword in either script and spelling, and by parts when the word has no entry."""

from __future__ import annotations

import gzip

import pytest

from romanizer.dictionary import DICTIONARY_PATH, MAX_ENTRIES, Dictionary, Entry, yale


@pytest.fixture(scope="module")
def dictionary() -> Dictionary:
    return Dictionary.load()


def _definitions(entries: tuple[Entry, ...]) -> str:
    return " / ".join(definition for entry in entries for definition in entry.definitions)


def test_a_word_has_its_reading_in_jyutping_and_yale_and_its_english(dictionary: Dictionary) -> None:
    found = dictionary.lookup("銀行")
    assert found.whole and found.parts == ("銀行",)
    bank = found.entries[0]
    assert (bank.traditional, bank.simplified, bank.jyutping, bank.yale) == (
        "銀行",
        "银行",
        "ngan4 hong4",
        "ngàhn hòhng",
    )
    assert "bank" in bank.definitions and bank.source == "CC-CEDICT"


def test_cantonese_words_come_from_cc_canto_first(dictionary: Dictionary) -> None:
    bottleneck = dictionary.lookup("樽頸").entries
    assert bottleneck[0].source == "CC-Canto" and bottleneck[0].jyutping == "zeon1 geng2"
    assert "bottle" in _definitions(bottleneck) and "neck" in _definitions(bottleneck)
    they = dictionary.lookup("佢哋").entries
    assert they[0].source == "CC-Canto" and they[0].yale == "kéuih deih" and "they" in _definitions(they)
    sources = [entry.source for entry in dictionary.lookup("行").entries]
    assert sources == sorted(sources, key=lambda source: source != "CC-Canto") and "CC-Canto" in sources


def test_simplified_and_other_spellings_find_the_traditional_headword(dictionary: Dictionary) -> None:
    assert dictionary.lookup("银行").entries[0].traditional == "銀行"
    hair = dictionary.lookup("发")  # one Simplified character, two Traditional words
    assert {"發", "髮"} <= set(hair.parts) and hair.whole
    assert "hair" in _definitions(hair.entries)
    inside = dictionary.lookup("裏面")  # Hong Kong's 裏, CC-CEDICT's 裡
    assert {"裏面", "裡面"} <= set(inside.parts)
    assert dictionary.lookup(" 着數 ").entries[0].traditional == "著數"


def test_a_word_without_an_entry_shows_its_parts(dictionary: Dictionary) -> None:
    found = dictionary.lookup("大樽頸")
    assert not found.whole and found.parts == ("大", "樽頸")
    assert [entry.traditional for entry in found.entries[:2]] == ["大", "樽頸"]  # every part's first entry first
    phrase = dictionary.lookup("我哋去銀行")
    assert phrase.parts == ("我哋", "去", "銀行") and {"我哋", "去", "銀行"} == {e.traditional for e in phrase.entries}
    characters = dictionary.lookup("一二三四五六七八九十甲乙丙丁戊己")
    assert len(characters.entries) == MAX_ENTRIES


def test_nonsense_finds_nothing(dictionary: Dictionary) -> None:
    for query in ("qqzx", "", "   ", "!?", "\ud800", "\x00"):
        found = dictionary.lookup(query)
        assert found.entries == () and found.parts == () and not found.whole, query


def test_every_entry_has_definitions_and_a_source_and_nearly_all_a_reading(dictionary: Dictionary) -> None:
    with gzip.open(DICTIONARY_PATH, "rt", encoding="utf-8") as handle:
        lines = [line.rstrip("\n").split("\t") for line in handle if not line.startswith("#")]
    assert len(lines) == len(dictionary) > 100_000
    assert all(len(fields) >= 5 and fields[3] in {"canto", "cedict"} for fields in lines)
    assert sum(1 for fields in lines if not fields[2]) < 200
    headwords = [fields[0] for fields in lines]
    assert headwords == sorted(headwords)  # what the bisection relies on


def test_yale_keeps_what_is_not_jyutping() -> None:
    assert yale("kaa1 laai1 OK") == "kā lāai OK"
    assert yale("ngan4 hong4") == "ngàhn hòhng"


def test_the_licence_notice_ships_beside_the_data() -> None:
    notice = (DICTIONARY_PATH.parent / "NOTICE").read_text(encoding="utf-8")
    assert "CC-Canto" in notice and "CC-CEDICT" in notice and "CC BY-SA 4.0" in notice

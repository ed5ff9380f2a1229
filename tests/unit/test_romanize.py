"""The romanizer front end: normalisation, words, Jyutping/Yale lines, numbers, one reading for both paths."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator

import msgspec
import pytest

from core.messages import RawSegment, Segment, Word
from romanizer.numbers import read_number
from romanizer.romanize import Romanizer
from romanizer.service import romanize_chunk
from scribe.cli import build_parser, romanize


@pytest.fixture(scope="module")
def romanizer() -> Iterator[Romanizer]:
    yield Romanizer()


def pipeline(romanizer: Romanizer, raw: str) -> Segment:
    """One ASR line through the romanizer service's path: normalise, clean up, read."""
    (line,) = romanize_chunk(
        romanizer, [RawSegment(start=0.0, end=1.0, text=raw)], chunk_seq=0, first_seq=0, previous=[]
    )
    return line


# --- normalise ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("这个", "這個"),  # Simplified -> Hong Kong Traditional
        ("这个东西好贵", "這個東西好貴"),
        ("我哋今日去咗这度", "我哋今日去咗這度"),  # one Simplified character converts the line
        ("我哋今日去咗香港", "我哋今日去咗香港"),  # Traditional stays
        ("你食晒佢，喂！", "你食晒佢，喂！"),  # shared characters in a Traditional line: not 曬/餵
        ("試吓先", "試吓先"),  # 吓 is outside Big5 but Hong Kong Cantonese
        ("你好嗎?", "你好嗎？"),  # narrow punctuation after Chinese -> Chinese punctuation
        ("好,我哋走.", "好，我哋走。"),
        ("你好嗎...", "你好嗎……"),
        ("我係Peter, 你呢", "我係Peter, 你呢"),  # after a Latin word the comma stays
        ("佢有3.5個", "佢有3.5個"),  # a decimal point is not a full stop
        ("  你好   呀 \n ", "你好 呀"),  # whitespace collapsed
        ("１２３ＡＢＣ％", "123ABC%"),  # full-width Latin and digits folded
        ("我今日好busy", "我今日好busy"),
    ],
)
def test_normalise(romanizer: Romanizer, raw: str, expected: str) -> None:
    assert romanizer.normalise(raw) == expected


@pytest.mark.parametrize("raw", ["这个东西好贵,係咪?", "你好嗎...", "１２３ＡＢＣ％ 试吓", "我係Peter, 你呢"])
def test_normalise_is_idempotent(romanizer: Romanizer, raw: str) -> None:
    once = romanizer.normalise(raw)
    assert romanizer.normalise(once) == once


# --- words and lines ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "我哋今日去咗香港",
        "这个",
        "我今日好busy",
        "佢2024年買咗個iPhone 15, 用咗3.5年",
        "（笑）佢話「唔得」",
        "Hello, world. 你好",
    ],
)
def test_words_spell_the_normalised_text(romanizer: Romanizer, raw: str) -> None:
    line = pipeline(romanizer, raw)
    assert "".join(word.text for word in line.words) == line.text == romanizer.normalise(raw)


def test_simplified_input_gives_traditional_words(romanizer: Romanizer) -> None:
    line = pipeline(romanizer, "我们今日去咗香港")
    assert line.text == "我們今日去咗香港"
    assert [w.text for w in line.words][:2] == ["我們", "今日"]
    assert line.jyutping == "ngo5 mun4 gam1 jat6 heoi3 zo2 hoeng1 gong2"


def test_code_switching_keeps_english(romanizer: Romanizer) -> None:
    line = pipeline(romanizer, "我今日好busy")
    assert line.words[-1] == Word(text="busy", jyutping=None, yale=None)
    assert line.jyutping == "ngo5 gam1 jat6 hou2 busy"
    assert line.yale == "ngóh gām yaht hóu busy"


def test_latin_words_get_no_romanization_even_when_pycantonese_knows_them(romanizer: Romanizer) -> None:
    line = pipeline(romanizer, "OK啦")
    assert line.words[0] == Word(text="OK", jyutping=None, yale=None)
    assert line.jyutping == "OK laa1"


def test_yale_has_tone_marks(romanizer: Romanizer) -> None:
    assert romanizer.read("今日").words == [Word(text="今日", jyutping="gam1 jat6", yale="gām yaht")]
    assert romanizer.read("唔該").words[0].yale == "m̀h gōi"


def test_punctuation_attaches_in_romanization_lines(romanizer: Romanizer) -> None:
    line = pipeline(romanizer, "我係Peter，你呢？")
    assert line.jyutping == "ngo5 hai6 Peter, nei5 ne1?"
    assert line.yale == "ngóh haih Peter, néih nē?"
    assert [w for w in line.words if w.text in "，？"] == [
        Word(text="，", jyutping=None, yale=None),
        Word(text="？", jyutping=None, yale=None),
    ]


def test_quotes_and_brackets(romanizer: Romanizer) -> None:
    assert pipeline(romanizer, "（笑）佢話「唔得」").jyutping == '(siu3) keoi5 waa6 "m4 dak1"'


@pytest.mark.parametrize(
    ("raw", "jyutping"),
    [
        ("2024年", "ji6 ling4 ji6 sei3 nin4"),
        ("有10%嘅人", "jau5 baak3 fan6 zi1 sap6 ge3 jan4"),
        ("3.5年", "saam1 dim2 ng5 nin4"),
        ("我有2個仔", "ngo5 jau5 loeng5 go3 zai2"),
        ("iPhone 15", "iPhone sap6 ng5"),
        ("我哋10:30見", "ngo5 dei6 sap6 dim2 saam1 sap6 fan1 gin3"),
    ],
)
def test_digits_read_the_cantonese_way(romanizer: Romanizer, raw: str, jyutping: str) -> None:
    assert pipeline(romanizer, raw).jyutping == jyutping


def test_number_word_carries_yale(romanizer: Romanizer) -> None:
    words = romanizer.read("19個").words
    assert words[0] == Word(text="19", jyutping="sap6 gau2", yale="sahp gáu")


def test_money_is_read_with_its_unit_in_the_pipeline_too(romanizer: Romanizer) -> None:
    # The pipeline once dropped the dollar: "$ jat1 baak3 ..." where `scribe romanize` read "man1".
    line = pipeline(romanizer, "$100同埋3.5%")
    assert line.jyutping == "$ jat1 baak3 man1 tung4 maai4 baak3 fan6 zi1 saam1 dim2 ng5"


def test_unknown_character_stays_as_itself(romanizer: Romanizer) -> None:
    line = pipeline(romanizer, "佢𪚥")
    assert line.words[-1] == Word(text="𪚥", jyutping=None, yale=None)
    assert line.jyutping == "keoi5 𪚥"
    assert line.yale == "kéuih 𪚥"


def test_unknown_character_next_to_a_known_one_is_a_word_of_its_own(romanizer: Romanizer) -> None:
    assert romanizer.read("香𪚥").words == [
        Word(text="香", jyutping="hoeng1", yale="hēung"),
        Word(text="𪚥", jyutping=None, yale=None),
    ]


def test_threads_share_one_romanizer(romanizer: Romanizer) -> None:
    expected = {
        "我哋今日去咗香港": "ngo5 dei6 gam1 jat6 heoi3 zo2 hoeng1 gong2",
        "佢2024年買咗個iPhone": "keoi5 ji6 ling4 ji6 sei3 nin4 maai5 zo2 go3 iPhone",
        "你食咗飯未呀？": "nei5 sik6 zo2 faan6 mei6 aa3?",
    }
    fresh = Romanizer(romanizer.g2p.__class__())  # an empty cache, filled by four threads at once
    results: dict[int, list[str]] = {}

    def work(index: int) -> None:
        results[index] = [pipeline(fresh, text).jyutping for text in list(expected) * 20]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: list(expected.values()) * 20 for i in range(4)}


# --- one front end: the pipeline reads a line as `scribe romanize` does ------------------

SAME_LINES = [
    "$100同埋3.5%",  # money, percentage
    "佢2024年3月5日10:30嚟，畀咗我$12.5",  # date, time, money with cents
    "我有2個仔，屋企有1,000本書",  # measure word, thousands separator
    "佢係Peter，今日好busy，OK？",  # Latin, code-switching, Chinese punctuation
    "这个东西好贵吗?",  # Simplified, narrow punctuation
    "（笑）佢話「唔得」…",  # brackets, quotes, ellipsis
    "你去唔去呢～ 好呀啦嘛",  # particles, a space
    "Ｈｅｌｌｏ　１２３％",  # full-width Latin, digits, space
    "佢𪚥咗 iPhone 15 Pro Max",  # a character without a reading, Latin with digits
    "你食咗飯未呀?我哋行街啦...",  # narrow marks between Chinese, an ellipsis
]


def _cli(lines: list[str]) -> list[dict[str, object]]:
    out = io.StringIO()
    romanize(build_parser().parse_args(["romanize"]), io.StringIO("".join(f"{line}\n" for line in lines)), out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_the_pipeline_reads_every_line_as_scribe_romanize_does(romanizer: Romanizer) -> None:
    raw = [RawSegment(start=float(i), end=float(i) + 1.0, text=text) for i, text in enumerate(SAME_LINES)]
    lines = romanize_chunk(romanizer, raw, chunk_seq=0, first_seq=0, previous=[])
    # Lines are cut at sentence ends (romanizer.lines): the last one is two sentences.
    assert [line.text for line in lines] == [romanizer.normalise(text) for text in SAME_LINES[:-1]] + [
        "你食咗飯未呀？",
        "我哋行街啦……",
    ]
    cli = _cli([line.text for line in lines])
    for line, printed in zip(lines, cli, strict=True):
        assert msgspec.to_builtins(line.chars) == printed["chars"], line.text
        assert len(line.chars) == len(line.text)


def test_lines_already_normal_read_the_same_raw_or_normalised(romanizer: Romanizer) -> None:
    normal = [text for text in SAME_LINES if romanizer.normalise(text) == text]
    assert len(normal) >= 4
    for text, printed in zip(normal, _cli(normal), strict=True):
        assert msgspec.to_builtins(pipeline(romanizer, text).chars) == printed["chars"], text


# --- numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "after", "jyutping"),
    [
        ("0", "", "ling4"),
        ("2", "", "ji6"),
        ("2", "個", "loeng5"),
        ("10", "", "sap6"),
        ("12", "個", "sap6 ji6"),
        ("19", "", "sap6 gau2"),
        ("56", "", "ng5 sap6 luk6"),
        ("100", "", "jat1 baak3"),
        ("101", "", "jat1 baak3 ling4 jat1"),
        ("110", "", "jat1 baak3 jat1 sap6"),
        ("200", "", "loeng5 baak3"),
        ("1001", "", "jat1 cin1 ling4 jat1"),
        ("1,000", "", "jat1 cin1"),
        ("2024", "年", "ji6 ling4 ji6 sei3"),
        ("2024", "", "loeng5 cin1 ling4 ji6 sap6 sei3"),
        ("10010", "", "jat1 maan6 ling4 jat1 sap6"),
        ("100000", "", "sap6 maan6"),
        ("100,000,000", "", "jat1 jik1"),
        ("3.5", "", "saam1 dim2 ng5"),
        ("0.25", "", "ling4 dim2 ji6 ng5"),
        ("10%", "", "baak3 fan6 zi1 sap6"),
        ("3.5%", "", "baak3 fan6 zi1 saam1 dim2 ng5"),
        ("0800", "", "ling4 baat3 ling4 ling4"),
        ("98765432", "", "gau2 baat3 cat1 luk6 ng5 sei3 saam1 ji6"),
        ("10:05", "", "sap6 dim2 ling4 ng5 fan1"),
        ("2:00", "", "loeng5 dim2"),
    ],
)
def test_read_number(text: str, after: str, jyutping: str) -> None:
    assert read_number(text, context_after=after) == jyutping


@pytest.mark.parametrize("text", ["abc", "", "1.2.3", "25:00", "12a"])
def test_read_number_refuses_what_is_not_a_number(text: str) -> None:
    assert read_number(text) is None

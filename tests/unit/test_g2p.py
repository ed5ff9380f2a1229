"""Reading Cantonese: polyphones in context, numbers, scripts, alignment, ``scribe romanize``."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator

import pytest

from romanizer.context import ContextModel
from romanizer.g2p import G2P
from romanizer.romanize import Romanizer
from scribe.cli import build_parser, romanize
from tests.paths import ROMANIZATION


@pytest.fixture(scope="module")
def romanizer() -> Iterator[Romanizer]:
    yield Romanizer()


def _jyutping(romanizer: Romanizer, text: str) -> list[str | None]:
    return [char.jyutping for char in romanizer.read(text).chars]


# --- polyphonic characters in context ---------------------------------------------------


@pytest.mark.parametrize(
    ("sentence", "char", "reading"),
    [
        ("我哋聽日去行山", "行", "haang4"),
        ("佢喺銀行做嘢", "行", "hong4"),
        ("佢係行政總裁", "行", "hang4"),
        ("呢條路好長", "長", "coeng4"),
        ("佢係我哋嘅校長", "長", "zoeng2"),
        ("個細路長高咗好多", "長", "zoeng2"),
        ("我好鍾意聽音樂", "樂", "ngok6"),
        ("祝你生日快樂", "樂", "lok6"),
        ("今日天氣好好", "好", "hou2"),
        ("我嘅愛好係睇書", "好", "hou3"),
        ("呢個箱好重", "重", "cung5"),
        ("佢重未返嚟", "重", "zung6"),
        ("我哋要重新開始", "重", "cung4"),
        ("我要瞓覺喇", "覺", "gaau3"),
        ("我覺得好攰", "覺", "gok3"),
        ("飛機準備降落", "降", "gong3"),
        ("佢哋最後投降", "降", "hong4"),
        ("你食咗飯未呀？", "呀", "aa3"),
        ("係你呀？", "呀", "aa4"),
        ("好呀，一齊去", "呀", "aa3"),
    ],
)
def test_polyphones_in_sentences(romanizer: Romanizer, sentence: str, char: str, reading: str) -> None:
    assert _jyutping(romanizer, sentence)[sentence.index(char)] == reading


@pytest.fixture(scope="module")
def without_context(romanizer: Romanizer) -> Romanizer:
    """The same reader with the HKCanCor splits, word frequencies and weights left out."""
    return Romanizer(G2P(context=ContextModel(tags=romanizer.g2p.context.tags)))


@pytest.mark.parametrize(
    ("sentence", "char", "reading"),
    [
        # lexicon words that speech keeps apart: 都會 "metropolis" vs 都 + 會 "will"
        ("我哋聽日都會去", "會", "wui5"),
        ("佢哋會同你傾", "會", "wui5"),
        # the perceptron, from the neighbours of a character standing alone
        ("你試下加冰", "下", "haa5"),
        ("睇吓先", "吓", "haa5"),
        ("我要着件外套先出得街", "着", "zoek3"),
        ("我要著件外套先出得街", "著", "zoek3"),  # 著 written for 着 "wear"
        ("我聽日返學校", "返", "faan1"),
        ("我哋遲到嘞", "嘞", "laak3"),
        ("佢個樣好得意", "樣", "joeng2"),
        ("佢喺房瞓覺", "房", "fong2"),
        ("呢位先生", "位", "wai2"),
    ],
)
def test_context_model_reads_what_the_lexicon_alone_misreads(
    romanizer: Romanizer, without_context: Romanizer, sentence: str, char: str, reading: str
) -> None:
    index = sentence.index(char)
    assert _jyutping(romanizer, sentence)[index] == reading
    assert _jyutping(without_context, sentence)[index] != reading


@pytest.mark.parametrize(
    ("sentence", "char", "reading"),
    [
        ("香港係國際大都會", "會", "wui6"),  # the lexicon word still stands where it is one
        ("呢個行業嘅著作好多", "著", "zyu3"),
        # 下 "next, below" whatever the model says
        ("我哋下個星期再傾", "下", "haa6"),
        ("個車站喺地圖嘅右下角", "下", "haa6"),
        ("你向下望", "下", "haa6"),
        # particles closing a clause, whatever closes it
        ("呢三日好熱", "呢", "ni1"),
        ("你去唔去呢？", "呢", "ne1"),
        ("你去唔去呢～", "呢", "ne1"),
        ("佢話「你呢」", "呢", "ne1"),
        ("唔好咁", "咁", "gam2"),
        ("咁你去唔去？", "咁", "gam2"),
        ("今日好咁熱", "咁", "gam3"),
        ("我每朝都跑步", "朝", "ziu1"),
        ("朝住目標進發", "朝", "ciu4"),
        # rules that use HKCanCor's parts of speech
        ("個氣球慢慢浮上水面", "上", "soeng5"),
        ("本書放咗喺枱上", "上", "soeng6"),
        ("呢種酒少飲為妙", "為", "wai4"),
        ("我哋要為將來打算", "為", "wai6"),
        ("老闆而家開緊會", "會", "wui2"),
        ("呢個會開咗三個鐘", "會", "wui2"),
        ("邊個會煮飯", "會", "wui5"),
        ("媽媽會。", "會", "wui5"),
    ],
)
def test_rules_in_context(romanizer: Romanizer, sentence: str, char: str, reading: str) -> None:
    assert _jyutping(romanizer, sentence)[sentence.index(char)] == reading


@pytest.mark.parametrize(("text", "word"), [("因為我唔得閒", "因為"), ("櫃裡面有嘢", "裡面"), ("有著數", "著數")])
def test_hong_kong_and_taiwan_spellings_are_lexicon_words(romanizer: Romanizer, text: str, word: str) -> None:
    assert word in [token.text for token in romanizer.read(text).tokens]


def test_segmentation_prefers_words_common_in_speech(romanizer: Romanizer, without_context: Romanizer) -> None:
    text = "佢琴日成為咗會長"
    assert [token.text for token in romanizer.read(text).tokens][:4] == ["佢", "琴日", "成為", "咗"]
    assert "為咗" in [token.text for token in without_context.read(text).tokens]  # as many words, rarer ones


def test_long_line_without_punctuation_is_read_whole(romanizer: Romanizer) -> None:
    line = "我哋睇下佢點講呢個會" * 5_000  # 50,000 characters, one Chinese run
    readings = _jyutping(romanizer, line)
    assert len(readings) == len(line)
    assert readings[:10] == readings[-10:]


def test_same_character_two_readings_in_one_sentence(romanizer: Romanizer) -> None:
    text = "佢行咗去銀行"
    readings = _jyutping(romanizer, text)
    assert (readings[1], readings[5]) == ("haang4", "hong4")


# --- numbers, dates, money, Latin, punctuation, Simplified -----------------------------


@pytest.mark.parametrize(
    ("text", "jyutping"),
    [
        ("2024年", "ji6 ling4 ji6 sei3 nin4"),
        ("2024年3月5日", "ji6 ling4 ji6 sei3 nin4 saam1 jyut6 ng5 jat6"),
        ("3.5%", "baak3 fan6 zi1 saam1 dim2 ng5"),
        ("10:30", "sap6 dim2 saam1 sap6 fan1"),
        ("$100", "jat1 baak3 man1"),
        ("$12.5", "sap6 ji6 go3 bun3"),
        ("$0.5", "ng5 hou4"),
        ("100蚊", "jat1 baak3 man1"),
        ("有2個人", "jau5 loeng5 go3 jan4"),
    ],
)
def test_numbers_read_the_cantonese_way(romanizer: Romanizer, text: str, jyutping: str) -> None:
    tokens = romanizer.read(text).tokens
    assert " ".join(token.jyutping for token in tokens if token.jyutping) == jyutping


def test_digits_kept_when_not_asked_to_read_them(romanizer: Romanizer) -> None:
    plain = Romanizer(romanizer.g2p, read_numbers=False)
    assert _jyutping(plain, "2024年") == [None, None, None, None, "nin4"]


def test_number_alignment(romanizer: Romanizer) -> None:
    year = romanizer.read("2024年").chars
    assert [r.jyutping for r in year] == ["ji6", "ling4", "ji6", "sei3", "nin4"]  # digit by digit
    hundred = romanizer.read("100").chars
    assert [r.jyutping for r in hundred] == ["jat1 baak3", None, None]  # whole reading on the first digit
    assert hundred[0].yale == "yāt baak"


def test_latin_text_and_punctuation_kept_without_romanization(romanizer: Romanizer) -> None:
    text = "我今日好busy，OK？"
    chars = romanizer.read(text).chars
    assert "".join(r.char for r in chars) == text
    assert [r.jyutping for r in chars] == ["ngo5", "gam1", "jat6", "hou2", *[None] * 8]
    assert all(r.yale is None and r.yale_numeric is None for r in chars[4:])


def test_simplified_input_is_read_as_traditional(romanizer: Romanizer) -> None:
    assert romanizer.traditional("这个东西好贵") == "這個東西好貴"
    chars = romanizer.read("这个东西好贵").chars
    assert [r.char for r in chars] == list("这个东西好贵")  # the user's characters are kept
    assert [r.jyutping for r in chars] == _jyutping(romanizer, "這個東西好貴")
    assert [r.jyutping for r in chars][1:] == ["go3", "dung1", "sai1", "hou2", "gwai3"]
    assert chars[0].jyutping in ("ze2", "ze3", "ze5")


def test_traditional_line_is_not_converted(romanizer: Romanizer) -> None:
    assert romanizer.traditional("你食晒佢") == "你食晒佢"


def test_full_width_digits_are_numbers(romanizer: Romanizer) -> None:
    assert _jyutping(romanizer, "２０２４年")[:4] == ["ji6", "ling4", "ji6", "sei3"]


def test_unknown_character_has_no_reading(romanizer: Romanizer) -> None:
    assert _jyutping(romanizer, "佢𪚥") == ["keoi5", None]


# --- alignment ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "佢2024年買咗個iPhone 15，用咗3.5年！",
        "这个 $1,000.50 好贵吗?",
        "（笑）「唔得」…",
        "한국어 日本語です",
        "A😀b\t行",
    ],
)
def test_alignment_length_equals_input_length(romanizer: Romanizer, text: str) -> None:
    chars = romanizer.read(text).chars
    assert len(chars) == len(text)
    assert "".join(r.char for r in chars) == text


def test_alignment_on_shared_sentences(romanizer: Romanizer) -> None:
    lines = (ROMANIZATION / "cantomap_sentences.tsv").read_text(encoding="utf-8").splitlines()[:2000]
    for line in lines:
        text = line.split("\t")[0]
        assert len(romanizer.read(text).chars) == len(text)


# --- scribe romanize ------------------------------------------------------------------


def test_scribe_romanize_writes_one_json_object_per_line() -> None:
    args = build_parser().parse_args(["romanize"])
    out = io.StringIO()
    assert romanize(args, io.StringIO("佢行咗去銀行。\n2024年\n"), out) == 0
    objects = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [o["text"] for o in objects] == ["佢行咗去銀行。", "2024年"]
    first = objects[0]["chars"]
    assert len(first) == len("佢行咗去銀行。")
    untimed = {"start": None, "end": None, "confidence": None}  # text typed in has no times
    assert first[1] == {"char": "行", "jyutping": "haang4", "yale": "hàahng", "yale_numeric": "haang4", **untimed}
    assert first[-1] == {"char": "。", "jyutping": None, "yale": None, "yale_numeric": None, **untimed}


def test_scribe_romanize_can_keep_digits() -> None:
    args = argparse.Namespace(digits=True)
    out = io.StringIO()
    romanize(args, io.StringIO("3個\n"), out)
    assert [c["jyutping"] for c in json.loads(out.getvalue())["chars"]] == [None, "go3"]

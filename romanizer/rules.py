"""Context rules for polyphonic characters that stand alone as one-character words.

The lexicon reads a word by its own characters; a character left alone by the segmenter
(``佢重有``: 重 is no word with its neighbours) takes its commonest reading unless a rule
here knows better from the neighbouring characters. Each rule states a grammatical fact
of Hong Kong Cantonese (重 before a verb is the adverb zung6 "still"; 呀 closing a
question that has no question word is the rising aa4). They were written from the
development rows of the shared data only; the held-out rows (``bench/romanize_eval.py``)
never informed them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

_WINDOW = 16  # characters a rule sees on each side: rules look at the clause, not the line
QUESTION_WORDS = frozenset("咩乜點邊幾誰未唔冇定")
PRONOUNS = frozenset("我你佢")
MEASURES = frozenset("個隻條本件張架位次份間座枝支對雙杯碗樣種部頁封句包盒套把層場餐粒啲幅")
DEMONSTRATIVES = frozenset("呢嗰一兩幾每邊成")
_VERBS_BEFORE_UP = frozenset("飛衝跳爬走送搬踏升擺放貼寫加跟趕追爬攀遞")
_PLACES_AFTER_UP = frozenset("去嚟車樓山班堂網台樹船岸街床天門")
_AFTER_WEAR = frozenset("衫褲鞋襪裙西開得唔多少咗緊返埋嗰住")
_AFTER_PLANT = frozenset("花樹菜草滿咗緊埋返田果麥米")
_AFTER_TURN = frozenset("彎左右身頭圈涼凍熱暖冷壞")
_BEFORE_STILL = frozenset("有係要喺未唔會可以為想話")
_BEFORE_HEAVY = frozenset("好太咁幾好真")
_AFTER_COUNT = frozenset("到下吓一清錢埋")
_NEXT_UNITS = frozenset("個次一星禮週周月年堂屆季任期半班站場代輩集章回層格")
_PLACE_NOUNS = frozenset("方角面邊底部層游")
_DIRECTIONS = frozenset("向左右正最至往偏以")
_LITERARY_AS = frozenset("以化成作視稱列認")


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    """What a rule may look at around a one-character word."""

    before: str  # up to 16 characters of the run before the character, and nothing before the run
    after: str  # up to 16 characters of the run after it, then what follows the run (punctuation)
    previous_word: str
    next_word: str
    previous_tag: str = ""  # HKCanCor's part of speech for the previous word (v verb, n noun ...)
    next_tag: str = ""  # and for the next word (r pronoun, y particle ...)

    @property
    def prev(self) -> str:
        """The character right before, or ``"\\0"`` (start of the run), in no character class."""
        return self.before[-1:] or "\0"

    @property
    def next(self) -> str:
        """The character right after, or ``"\\0"`` (end of line), in no character class."""
        return self.after[:1] or "\0"

    @property
    def ends(self) -> bool:
        """Whether the character ends its clause: nothing follows but marks, spaces or emoji."""
        return not self.next.isalnum()


Rule = Callable[[Context], str | None]


def _zung(c: Context) -> str | None:  # 重: zung6 "still" before a verb, cung5 "heavy" after a degree word
    if c.prev in _BEFORE_HEAVY and (c.ends or c.next in "過啲"):
        return "cung5"
    if c.next in _BEFORE_STILL or c.next in PRONOUNS or c.next in "喺仲":
        return "zung6"
    return None


def _gaau(c: Context) -> str | None:  # 覺: a sleep (瞓覺, 瞓個靚覺) is gaau3
    return "gaau3" if "瞓" in c.before[-4:] or c.prev in "靚晏午陣" else None


def _coeng(c: Context) -> str | None:  # 長: "long" after a degree word, the verb "grow" is zoeng2
    if c.prev in _BEFORE_HEAVY:
        return "coeng4"
    return "zoeng2" if c.next in "咗緊出返埋高大肉" else None


def _aa(c: Context) -> str | None:  # 呀: a yes/no question without a question word rises: aa4
    if c.next in "？?" and not QUESTION_WORDS.intersection(c.before):
        return "aa4"
    return None


def _ne(c: Context) -> str:  # 呢 closing a clause is the particle ne1; before a word it is "this", ni1
    return "ne1" if c.ends else "ni1"


def _gam(c: Context) -> str | None:  # 咁 "like this, then" closing a clause or before a pronoun or particle is gam2
    return "gam2" if c.ends or c.next_tag in ("r", "y") else None


def _haa(c: Context) -> str | None:  # 下 "next, below" (下個星期, 右下角) is haa6; after a verb, "a bit" (睇下佢), haa5
    if c.next in _NEXT_UNITS or c.next in _PLACE_NOUNS or c.prev in _DIRECTIONS:
        return "haa6"
    if c.before and c.prev not in DEMONSTRATIVES and c.prev not in "樓地天底鄉手以" and (c.ends or c.next in PRONOUNS):
        return "haa5"
    return None


def _soeng(c: Context) -> str | None:  # 上 as a verb "go up, get on", or right after a verb (浮上水面), is soeng5
    if c.previous_tag == "v" or c.prev in _VERBS_BEFORE_UP or c.prev in "會要去想" or c.next in _PLACES_AFTER_UP:
        return "soeng5"
    return None


def _zoek(c: Context) -> str | None:  # 着/著 "wear" is zoek3
    return "zoek3" if c.next in _AFTER_WEAR or c.prev in PRONOUNS else None


def _zung_plant(c: Context) -> str | None:  # 種 "plant" is zung3
    return "zung3" if c.next in _AFTER_PLANT or c.prev in "可要去會想" else None


def _zyun(c: Context) -> str | None:  # 轉 "turn" is zyun3
    return "zyun3" if c.next in _AFTER_TURN else None


def _wai(c: Context) -> str | None:  # 為 "be, become, as" (以X為Y, 少飲為妙) is wai4
    return "wai4" if _LITERARY_AS.intersection(c.before[-4:]) or c.next in "人生善主止榮妙" else None


def _wui(c: Context) -> str | None:  # 會 the noun "meeting" (呢個會, 開會, 開緊會) is wui2; 邊個會 is "who will"
    if c.prev == "個" and not c.before.endswith("邊個"):
        return "wui2"
    return "wui2" if c.prev == "開" or c.next == "議" or c.previous_word in ("開緊", "緊") else None


def _zeng(c: Context) -> str | None:  # 正 "great, straight" closing a clause is zeng3
    return "zeng3" if c.ends or c.next in "一" or c.prev in "正" else None


def _sou(c: Context) -> str | None:  # 數 "count" is sou2
    return "sou2" if c.prev in PRONOUNS or c.prev in "細" or c.next in _AFTER_COUNT else None


def _soeng_photo(c: Context) -> str | None:  # 相 "photo" after a measure word is soeng2
    return "soeng2" if c.prev in "張幅啲影快" else None


def _gaan(c: Context) -> str | None:  # 間 as the measure word for rooms and shops is gaan1
    return "gaan1" if c.prev in DEMONSTRATIVES or c.next in "房屋舖鋪餐學公" else None


def _fan(c: Context) -> str | None:  # 分 in fractions (三分之二) is fan6
    return "fan6" if c.next == "之" else None


def _dei(c: Context) -> str | None:  # 地 after a doubled adjective (慢慢地) is dei2
    return "dei2" if len(c.before) >= 2 and c.before[-1] == c.before[-2] else None


def _caai(c: Context) -> str | None:  # 差 "police, errand" (當差) is caai1
    return "caai1" if c.prev in "當出" else None


def _gaang(c: Context) -> str | None:  # 更 "night watch, shift" is gaang1
    return "gaang1" if c.prev in "夜當輪打返三五" else None


def _ziu(c: Context) -> str | None:  # 朝 "morning" (每朝, 成朝) is ziu1; "dynasty, towards" is ciu4
    return "ziu1" if c.prev in "每成" or c.next in "早頭" else None


def _co(c: Context) -> str | None:  # 坐 alone is the colloquial co5 ("sit"); zo6 is literary
    return "co5"


RULES: dict[str, Rule] = {
    "重": _zung,
    "覺": _gaau,
    "長": _coeng,
    "呀": _aa,
    "呢": _ne,
    "咁": _gam,
    "下": _haa,
    "上": _soeng,
    "着": _zoek,
    "著": _zoek,
    "種": _zung_plant,
    "轉": _zyun,
    "為": _wai,
    "會": _wui,
    "正": _zeng,
    "數": _sou,
    "相": _soeng_photo,
    "間": _gaan,
    "分": _fan,
    "地": _dei,
    "差": _caai,
    "更": _gaang,
    "坐": _co,
    "朝": _ziu,
}
"""Character -> rule; a rule returns the reading, or ``None`` to keep the default."""

WORDS: dict[str, str] = {
    "嗰陣": "go2 zan2",
    "今晚": "gam1 maan1",
    "隨便": "ceoi4 bin2",
}
"""Words whose everyday Hong Kong reading is not the lexicon's first."""


def apply_rules(
    words: list[tuple[str, str | None]], after: str = "", tags: dict[str, str] | None = None
) -> list[tuple[str, str | None]]:
    """Re-read one-character polyphonic words from their neighbours.

    Args:
        words: ``(word, jyutping)`` pairs of one Chinese run, as segmented.
        after: The text right after the run (its first characters), e.g. ``"？"``.
        tags: Word -> part of speech (:attr:`romanizer.context.ContextModel.tags`).

    Returns:
        The pairs with some readings changed.
    """
    out = list(words)
    run = "".join(word for word, _ in words)
    position = 0
    for index, (word, reading) in enumerate(words):
        rule = RULES.get(word) if len(word) == 1 else None
        if rule is not None:
            context = Context(
                before=run[max(0, position - _WINDOW) : position],
                after=run[position + 1 : position + 1 + _WINDOW] + after,
                previous_word=words[index - 1][0] if index else "",
                next_word=words[index + 1][0] if index + 1 < len(words) else "",
                previous_tag=(tags or {}).get(words[index - 1][0], "") if index else "",
                next_tag=(tags or {}).get(words[index + 1][0], "") if index + 1 < len(words) else "",
            )
            out[index] = (word, rule(context) or reading)
        elif word in WORDS:
            out[index] = (word, WORDS[word])
        position += len(word)
    return out

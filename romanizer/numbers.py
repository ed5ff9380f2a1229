"""Read Arabic numerals the Cantonese way, as Jyutping syllables.

PyCantonese has no reading for digits (``2024 -> None``), so the romanizer sends every
number token here. The readings follow spoken Hong Kong Cantonese:

- integers in the Chinese way, with 萬/億 groups and 零 for skipped places
  (``100 -> jat1 baak3``, ``101 -> jat1 baak3 ling4 jat1``, ``15 -> sap6 ng5``);
- a leading 2 before 百/千/萬/億, and a bare 2 before a measure word, is 兩 (loeng5);
- four digits before 年 are a year, read digit by digit (``2024年``);
- decimals read the digits after the point one by one (``3.5 -> saam1 dim2 ng5``);
- ``%`` is 百分之 in front (``10% -> baak3 fan6 zi1 sap6``);
- clock times: ``10:05 -> sap6 dim2 ling4 ng5 fan1`` (十點零五分);
- codes (leading zero, or 8+ digits without separators, e.g. phone numbers) digit by digit.
"""

from __future__ import annotations

import re

DIGITS = ("ling4", "jat1", "ji6", "saam1", "sei3", "ng5", "luk6", "cat1", "baat3", "gau2")
_TWO = "loeng5"  # 兩
_PLACES = ("", "sap6", "baak3", "cin1")  # 十 百 千 within a group of four digits
_GROUPS = ("", "maan6", "jik1", "zaau6")  # 萬 億 兆 for each group of four digits
_PERCENT = ("baak3", "fan6", "zi1")  # 百分之
_POINT = "dim2"  # 點

# A bare 2 before these is 兩 (兩個人, 兩點鐘), not 二.
_MEASURE_WORDS = frozenset("個隻條本件張架位次份間座枝支對雙杯碗樣種點秒歲粒部頁封句包盒套把層場餐晚年")

NUMBER = re.compile(r"[0-9]{1,2}:[0-9]{2}(?![0-9])|[0-9]+(?:,[0-9]{3}(?![0-9]))*(?:\.[0-9]+)?%?")
"""One number token as the romanizer cuts it: a clock time, or digits with thousands commas,
decimals and ``%``."""
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")


def read_number(text: str, *, context_after: str = "") -> str | None:
    """Read one number token as space-separated Jyutping syllables.

    Args:
        text: The number as written, e.g. ``"56"``, ``"1,000"``, ``"3.5"``, ``"10%"``.
            ASCII digits only (the romanizer folds full-width digits first).
        context_after: The text right after the number; its first character decides
            years (``年``) and 兩 before measure words (``個``).

    Returns:
        The Jyutping syllables, or ``None`` if ``text`` is not a single number token.

    Examples:
        >>> read_number("2024", context_after="年")
        'ji6 ling4 ji6 sei3'
        >>> read_number("10%")
        'baak3 fan6 zi1 sap6'
    """
    if not NUMBER.fullmatch(text):
        return None
    if time := _TIME.fullmatch(text):
        return _clock(int(time.group(1)), int(time.group(2)))
    percent = text.endswith("%")
    body = text.rstrip("%")
    has_commas = "," in body
    body = body.replace(",", "")
    integer, _, fraction = body.partition(".")
    following = context_after.lstrip()[:1]

    if not percent and not fraction and following == "年" and len(integer) == 4:
        syllables = _digit_by_digit(integer)
    elif (integer.startswith("0") and len(integer) > 1) or (len(integer) >= 8 and not has_commas):
        syllables = _digit_by_digit(integer)
    elif len(integer) > 16:  # beyond 兆: nobody says it, read the digits
        syllables = _digit_by_digit(integer)
    else:
        syllables = _integer(int(integer))
        if integer == "2" and not fraction and not percent and following in _MEASURE_WORDS:
            syllables = [_TWO]
    if fraction:
        syllables += [_POINT, *_digit_by_digit(fraction)]
    if percent:
        syllables = [*_PERCENT, *syllables]
    return " ".join(syllables)


def _clock(hour: int, minute: int) -> str | None:
    """``10:05`` is 十點零五分; ``10:00`` is 十點."""
    if hour > 24 or minute > 59:
        return None
    syllables = [*_integer(hour), _POINT]
    if hour == 2:
        syllables[0] = _TWO  # 兩點
    if minute:
        syllables += [*([DIGITS[0]] if minute < 10 else []), *_integer(minute), "fan1"]
    return " ".join(syllables)


def _digit_by_digit(digits: str) -> list[str]:
    return [DIGITS[int(d)] for d in digits]


def _integer(value: int) -> list[str]:
    """Syllables for a non-negative integer below 10**16."""
    if value == 0:
        return [DIGITS[0]]
    groups: list[int] = []
    while value:
        value, group = divmod(value, 10_000)
        groups.append(group)
    out: list[str] = []
    zero_pending = False
    for index in range(len(groups) - 1, -1, -1):
        group = groups[index]
        if group == 0:
            zero_pending = bool(out)
            continue
        if out and (zero_pending or group < 1000):
            out.append(DIGITS[0])
        out += _group(group, leading=not out)
        if _GROUPS[index]:
            out.append(_GROUPS[index])
        zero_pending = False
    if len(out) > 1 and out[0] == DIGITS[2] and out[1] in {"baak3", "cin1", "maan6", "jik1", "zaau6"}:
        out[0] = _TWO  # 兩百, 兩千, 兩萬
    return out


def _group(value: int, *, leading: bool) -> list[str]:
    """Syllables for 1..9999 inside a number; ``leading`` means nothing was said before it."""
    out: list[str] = []
    zero_pending = False
    for place in (3, 2, 1, 0):
        digit = value // 10**place % 10
        if digit == 0:
            zero_pending = bool(out)
            continue
        if zero_pending:
            out.append(DIGITS[0])
            zero_pending = False
        if place == 1 and digit == 1 and leading and not out:
            out.append(_PLACES[1])  # 十五, not 一十五, at the start of a number
        else:
            out.append(DIGITS[digit])
            if place:
                out.append(_PLACES[place])
    return out


def read_money(text: str) -> str | None:
    """Read an amount written after ``$`` the way Hong Kong says it.

    ``$100`` is 一百蚊 (``jat1 baak3 man1``); ``$12.5`` is 十二個半 (``sap6 ji6 go3 bun3``);
    ``$3.75`` is 三個七五 (``saam1 go3 cat1 ng5``); ``$0.5`` is 五毫 (``ng5 hou4``).

    Args:
        text: The number token after the currency sign.

    Returns:
        The Jyutping syllables, or ``None`` if ``text`` is not a plain amount.
    """
    body = text.replace(",", "")
    if not re.fullmatch(r"[0-9]+(?:\.[0-9]{1,2})?", body):
        return None
    integer, _, cents = body.partition(".")
    cents = cents.rstrip("0")
    if not cents:
        return " ".join([*_integer(int(integer)), "man1"])
    if int(integer) == 0 and len(cents) == 1:
        return " ".join([*_integer(int(cents)), "hou4"])
    head = _integer(int(integer))
    tail = ["bun3"] if cents == "5" else _digit_by_digit(cents)
    return " ".join([*head, "go3", *tail])

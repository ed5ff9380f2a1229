"""Script handling shared by the romanizer and the G2P: width folding, Simplified detection."""

from __future__ import annotations

import opencc

WIDTH = str.maketrans(
    {
        **{chr(code): chr(code - 0xFEE0) for code in range(0xFF10, 0xFF1A)},
        **{chr(code): chr(code - 0xFEE0) for code in range(0xFF21, 0xFF3B)},
        **{chr(code): chr(code - 0xFEE0) for code in range(0xFF41, 0xFF5B)},
        "％": "%",
        "\u3000": " ",
    }
)
"""Full-width Latin letters, digits and % (and the ideographic space) fold to ASCII;
full-width Chinese punctuation stays as it is. One character for one."""

# Hong Kong characters outside Big5 (in HKSCS) that s2hk would still rewrite:
# 吓 (haa5, 試吓), 揾 (wan2), 糍 (糯米糍), and the HK forms 撑, 温, 恒 (恒生).
_HK_OUTSIDE_BIG5 = frozenset("吓揾糍撑温恒")


def simplified_only(s2hk: opencc.OpenCC) -> frozenset[str]:
    """Characters that only Simplified Chinese uses: s2hk changes them and Big5 lacks them.

    Many characters are both Simplified and Traditional (晒 saai3 "all", 吓, 郁, 喂, 面, 了,
    出); s2hk rewrites them (曬, 嚇, 鬱, 餵, 麪, 瞭, 齣) even in a line that is already
    Traditional. Big5 holds Traditional characters, so a character s2hk changes that Big5
    cannot encode (这, 们, 说) is Simplified for sure.

    Args:
        s2hk: An OpenCC ``s2hk`` converter.

    Returns:
        The Simplified-only characters of the BMP CJK blocks.
    """
    chars = [chr(code) for code in range(0x3400, 0xA000)]
    # One call for all of them: newlines keep OpenCC from reading neighbours as phrases.
    converted = s2hk.convert("\n".join(chars)).split("\n")
    return frozenset(
        char
        for char, new in zip(chars, converted, strict=True)
        if new != char and not _in_big5(char) and char not in _HK_OUTSIDE_BIG5
    )


def _in_big5(char: str) -> bool:
    try:
        char.encode("cp950")
    except UnicodeEncodeError:
        return False
    return True

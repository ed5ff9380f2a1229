"""Jyutping to Yale, with tone marks (``hàhng``) and with tone numbers (``hang4``).

Yale spells the Jyutping initials ``z c j`` as ``j ch y`` and the vowels ``oe``/``eo`` as
``eu``; ``aa`` is written ``a`` when nothing follows it. Tones 4, 5 and 6 (the low
register) add an ``h`` after the vowels. The tone mark (macron for tone 1, acute for 2
and 5, grave for 4, none for 3 and 6) goes on the first vowel of the final, as
PyCantonese, CantoDict and most dictionaries write it: ``léuhng`` 兩, ``hēung`` 香,
``bīu`` 標, ``būi`` 杯; ``yu`` is one vowel and carries it on its ``u`` (``syū`` 書).
The pingyam table puts it on the second vowel of ``iu``, ``ui`` and ``eu`` before a
consonant (``leúhng``); we follow the dictionaries there and the table everywhere else.
Syllabic ``m`` and ``ng`` carry the mark themselves (``m̀h``, ``ńgh``).

Yale with tone numbers is the same spelling without ``h`` and marks, followed by the
Jyutping tone number 1-6 (``hang4``, ``geuk3`` 腳, ``hok6`` 學), the numbers learners
know from Jyutping; the pingyam table's older nine-tone numbering (``geuk8``, ``hok9``) is
not used. Checked against every syllable of the kfcd/pingyam table (tests/unit/test_yale.py).
"""

from __future__ import annotations

import functools
import re
import unicodedata

_SYLLABLE = re.compile(r"(ng|gw|kw|[bpmfdtnlgkhwzcsj])?(aa|oe|eo|yu|[aeiou]|m|ng)([iumnptkg]*)([1-6])")
_ONSETS = {"z": "j", "c": "ch", "j": "y"}
_MARKS = {"1": "\u0304", "2": "\u0301", "3": "", "4": "\u0300", "5": "\u0301", "6": ""}
_VOWELS = "aeiou"


@functools.lru_cache(maxsize=4096)
def yale_parts(syllable: str) -> tuple[str, str] | None:
    """Convert one Jyutping syllable to Yale.

    Args:
        syllable: One syllable such as ``"hang4"``, ``"jyu4"`` or ``"m4"``.

    Returns:
        ``(yale with tone marks, yale with tone numbers)``, e.g. ``("hàhng", "hang4")``,
        or ``None`` if ``syllable`` is not valid Jyutping.
    """
    match = _SYLLABLE.fullmatch(syllable)
    if match is None:
        return None
    onset, nucleus, coda, tone = match.group(1) or "", match.group(2), match.group(3), match.group(4)
    if nucleus in ("m", "ng") and onset in ("", "h") and not coda:  # m4 -> m̀h, ng5 -> ńgh, hm4 -> hm̀h
        marked = onset + nucleus[0] + _MARKS[tone] + nucleus[1:] + ("h" if tone in "456" else "")
        return unicodedata.normalize("NFC", marked), onset + nucleus + tone
    if nucleus in ("m", "ng"):
        return None
    if onset == "j" and nucleus == "yu":
        onset = ""  # jyu -> yu
    onset = _ONSETS.get(onset, onset)
    if nucleus in ("oe", "eo"):
        nucleus = "eu"
    elif nucleus == "aa" and not coda:
        nucleus = "a"
    elif nucleus == "e" and coda == "u":
        nucleus = "ee"  # deu6 -> deeuh
    plain = onset + nucleus + coda
    vowels = nucleus + _leading_vowels(coda)
    start = len(onset) + _mark_index(vowels)
    vowel_end = len(onset) + len(vowels)
    marked = plain[: start + 1] + _MARKS[tone] + plain[start + 1 : vowel_end]
    marked += ("h" if tone in "456" else "") + plain[vowel_end:]
    return unicodedata.normalize("NFC", marked), plain + tone


def _mark_index(vowels: str) -> int:
    """Which vowel letter carries the tone mark: the first of the final, the u of ``yu``."""
    return 1 if vowels.startswith("yu") else 0


def _leading_vowels(coda: str) -> str:
    out = ""
    for char in coda:
        if char not in _VOWELS:
            break
        out += char
    return out


def to_yale(jyutping: str, *, numbers: bool = False) -> str | None:
    """Yale for space-separated Jyutping syllables: the one place a Yale line is joined.

    Args:
        jyutping: E.g. ``"gam1 jat6"``.
        numbers: Tone numbers (``"gam1 yat6"``) instead of tone marks (``"gām yaht"``).

    Returns:
        The Yale syllables joined by spaces, or ``None`` if a syllable is not valid Jyutping.
    """
    parts = [yale_parts(syllable) for syllable in jyutping.split()]
    if not parts or any(part is None for part in parts):
        return None
    form = 1 if numbers else 0
    return " ".join(part[form] for part in parts if part is not None)

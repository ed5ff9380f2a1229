"""Drop Whisper's hallucinated lines before they are romanized.

On silence and music Whisper writes text nobody said: the previous line again, one
phrase looping (``謝謝謝謝謝謝謝謝``), or subtitle credits from its training data
(``字幕由Amara.org社群提供``). Two functions handle them:

- :func:`drop_hallucinations` says which lines of a chunk to keep (a mask, so the caller
  keeps each line's times);
- :func:`collapse_loops` shortens a loop inside a line that is otherwise real speech.

Lines are compared by a *key*: Hong Kong Traditional (OpenCC s2hk), letters and digits
only, case-folded. So ``字幕由 Amara.org 社区提供`` and ``字幕由Amara.org社群提供。``
are both credits, and ``好，`` repeats ``好。``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

import opencc

# Credits and channel boilerplate from Whisper's training data. They are compared as keys
# (see the module docstring), so spacing, punctuation and script do not matter here.
# A line that contains one of these is dropped, whatever else it says:
CREDITS_ANYWHERE = (
    "Amara.org",  # 字幕由Amara.org社群提供
    "明鏡與點點欄目",  # 請不吝點贊 訂閱 轉發 打賞支持明鏡與點點欄目
    "明鏡需要您的支持",
    "點贊 訂閱 轉發 打賞",
    "字幕志願者",
    "優優獨播劇場",
    "YoYo Television Series Exclusive",
    "字幕by",
    "本字幕由",
)
# A line that is one of these and nothing else is dropped; inside a line they may be speech:
CREDITS_WHOLE_LINE = (
    "Thank you for watching",
    "Thanks for watching",
    "Thank you very much for watching",
    "Please subscribe",
    "謝謝觀看",
    "感謝觀看",
    "謝謝收看",
    "感謝收看",
    "請訂閱",
    "訂閱我的頻道",
    "請不吝點贊",
)
MIN_REPEATS = 3  # a unit said this many times in a row is a loop
MIN_LOOP_CHARS = 6  # ... if the loop is at least this long (好好好 and 係係係 are speech)

_LOOP = re.compile(rf"(.{{2,12}}?)\1{{{MIN_REPEATS - 1},}}", re.DOTALL)  # units of 2+: 謝謝 x4, not 謝 x8
_LOOP_LINE = re.compile(rf"(.{{1,12}}?)\1{{{MIN_REPEATS - 1},}}", re.DOTALL)  # also 哈 x7


def drop_hallucinations(lines: Sequence[str], previous: Sequence[str] = ()) -> list[bool]:
    """Say which lines to keep.

    A line is dropped when its key is empty (only punctuation or space), equals the key
    of the last kept line (across the chunk border too, through ``previous``), is one
    short phrase repeated :data:`MIN_REPEATS` or more times and nothing else, or is a
    known credit.

    Args:
        lines: The lines of one chunk, in order.
        previous: The lines stored before them (the previous chunks'), in order. A segment is
            stored as one or more lines (``romanizer.lines`` cuts long ones), so a line repeating
            the last segment is one equal to the last line or the last few lines together.

    Returns:
        A keep-mask, one bool per line: ``[text for text, keep in zip(lines, mask) if keep]``.
    """
    last = {_key("".join(previous[-n:])) for n in range(1, len(previous) + 1)}
    mask = []
    for line in lines:
        key = _key(line)
        keep = bool(key) and key not in last and not _is_loop(key) and not _is_credit(key)
        mask.append(keep)
        if keep:
            last = {key}
    return mask


def collapse_loops(text: str) -> str:
    """Shorten every loop in a line to one occurrence of its unit.

    A loop is a unit of 2-12 characters repeated :data:`MIN_REPEATS` or more times in a
    row, :data:`MIN_LOOP_CHARS` characters or longer: ``我去咗去咗去咗去咗香港`` becomes
    ``我去咗香港`` and ``謝謝謝謝謝謝謝謝`` becomes ``謝謝``; ``好好好`` stays.

    Args:
        text: One line (normalised or not).

    Returns:
        The line with its loops collapsed.
    """
    return _LOOP.sub(_collapse, text)


def _collapse(match: re.Match[str]) -> str:
    return match.group(1) if len(match.group()) >= MIN_LOOP_CHARS else match.group()


def _is_loop(key: str) -> bool:
    return len(key) >= MIN_LOOP_CHARS and _LOOP_LINE.fullmatch(key) is not None


def _is_credit(key: str) -> bool:
    anywhere, whole_line = _credit_keys()
    return key in whole_line or any(credit in key for credit in anywhere)


@functools.cache
def _credit_keys() -> tuple[tuple[str, ...], frozenset[str]]:
    return tuple(_key(credit) for credit in CREDITS_ANYWHERE), frozenset(_key(c) for c in CREDITS_WHOLE_LINE)


@functools.lru_cache(maxsize=4096)
def _key(line: str) -> str:
    """Letters and digits only, Hong Kong Traditional, case-folded."""
    converted = _s2hk().convert(line)
    return "".join(ch for ch in converted if unicodedata.category(ch)[0] in "LN").casefold()


@functools.cache
def _s2hk() -> opencc.OpenCC:
    # Loaded on first use and shared, so the cleanup functions stay plain functions; an
    # OpenCC converter is stateless and thread-safe (BYVoid/OpenCC#231).
    return opencc.OpenCC("s2hk")

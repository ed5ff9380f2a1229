"""A line corrected by a person: the new text read through the one front end, the old times kept where they hold.

The gateway's ``PATCH /v1/jobs/{id}/lines/{seq}`` calls :func:`revise`; the pipeline's lines and a
corrected line are read by the same :class:`~romanizer.romanize.Romanizer`, so a corrected line
reads exactly as ``scribe romanize`` reads its text.

A character the correction left as it was keeps when it is spoken and the speech model's
confidence (the old text is aligned to the new one, as :func:`romanizer.lines.char_timings`
aligns the ASR's words to a line); a changed or new character has neither: nobody timed it, and
a person, not the model, vouches for it.
"""

from __future__ import annotations

import difflib

import msgspec

from core.messages import Char, Segment
from romanizer.romanize import Romanizer


def revise(romanizer: Romanizer, line: Segment, text: str) -> Segment:
    """The line with ``text`` in place of its text, read afresh.

    Args:
        romanizer: The one romanizer front end.
        line: The line as stored (perhaps corrected before).
        text: The corrected text; normalised here as the pipeline normalises what the ASR wrote.

    Returns:
        The new line: same ``seq``, ``chunk_seq``, ``start`` and ``end``; new text, words, readings
        and characters; ``original_text`` the speech model's text (kept across corrections) and
        ``revision`` one more.
    """
    reading = romanizer.read(romanizer.normalise(text))
    chars = list(reading.chars)
    old = line.chars if len(line.chars) == len(line.text) else []  # lines stored before chars: no times
    if old:
        matcher = difflib.SequenceMatcher(None, line.text, reading.text, autojunk=False)
        for tag, a0, _a1, b0, b1 in matcher.get_opcodes():
            if tag == "equal":
                for offset in range(b1 - b0):
                    chars[b0 + offset] = _timed_as(chars[b0 + offset], old[a0 + offset])
    return msgspec.structs.replace(
        line,
        text=reading.text,
        jyutping=reading.jyutping,
        yale=reading.yale,
        words=reading.words,
        chars=chars,
        original_text=line.text if line.original_text is None else line.original_text,
        revision=line.revision + 1,
    )


def _timed_as(char: Char, old: Char) -> Char:
    if old.start is None and old.end is None and old.confidence is None:
        return char
    return msgspec.structs.replace(char, start=old.start, end=old.end, confidence=old.confidence)

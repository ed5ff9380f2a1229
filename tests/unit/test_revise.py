"""A corrected line: read afresh by the one front end, the old times kept where the characters are."""

from __future__ import annotations

import pytest

from core.messages import Char, RawSegment, RawWord, Segment
from romanizer.revise import revise
from romanizer.romanize import Romanizer
from romanizer.service import romanize_chunk

HEARD = "以下白其他市航"  # what the speech model wrote for 以下係其他事項 ("the following are other matters")


@pytest.fixture(scope="module")
def romanizer() -> Romanizer:
    return Romanizer()


@pytest.fixture(scope="module")
def line(romanizer: Romanizer) -> Segment:
    words = [RawWord(text=c, start=1.0 + i * 0.25, end=1.25 + i * 0.25, probability=0.5) for i, c in enumerate(HEARD)]
    [line] = romanize_chunk(
        romanizer, [RawSegment(start=1.0, end=3.0, text=HEARD, words=words)], chunk_seq=4, first_seq=7, previous=[]
    )
    return line


def test_the_corrected_line_reads_as_the_romanizer_reads_it_and_keeps_its_place(
    romanizer: Romanizer, line: Segment
) -> None:
    fixed = revise(romanizer, line, "以下係其他事項")
    reading = romanizer.read("以下係其他事項")
    assert (fixed.text, fixed.jyutping, fixed.yale, fixed.words) == (
        reading.text,
        reading.jyutping,
        reading.yale,
        reading.words,
    )
    assert "hai6" in fixed.jyutping.split() and "si6" in fixed.jyutping.split()
    assert [c.jyutping for c in fixed.chars] == [c.jyutping for c in reading.chars]
    assert (fixed.seq, fixed.chunk_seq, fixed.start, fixed.end) == (7, 4, line.start, line.end)
    assert (fixed.original_text, fixed.revision) == (HEARD, 1)


def test_characters_left_as_they_were_keep_their_times_and_changed_ones_have_none(
    romanizer: Romanizer, line: Segment
) -> None:
    fixed = revise(romanizer, line, "以下係其他事項")
    old = {c.char: c for c in line.chars}
    for char in fixed.chars:
        if char.char in "以下其他":
            assert (char.start, char.end, char.confidence) == (old[char.char].start, old[char.char].end, 0.5)
        else:
            assert (char.start, char.end, char.confidence) == (None, None, None), char
    assert fixed.chars[3].start == 1.75  # 其 was the fourth word the model timed


def test_the_original_is_the_speech_models_through_several_corrections(romanizer: Romanizer, line: Segment) -> None:
    once = revise(romanizer, line, "以下係其他事項")
    twice = revise(romanizer, once, "  以下係其他事項.  ")  # normalised as the pipeline normalises
    assert (twice.text, twice.original_text, twice.revision) == ("以下係其他事項。", HEARD, 2)
    assert twice.chars[0].start == line.chars[0].start and twice.chars[-1].start is None


def test_a_line_stored_without_characters_gets_them_untimed(romanizer: Romanizer) -> None:
    old = Segment(seq=0, start=0.0, end=1.0, text="你好", jyutping="nei5 hou2", yale="néih hóu", words=[])
    fixed = revise(romanizer, old, "你好嗎")
    assert len(fixed.chars) == 3 and all(isinstance(c, Char) and c.start is None for c in fixed.chars)
    assert fixed.jyutping.startswith("nei5 hou2 maa") and fixed.original_text == "你好"

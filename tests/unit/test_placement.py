"""Placing the text of a model without timestamps on the chunk's speech (transcriber.placement): pure, no I/O."""

from __future__ import annotations

import pytest

from core.messages import MAX_LINE_CHARS, RawSegment
from core.text import SENTENCE_ENDS
from romanizer.romanize import Romanizer
from romanizer.service import romanize_chunk
from transcriber.asr import Piece, raw_segments
from transcriber.placement import place, weights


@pytest.fixture(scope="module")
def romanizer() -> Romanizer:
    return Romanizer()


def _check(pieces: list[Piece], text: str, duration: float) -> list[RawSegment]:
    """The invariants of every placement: whole text, sentences, times inside the chunk and increasing."""
    segments = raw_segments(pieces, duration)
    assert "".join(p[2] for p in pieces) == text
    times = [t for s in segments for w in s.words for t in (w.start, w.end)]
    assert times == sorted(times)
    assert all(0.0 <= t <= duration for t in times)
    for segment in segments:
        assert segment.words and (segment.start, segment.end) == (segment.words[0].start, segment.words[-1].end)
        assert "".join(w.text for w in segment.words).strip() == segment.text
        assert not any(mark in segment.text.rstrip("」』”）")[:-1] for mark in SENTENCE_ENDS)
    return segments


def test_text_is_cut_into_sentences_with_their_closing_marks() -> None:
    text = "你好。佢話：「今日好熱。」係咪呀？係！Thank you!好"
    pieces = place(text, [(0.0, 12.0)], 12.0)
    assert [p[2] for p in pieces] == ["你好。", "佢話：「今日好熱。」", "係咪呀？", "係！", "Thank you!", "好"]
    _check(pieces, text, 12.0)


def test_weights_count_syllables_not_letters() -> None:
    assert weights("好CCTV，hello 2021") == [1.0, 1, 1, 1, 1, 0, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 0, 1, 1, 1, 1]


def test_lines_start_where_speech_starts_not_at_the_chunk_start() -> None:
    text = "我哋今日去咗香港。跟住就返屋企食飯。"
    segments = _check(place(text, [(1.2, 4.0), (5.0, 7.8)], 9.0), text, 9.0)
    assert [(s.text, s.start, s.end) for s in segments] == [
        ("我哋今日去咗香港。", 1.2, 4.0),
        ("跟住就返屋企食飯。", 5.0, 7.8),
    ]


def test_a_pause_goes_to_the_sentence_end_near_it_not_where_character_counts_put_it() -> None:
    # 7 + 9 characters over 2.5 + 2.0 s of speech: shared out by count, the first region takes about 9
    # characters, 2 into the second sentence; the pause belongs after the first sentence's end.
    text = "佢今朝好早起身。跟住就去咗公園跑步。"
    regions = [(0.3, 2.8), (3.4, 5.4)]
    placed = _check(place(text, regions, 6.0), text, 6.0)
    shared = _check(place(text, regions, 6.0, pause_weight=0.0), text, 6.0)
    assert [s.start for s in placed] == [0.3, 3.4]
    assert shared[1].start < 2.8  # by count alone the second sentence starts before the pause


def test_a_long_unpunctuated_text_is_cut_by_the_romanizer_into_lines_at_the_pauses(romanizer: Romanizer) -> None:
    text = "今日我哋講吓點樣煮飯先要洗米然後加水再放入電飯煲等大概二十分鐘就食得啦其實好簡單大家試吓"
    regions = [(0.2, 3.0), (3.6, 6.4), (7.1, 9.8), (10.3, 13.0)]
    segments = _check(place(text, regions, 14.0), text, 14.0)
    lines = romanize_chunk(romanizer, segments, chunk_seq=0, first_seq=0, previous=[])
    assert "".join(line.text for line in lines) == text
    assert all(sum(c.isalnum() for c in line.text) <= MAX_LINE_CHARS for line in lines)
    assert all(0.0 <= line.start <= line.end <= 14.0 for line in lines)
    assert [line.start for line in lines] == sorted(line.start for line in lines)
    # the romanizer sees the pauses in the words' times: it cuts at one (balancing the lengths too)
    assert {line.start for line in lines[1:]} & {start for start, _ in regions}


def test_a_chunk_without_speech_regions_gets_its_text_over_the_whole_chunk() -> None:
    text = "唔該晒。"
    for regions in ([], [(20.0, 25.0)]):  # none found, or none inside the chunk
        (segment,) = _check(place(text, regions, 3.5), text, 3.5)
        assert (segment.start, segment.end) == (0.0, 3.5)


def test_regions_past_the_chunk_or_overlapping_are_clamped() -> None:
    text = "早晨。你食咗飯未呀？"
    segments = _check(place(text, [(-0.5, 1.0), (0.8, 2.0), (2.5, 9.0)], 4.0), text, 4.0)
    assert segments[0].start == 0.0 and segments[-1].end == 4.0


def test_blank_text_gives_nothing_and_marks_alone_one_untimed_piece() -> None:
    assert place("  \n", [(0.0, 1.0)], 2.0) == []
    assert place("……", [(0.5, 1.0)], 2.0) == [(0.5, 1.0, "……", [])]


def test_a_very_long_text_with_many_regions_is_still_placed_in_order() -> None:
    text = "我哋今日講嘢，" * 100  # 600 characters in 300 regions: past what the dynamic programme takes
    regions = [(k * 1.0, k * 1.0 + 0.8) for k in range(300)]
    segments = _check(place(text, regions, 300.0), text, 300.0)
    assert segments[0].start == 0.0 and segments[-1].end == pytest.approx(299.8)

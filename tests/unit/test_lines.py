"""Lines a learner can repeat: characters timed from the ASR's words, long lines cut at sentence and clause ends."""

from __future__ import annotations

import pytest

from core.messages import MAX_LINE_CHARS, MAX_LINE_SECONDS, RawSegment, RawWord
from romanizer.lines import char_timings, cut
from romanizer.romanize import Romanizer
from romanizer.service import romanize_chunk


@pytest.fixture(scope="module")
def romanizer() -> Romanizer:
    return Romanizer()


def _timed(text: str, start: float = 0.0, step: float = 0.25, probability: float = 0.9) -> RawSegment:
    """A segment whose words are its characters, one every ``step`` seconds (punctuation rides on the one before)."""
    words: list[RawWord] = []
    at = start
    for char in text:
        if words and not char.isalnum():
            last = words[-1]
            words[-1] = RawWord(text=last.text + char, start=last.start, end=last.end, probability=last.probability)
            continue
        words.append(RawWord(text=char, start=at, end=at + step, probability=probability))
        at += step
    return RawSegment(start=start, end=at, text=text, words=words)


def test_each_character_gets_its_words_time_and_probability_and_punctuation_none(romanizer: Romanizer) -> None:
    raw = RawSegment(
        start=1.0,
        end=2.0,
        text="記得嘅.",
        words=[RawWord(text="記得", start=1.0, end=1.4, probability=0.5), RawWord(text="嘅.", start=1.4, end=1.6)],
    )
    text = romanizer.normalise(raw.text)  # "記得嘅。": the narrow stop is widened, and keeps its place
    timings = char_timings(raw, text, romanizer.traditional)
    assert [(t.start, t.end, t.confidence) if t else None for t in timings] == [
        (1.0, 1.2, 0.5),
        (1.2, 1.4, 0.5),
        (1.4, 1.6, None),  # the mark takes no share of its word's time
        None,
    ]


def test_simplified_words_align_to_the_traditional_line_and_unmatched_characters_have_no_time(
    romanizer: Romanizer,
) -> None:
    raw = RawSegment(start=0.0, end=1.0, text="这个", words=[RawWord(text="这个", start=0.0, end=1.0, probability=0.8)])
    timings = char_timings(raw, "個嘢", romanizer.traditional)  # 個 is 个 as said; 嘢 was never said
    assert timings[0] is not None and (timings[0].start, timings[0].end) == (0.5, 1.0)
    assert timings[1] is None
    # A character in the place of another (a cleaned-up or widened one) takes its time.
    assert [t is not None for t in char_timings(raw, "呢個", romanizer.traditional)] == [True, True]


def test_a_segment_without_words_has_no_character_times_and_its_lines_share_its_span(romanizer: Romanizer) -> None:
    text = "今日天氣好好，我哋去行山啦，之後去飲茶食點心，好唔好呀，你話呢"
    lines = romanize_chunk(
        romanizer, [RawSegment(start=10.0, end=20.0, text=text)], chunk_seq=0, first_seq=0, previous=[]
    )
    assert len(lines) > 1 and "".join(line.text for line in lines) == text
    assert all(c.start is None and c.confidence is None for line in lines for c in line.chars)
    assert lines[0].start == 10.0 and lines[-1].end == 20.0
    assert all(a.end <= b.start + 1e-6 for a, b in zip(lines, lines[1:], strict=False))


def test_lines_are_cut_after_every_sentence_and_never_start_with_punctuation(romanizer: Romanizer) -> None:
    text = "你好。食咗飯未呀？食咗啦！"
    lines = romanize_chunk(romanizer, [_timed(text)], chunk_seq=3, first_seq=7, previous=[])
    assert [line.text for line in lines] == ["你好。", "食咗飯未呀？", "食咗啦！"]
    assert [line.seq for line in lines] == [7, 8, 9] and {line.chunk_seq for line in lines} == {3}
    assert [line.jyutping for line in lines] == ["nei5 hou2.", "sik6 zo2 faan6 mei6 aa3?", "sik6 zo2 laa1!"]
    assert lines[1].start == lines[1].chars[0].start == 0.5  # the line starts when its first character is said
    assert lines[1].end == lines[1].chars[-2].end


def test_a_long_sentence_is_cut_at_a_clause_end_into_lines_within_the_limits(romanizer: Romanizer) -> None:
    text = "我哋今日會討論關於香港嘅交通問題，包括巴士同埋地鐵嘅服務質素，仲有將來嘅發展計劃"
    lines = romanize_chunk(romanizer, [_timed(text, step=0.2)], chunk_seq=0, first_seq=0, previous=[])
    assert "".join(line.text for line in lines) == text
    assert all(len(line.text.rstrip("，")) <= MAX_LINE_CHARS for line in lines)
    assert all(line.text.endswith("，") for line in lines[:-1])  # every cut fell at a comma


def test_a_long_sentence_without_marks_is_cut_at_its_longest_pause_and_never_inside_a_word(
    romanizer: Romanizer,
) -> None:
    # 30 characters read quickly, with one clear pause before 銀行 (a word: the cut is never 銀|行).
    first, second = "我今朝好早起身食完早餐就去咗", "銀行攞錢之後再去街市買餸返屋企煮飯"
    head, tail = _timed(first, step=0.2), _timed(second, start=0.2 * len(first) + 0.8, step=0.2)
    raw = RawSegment(start=0.0, end=tail.end, text=first + second, words=[*head.words, *tail.words])
    lines = romanize_chunk(romanizer, [raw], chunk_seq=0, first_seq=0, previous=[])
    assert [line.text for line in lines] == [first, second]
    assert lines[1].start == pytest.approx(0.2 * len(first) + 0.8)


def test_a_slow_sentence_is_cut_to_eight_seconds(romanizer: Romanizer) -> None:
    text = "我哋而家開始開會先講第一項"  # 13 characters over 13 s
    lines = romanize_chunk(romanizer, [_timed(text, step=1.0)], chunk_seq=0, first_seq=0, previous=[])
    assert len(lines) >= 2 and all(line.end - line.start <= MAX_LINE_SECONDS for line in lines)


def test_a_number_with_its_percent_stays_whole_on_one_line(romanizer: Romanizer) -> None:
    text = "今年嘅失業率升咗去百分之三左右而經濟增長率就跌到1.3%咁上下"
    lines = romanize_chunk(romanizer, [_timed(text, step=0.3)], chunk_seq=0, first_seq=0, previous=[])
    assert any("1.3%" in line.text for line in lines)
    assert "".join(line.text for line in lines) == text


def test_a_reading_cut_keeps_one_char_per_character_and_the_words_of_its_text(romanizer: Romanizer) -> None:
    text = "佢話：「我聽日唔得閒，你自己去啦。」之後就走咗，冇再講嘢，我哋都唔知點算好"
    reading = romanizer.read(text)
    pieces = cut(reading, char_timings(_timed(text), text, romanizer.traditional), 0.0, 10.0)
    for piece in pieces:
        assert len(piece.chars) == len(piece.text) == sum(len(w.text) for w in piece.words)
        assert piece.text[0] not in "，。：」、！？"


def test_a_segment_repeating_the_last_one_is_dropped_though_that_one_was_stored_as_several_lines(
    romanizer: Romanizer,
) -> None:
    text = "我哋今日會討論關於香港嘅交通問題，包括巴士同埋地鐵嘅服務質素"
    first = romanize_chunk(romanizer, [_timed(text)], chunk_seq=0, first_seq=0, previous=[])
    assert len(first) == 2
    again = romanize_chunk(
        romanizer, [_timed(text)], chunk_seq=1, first_seq=2, previous=["之前", *(line.text for line in first)]
    )
    assert again == []  # Whisper's repeat of the previous segment across a chunk border

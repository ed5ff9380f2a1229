"""Download formats: txt, json, srt, vtt, csv; romanization lines from words."""

from __future__ import annotations

import csv
import io
import re

import msgspec
import pytest

from core.messages import Segment, Transcript, Usage, Word, transcript_decoder
from core.text import READING_LINES, join_words
from scribe.formats import MAX_CUE_CHARS, clock, reading_lines, render

W = Word


def segment(seq: int, start: float, end: float, words: list[Word], chunk_seq: int = 0) -> Segment:
    return Segment(
        seq=seq,
        start=start,
        end=end,
        text="".join(w.text for w in words),
        jyutping=join_words(words, "jyutping"),
        yale=join_words(words, "yale"),
        words=words,
        chunk_seq=chunk_seq,
    )


SHORT = [
    W(text="我", jyutping="ngo5", yale="ngóh"),
    W(text="係", jyutping="hai6", yale="haih"),
    W(text="Peter", jyutping=None, yale=None),
    W(text="，", jyutping=None, yale=None),
    W(text="你", jyutping="nei5", yale="néih"),
    W(text="呢", jyutping="ne1", yale="nē"),
    W(text="？", jyutping=None, yale=None),
]
# 34 characters: a 13-character clause, then 21 characters without a break (two cues).
LONG = [
    W(text="我哋", jyutping="ngo5 dei6", yale="ngóh deih"),
    W(text="今日", jyutping="gam1 jat6", yale="gām yaht"),
    W(text="去咗", jyutping="heoi3 zo2", yale="heui jó"),
    W(text="香港", jyutping="hoeng1 gong2", yale="hēung góng"),
    W(text="大學", jyutping="daai6 hok6", yale="daaih hohk"),
    W(text="睇", jyutping="tai2", yale="tái"),
    W(text="書", jyutping="syu1", yale="syū"),
    W(text="，", jyutping=None, yale=None),
    W(text="跟住", jyutping="gan1 zyu6", yale="gān jyuh"),
    W(text="又", jyutping="jau6", yale="yauh"),
    W(text="去咗", jyutping="heoi3 zo2", yale="heui jó"),
    W(text="尖沙咀", jyutping="zim1 saa1 zeoi2", yale="jīm sā jéui"),
    W(text="食", jyutping="sik6", yale="sihk"),
    W(text="嘢", jyutping="je5", yale="yéh"),
    W(text="同埋", jyutping="tung4 maai4", yale="tùhng màaih"),
    W(text="行街", jyutping="haang4 gaai1", yale="hàahng gāai"),
    W(text="買", jyutping="maai5", yale="máaih"),
    W(text="衫", jyutping="saam1", yale="sāam"),
    W(text="同埋", jyutping="tung4 maai4", yale="tùhng màaih"),
    W(text="睇戲", jyutping="tai2 hei3", yale="tái hei"),
    W(text="。", jyutping=None, yale=None),
]
QUOTED = [
    W(text="佢", jyutping="keoi5", yale="kéuih"),
    W(text="話", jyutping="waa6", yale="wah"),
    W(text="「", jyutping=None, yale=None),
    W(text="R", jyutping=None, yale=None),
    W(text="&", jyutping=None, yale=None),
    W(text="D", jyutping=None, yale=None),
    W(text=",", jyutping=None, yale=None),
    W(text="好", jyutping="hou2", yale="hóu"),
    W(text="」", jyutping=None, yale=None),
]


@pytest.fixture
def transcript() -> Transcript:
    return Transcript(
        job_id="job-1",
        source="https://example.com/v.mp4",
        duration=3725.0,
        segments=[
            segment(0, 1.0, 3.5, SHORT),
            segment(1, 3.5, 15.0, LONG, chunk_seq=1),
            segment(2, 3661.2, 3663.0, QUOTED, chunk_seq=2),
        ],
        usage=Usage(backend="local", model="base", billed_seconds=0.0, cost_usd=0.0),
    )


# --- join_words -----------------------------------------------------------------------


def test_join_words_attaches_punctuation() -> None:
    assert join_words(SHORT, "jyutping") == "ngo5 hai6 Peter, nei5 ne1?"
    assert join_words(SHORT, "yale") == "ngóh haih Peter, néih nē?"
    assert join_words(QUOTED, "jyutping") == 'keoi5 waa6 "R&D, hou2"'


def test_join_words_keeps_latin_spacing_and_dots() -> None:
    words = [
        W(text="Amara", jyutping=None, yale=None),
        W(text=".", jyutping=None, yale=None),
        W(text="org", jyutping=None, yale=None),
        W(text=" ", jyutping=None, yale=None),
        W(text="e", jyutping=None, yale=None),
        W(text="-", jyutping=None, yale=None),
        W(text="mail", jyutping=None, yale=None),
        W(text=" ", jyutping=None, yale=None),
        W(text="-", jyutping=None, yale=None),
        W(text=" ", jyutping=None, yale=None),
        W(text="好", jyutping="hou2", yale="hóu"),
    ]
    assert join_words(words, "jyutping") == "Amara.org e-mail - hou2"


# --- errors ---------------------------------------------------------------------------


def test_unknown_format_is_a_clear_error(transcript: Transcript) -> None:
    with pytest.raises(ValueError, match=r"unknown transcript format 'docx'.*txt, json, srt, vtt, csv"):
        render(transcript, "docx")


def test_unknown_romanization_is_a_clear_error(transcript: Transcript) -> None:
    with pytest.raises(ValueError, match=r"unknown romanization 'pinyin'"):
        render(transcript, "srt", romanization="pinyin")


# --- srt / vtt ------------------------------------------------------------------------

SRT_TIME = r"(\d{2}):(\d{2}):(\d{2}),(\d{3})"
VTT_TIME = r"(\d{2}):(\d{2}):(\d{2})\.(\d{3})"


def parse_cues(text: str, time_pattern: str) -> list[tuple[float, float, list[str]]]:
    cues = []
    timing = re.compile(rf"^{time_pattern} --> {time_pattern}$")
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        index = next(i for i, line in enumerate(lines) if "-->" in line)
        match = timing.match(lines[index])
        assert match, lines[index]
        g = [int(x) for x in match.groups()]
        start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
        end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
        cues.append((start, end, lines[index + 1 :]))
    return cues


def check_cues(cues: list[tuple[float, float, list[str]]], romanization_lines: int) -> None:
    previous_start = -1.0
    for start, end, lines in cues:
        assert start >= previous_start and end >= start
        previous_start = start
        assert 1 <= len(lines[0]) <= MAX_CUE_CHARS
        assert len(lines) == 1 + romanization_lines
        assert all(line.strip() for line in lines)


def test_srt(transcript: Transcript) -> None:
    text = render(transcript, "srt", romanization="jyutping")
    blocks = text.strip().split("\n\n")
    assert [b.split("\n")[0] for b in blocks] == [str(i) for i in range(1, len(blocks) + 1)]
    cues = parse_cues(text, SRT_TIME)
    assert len(cues) == 5  # short, long in 3, quoted
    check_cues(cues, romanization_lines=1)
    assert cues[0] == (1.0, 3.5, ["我係Peter，你呢？", "ngo5 hai6 Peter, nei5 ne1?"])
    assert "01:01:01,200 --> 01:01:03,000" in text


def test_long_segment_is_split_at_words_with_proportional_times(transcript: Transcript) -> None:
    cues = parse_cues(render(transcript, "srt", romanization="both"), SRT_TIME)[1:4]
    texts = [lines[0] for _, _, lines in cues]
    assert "".join(texts) == transcript.segments[1].text
    assert texts[0].endswith("，")  # the clause break is a cue break
    assert cues[0][0] == 3.5 and cues[-1][1] == 15.0
    for (start, end, lines), (next_start, _, _) in zip(cues, cues[1:], strict=False):
        assert end == next_start
        assert end - start == pytest.approx(11.5 * len(lines[0]) / 34, abs=0.002)
    # each cue's romanization covers exactly its own words
    assert cues[0][2][1:] == [
        "ngo5 dei6 gam1 jat6 heoi3 zo2 hoeng1 gong2 daai6 hok6 tai2 syu1,",
        "ngóh deih gām yaht heui jó hēung góng daaih hohk tái syū,",
    ]


def test_vtt(transcript: Transcript) -> None:
    text = render(transcript, "vtt", romanization="both")
    assert text.startswith("WEBVTT\n\n")
    cues = parse_cues(text.removeprefix("WEBVTT\n\n"), VTT_TIME)
    assert len(cues) == 5
    check_cues(cues, romanization_lines=2)
    assert cues[0][2] == ["我係Peter，你呢？", "ngo5 hai6 Peter, nei5 ne1?", "ngóh haih Peter, néih nē?"]
    assert "R&amp;D" in text and "R&D" not in text  # cue text is markup in VTT


def test_yale_only_subtitles(transcript: Transcript) -> None:
    cues = parse_cues(render(transcript, "srt", romanization="yale"), SRT_TIME)
    check_cues(cues, romanization_lines=1)
    assert cues[0][2][1] == "ngóh haih Peter, néih nē?"


def test_yale_with_tone_numbers_in_subtitles_and_text(transcript: Transcript) -> None:
    cues = parse_cues(render(transcript, "srt", romanization="yale_numeric"), SRT_TIME)
    check_cues(cues, romanization_lines=1)
    assert cues[0][2][1] == "ngo5 hai6 Peter, nei5 ne1?"
    assert cues[1][2][1].startswith("ngo5 dei6 gam1 yat6 heui3 jo2 heung1 gong2")  # a piece of a long line
    txt = render(transcript, "txt", romanization="yale_numeric")
    assert '          keui5 wa6 "R&D, hou2"' in txt.split("\n") and "ngóh" not in txt
    # A line whose words do not spell it (not made by the romanizer): its Jyutping line, syllable by syllable.
    bare = Segment(seq=0, start=0.0, end=1.0, text="今日，OK", jyutping="gam1 jat6, OK", yale="gām yaht, OK", words=[])
    assert reading_lines(bare, "yale_numeric") == ["gam1 yat6, OK"]


def test_every_reading_a_download_offers_is_rendered(transcript: Transcript) -> None:
    lines = {reading: len(reading_lines(transcript.segments[0], reading)) for reading in READING_LINES}
    assert lines == {"jyutping": 1, "yale": 1, "yale_numeric": 1, "both": 2, "none": 0}


def test_a_corrected_line_downloads_with_its_original(transcript: Transcript) -> None:
    fixed = msgspec.structs.replace(transcript.segments[0], original_text="我係彼得，你呢？", revision=2)
    document = msgspec.json.decode(render(msgspec.structs.replace(transcript, segments=[fixed]), "json"))
    assert document["segments"][0]["original_text"] == "我係彼得，你呢？" and document["segments"][0]["revision"] == 2


def test_subtitles_skip_empty_segments(transcript: Transcript) -> None:
    empty = Segment(seq=3, start=20.0, end=21.0, text="", jyutping="", yale="", words=[])
    with_empty = msgspec.structs.replace(transcript, segments=[*transcript.segments, empty])
    assert len(parse_cues(render(with_empty, "srt"), SRT_TIME)) == 5


# --- txt ------------------------------------------------------------------------------


def test_txt(transcript: Transcript) -> None:
    lines = render(transcript, "txt", romanization="both").split("\n")
    assert lines[:3] == [
        "[00:01] 我係Peter，你呢？",
        "        ngo5 hai6 Peter, nei5 ne1?",
        "        ngóh haih Peter, néih nē?",
    ]
    assert lines[3] == ""
    assert lines[4].startswith("[00:03] 我哋今日")
    assert "[1:01:01] 佢話「R&D,好」" in lines
    jyutping_only = render(transcript, "txt", romanization="jyutping")
    assert "ngóh" not in jyutping_only and "ngo5 hai6" in jyutping_only


# --- csv ------------------------------------------------------------------------------


def test_csv(transcript: Transcript) -> None:
    rows = list(csv.reader(io.StringIO(render(transcript, "csv"))))
    assert rows[0] == ["id", "start", "end", "chinese", "jyutping", "yale"]
    assert rows[1] == [
        "0",
        "1.000",
        "3.500",
        "我係Peter，你呢？",
        "ngo5 hai6 Peter, nei5 ne1?",
        "ngóh haih Peter, néih nē?",
    ]
    assert rows[3][:4] == ["2", "3661.200", "3663.000", "佢話「R&D,好」"]  # the comma in the text is quoted
    assert rows[3][4] == 'keoi5 waa6 "R&D, hou2"'  # and so are the quotes
    assert len(rows) == 4


# --- json -----------------------------------------------------------------------------


def test_json_has_exactly_the_documented_keys(transcript: Transcript) -> None:
    text = render(transcript, "json")
    document = msgspec.json.decode(text)
    assert list(document) == ["job_id", "source", "duration", "segments", "usage", "warnings", "partial"]
    assert list(document["segments"][0]) == ["seq", "start", "end", "text", "jyutping", "yale", "words", "chars"]
    assert list(document["segments"][0]["words"][0]) == ["text", "jyutping", "yale"]
    assert list(document["usage"]) == ["backend", "model", "billed_seconds", "cost_usd", "cache_hit"]
    assert "我係Peter" in text and "\\u" not in text  # UTF-8, not ASCII escapes
    assert text.startswith('{\n  "job_id": "job-1"')  # indent 2


def test_json_round_trips(transcript: Transcript) -> None:
    decoded = transcript_decoder.decode(render(transcript, "json"))
    # chunk_seq is a pipeline detail and is not downloaded: it comes back as its default
    expected = msgspec.structs.replace(
        transcript, segments=[msgspec.structs.replace(s, chunk_seq=0) for s in transcript.segments]
    )
    assert decoded == expected


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("txt", ""),
        ("srt", ""),
        ("SRT", ""),
        ("vtt", "WEBVTT\n"),
        (".vtt", "WEBVTT\n"),
        ("csv", "id,start,end,chinese,jyutping,yale\n"),
    ],
)
def test_every_format_renders_an_empty_transcript(transcript: Transcript, fmt: str, expected: str) -> None:
    empty = msgspec.structs.replace(transcript, segments=[])
    assert render(empty, fmt) == expected


def test_an_empty_transcript_downloads_as_json_with_no_segments(transcript: Transcript) -> None:
    empty = msgspec.structs.replace(transcript, segments=[])
    assert transcript_decoder.decode(render(empty, "json")) == empty


@pytest.mark.parametrize(("seconds", "shown"), [(0.0, "00:00"), (59.9, "00:59"), (61.0, "01:01"), (3725.0, "1:02:05")])
def test_clock_shows_hours_from_an_hour_on(seconds: float, shown: str) -> None:
    assert clock(seconds) == shown

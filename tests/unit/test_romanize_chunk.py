"""One chunk's raw segments to romanized lines: cleanup, numbering and alignment."""

from core.messages import RawSegment
from romanizer.romanize import Romanizer
from romanizer.service import romanize_chunk

ROMANIZER = Romanizer()


def _raw(*texts: str) -> list[RawSegment]:
    return [RawSegment(start=float(i), end=float(i) + 1.0, text=t) for i, t in enumerate(texts)]


def test_lines_are_numbered_from_first_seq_and_romanized() -> None:
    lines = romanize_chunk(ROMANIZER, _raw("我哋今日去咗香港", "好开心"), chunk_seq=3, first_seq=7, previous=[])
    assert [line.seq for line in lines] == [7, 8]
    assert all(line.chunk_seq == 3 for line in lines)
    assert lines[1].text == "好開心"  # Simplified input normalised before romanizing
    assert lines[0].jyutping.startswith("ngo5 dei6 gam1 jat6")
    assert "".join(w.text for w in lines[0].words) == lines[0].text


def test_loops_collapse_and_repeats_across_the_border_are_dropped() -> None:
    raw = _raw("其實亦都係啱啱啱啱啱啱啱啱啱啱啱啱啱啱。", "多謝大家", "多謝大家")
    lines = romanize_chunk(ROMANIZER, raw, chunk_seq=0, first_seq=0, previous=["上一句"])
    assert [line.text[:5] for line in lines] == ["其實亦都係", "多謝大家"]
    assert "啱啱啱啱" not in lines[0].text
    again = romanize_chunk(ROMANIZER, _raw("多謝大家", "再見"), chunk_seq=1, first_seq=2, previous=["多謝大家"])
    assert [line.text for line in again] == ["再見"] and again[0].seq == 2


def test_replacement_characters_never_reach_the_text_or_the_readings() -> None:
    # Half a character from damaged audio decodes to U+FFFD; a line of nothing else is dropped.
    raw = _raw("我哋\ufffd今日去\ufffd\ufffd香港\x07", "\ufffd\ufffd")
    [line] = romanize_chunk(ROMANIZER, raw, chunk_seq=0, first_seq=0, previous=[])
    assert line.text == "我哋今日去香港"
    assert [c.char for c in line.chars] == list("我哋今日去香港")
    assert all(c.jyutping for c in line.chars)

"""Transcript downloads: TXT, JSON, SRT, VTT and CSV.

``render`` turns a whole :class:`~core.messages.Transcript` into one of the download
formats. The romanization lines of subtitle pieces are joined by
:func:`core.text.join_words`, as the romanizer joins whole lines.

Subtitle cues hold at most ``MAX_CUE_CHARS`` characters (learners expect about 18): longer
segments are cut at word boundaries, preferring the end of a clause, and the segment's
time is shared out in proportion to characters.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Sequence
from typing import Literal

import msgspec

from core.messages import Char, Segment, Transcript, Usage, Word
from core.text import READING_LINES, join_words
from romanizer.yale import to_yale, yale_parts

FORMATS = ("txt", "json", "srt", "vtt", "csv")
MAX_CUE_CHARS = 18

_CLAUSE_END = frozenset("，、。？！：；,.?!:;…")


# --- render ---------------------------------------------------------------------------


def render(transcript: Transcript, fmt: str, romanization: str = "both") -> str:
    """Render a transcript as a download file.

    ``json`` and ``csv`` are data formats and always carry both romanizations;
    ``romanization`` chooses the lines shown in ``txt``, ``srt`` and ``vtt``.

    Args:
        transcript: The whole transcript.
        fmt: One of ``txt``, ``json``, ``srt``, ``vtt``, ``csv``.
        romanization: ``jyutping``, ``yale`` (tone marks), ``yale_numeric`` (tone numbers 1-6),
            ``both`` (Jyutping line, then Yale line) or ``none`` (:data:`core.text.ReadingLines`).

    Returns:
        The file's text (UTF-8 when written; no ASCII escapes).

    Raises:
        ValueError: If ``fmt`` or ``romanization`` is not one of the above.
    """
    fmt_key = fmt.lower().lstrip(".")
    if fmt_key not in _RENDERERS:
        raise ValueError(f"unknown transcript format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if romanization not in _SYSTEMS:
        raise ValueError(f"unknown romanization {romanization!r}: choose one of {', '.join(READING_LINES)}")
    return _RENDERERS[fmt_key](transcript, _SYSTEMS[romanization])


System = Literal["jyutping", "yale", "yale_numeric"]
"""One reading line: Jyutping, Yale with tone marks, Yale with tone numbers."""

_SYSTEMS: dict[str, tuple[System, ...]] = {
    "jyutping": ("jyutping",),
    "yale": ("yale",),
    "yale_numeric": ("yale_numeric",),
    "both": ("jyutping", "yale"),
    "none": (),  # characters only: subtitles for clients that expect OpenAI's (gateway.openai_compat)
}
_JYUTPING_SYLLABLE = re.compile(r"\b[a-z]+[1-6]\b")


def reading_lines(segment: Segment, romanization: str) -> list[str]:
    """The reading lines shown under a line's characters (txt, and the terminal's live lines)."""
    return [_romanized(segment, system) for system in _SYSTEMS[romanization]]


def _romanized(segment: Segment, system: System) -> str:
    if system == "jyutping":
        return segment.jyutping
    if system == "yale":
        return segment.yale
    if segment.words and "".join(w.text for w in segment.words) == segment.text:
        return _joined(segment.words, system)
    # A line without words (not made by the romanizer): each Jyutping syllable of its line in Yale.
    return _JYUTPING_SYLLABLE.sub(lambda m: (yale_parts(m.group()) or ("", m.group()))[1], segment.jyutping)


def _joined(words: Sequence[Word], system: System) -> str:
    """A reading line of some words, spaced and punctuated as :func:`core.text.join_words` does."""
    if system != "yale_numeric":
        return join_words(words, system)
    return join_words([_numbered(word) for word in words], "yale")


def _numbered(word: Word) -> Word:
    """The word with its Yale in tone numbers (``gam1 yat6``) in place of tone marks."""
    if word.jyutping is None:
        return word
    return Word(text=word.text, jyutping=word.jyutping, yale=to_yale(word.jyutping, numbers=True) or word.yale)


# --- txt ------------------------------------------------------------------------------


def _txt(transcript: Transcript, systems: tuple[System, ...]) -> str:
    blocks = []
    for segment in transcript.segments:
        stamp = f"[{clock(segment.start)}] "
        lines = [stamp + segment.text]
        lines += [" " * len(stamp) + _romanized(segment, system) for system in systems]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n" if blocks else ""


def clock(seconds: float) -> str:
    """``mm:ss``, or ``h:mm:ss`` from an hour on."""
    total = int(max(seconds, 0.0))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


# --- json -----------------------------------------------------------------------------


class _JsonSegment(msgspec.Struct, omit_defaults=True):
    """A segment as downloaded: ``Segment`` without the pipeline's ``chunk_seq``; a corrected line
    also has ``original_text`` (what the speech model wrote) and ``revision``."""

    seq: int
    start: float
    end: float
    text: str
    jyutping: str
    yale: str
    words: list[Word]
    chars: list[Char]
    original_text: str | None = None
    revision: int = 0


class _JsonTranscript(msgspec.Struct):
    job_id: str
    source: str
    duration: float
    segments: list[_JsonSegment]
    usage: Usage
    warnings: list[str] = []
    partial: bool = False


_json_encoder = msgspec.json.Encoder()


def _json(transcript: Transcript, systems: tuple[System, ...]) -> str:
    document = _JsonTranscript(
        job_id=transcript.job_id,
        source=transcript.source,
        duration=transcript.duration,
        segments=[
            _JsonSegment(
                s.seq,
                s.start,
                s.end,
                s.text,
                s.jyutping,
                s.yale,
                list(s.words),
                list(s.chars),
                s.original_text,
                s.revision,
            )
            for s in transcript.segments
        ],
        usage=transcript.usage,
        warnings=list(transcript.warnings),
        partial=transcript.partial,
    )
    return msgspec.json.format(_json_encoder.encode(document), indent=2).decode("utf-8") + "\n"


# --- csv ------------------------------------------------------------------------------


def _csv(transcript: Transcript, systems: tuple[System, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "start", "end", "chinese", "jyutping", "yale"])
    for s in transcript.segments:
        writer.writerow([s.seq, f"{s.start:.3f}", f"{s.end:.3f}", s.text, s.jyutping, s.yale])
    return buffer.getvalue()


# --- srt / vtt ------------------------------------------------------------------------


class Cue(msgspec.Struct, frozen=True):
    """One subtitle cue: the characters and the romanization lines under them."""

    start: float
    end: float
    text: str
    lines: tuple[str, ...]


def cues(segments: Sequence[Segment], systems: Sequence[System], max_chars: int = MAX_CUE_CHARS) -> list[Cue]:
    """Cut segments into subtitle cues of at most ``max_chars`` characters.

    A segment whose words do not spell its text (not made by the romanizer) stays one cue.
    A single word longer than ``max_chars`` (a long English word) gets a cue of its own.

    Args:
        segments: Transcript lines in time order.
        systems: The romanization lines to put under the characters, in order.
        max_chars: The longest character line of a cue.

    Returns:
        The cues, in time order.
    """
    out: list[Cue] = []
    for segment in segments:
        if not segment.text.strip():
            continue
        start, end = segment.start, max(segment.end, segment.start)
        pieces = _split_words(segment, max_chars)
        if pieces is None:
            out.append(Cue(start, end, segment.text, tuple(_romanized(segment, s) for s in systems)))
            continue
        total = sum(len(_text(p)) for p in pieces)
        done = 0
        for index, piece in enumerate(pieces):
            text = _text(piece)
            piece_start = start + (end - start) * done / total
            done += len(text)
            piece_end = end if index == len(pieces) - 1 else start + (end - start) * done / total
            out.append(Cue(piece_start, piece_end, text, tuple(_joined(piece, s) for s in systems)))
    return out


def _text(words: Sequence[Word]) -> str:
    return "".join(w.text for w in words).strip()


def _split_words(segment: Segment, max_chars: int) -> list[list[Word]] | None:
    """The segment's words in cue-sized pieces; ``None`` if the words do not spell the text."""
    words = list(segment.words)
    if not words or "".join(w.text for w in words) != segment.text:
        return None
    if len(segment.text.strip()) <= max_chars:
        return [words]
    clauses: list[list[Word]] = [[]]
    for word in words:
        clauses[-1].append(word)
        if word.text and word.text[-1] in _CLAUSE_END:
            clauses.append([])
    pieces: list[list[Word]] = []
    for clause in clauses:
        if not _text(clause):
            continue
        if pieces and len(_text(pieces[-1] + clause)) <= max_chars:
            pieces[-1] += clause
        else:
            pieces += _pack(clause, max_chars)
    return pieces


def _pack(words: list[Word], max_chars: int) -> list[list[Word]]:
    """Cut one clause into pieces of about equal length, none over ``max_chars`` (unless one word is)."""
    length = len(_text(words))
    target = math.ceil(length / math.ceil(length / max_chars))
    pieces: list[list[Word]] = [[]]
    for word in words:
        current = len(_text(pieces[-1]))
        if pieces[-1] and (len(_text([*pieces[-1], word])) > max_chars or current >= target):
            pieces.append([])
        pieces[-1].append(word)
    return [p for p in pieces if _text(p)]


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(max(seconds, 0.0) * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _srt(transcript: Transcript, systems: tuple[System, ...]) -> str:
    blocks = []
    for number, cue in enumerate(cues(transcript.segments, systems), start=1):
        timing = f"{_timestamp(cue.start, ',')} --> {_timestamp(cue.end, ',')}"
        blocks.append("\n".join([str(number), timing, cue.text, *cue.lines]))
    return "\n\n".join(blocks) + "\n" if blocks else ""


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _vtt(transcript: Transcript, systems: tuple[System, ...]) -> str:
    blocks = ["WEBVTT"]
    for cue in cues(transcript.segments, systems):
        timing = f"{_timestamp(cue.start, '.')} --> {_timestamp(cue.end, '.')}"
        blocks.append("\n".join([timing, *(_vtt_escape(line) for line in (cue.text, *cue.lines))]))
    return "\n\n".join(blocks) + "\n"


_RENDERERS: dict[str, Callable[[Transcript, tuple[System, ...]], str]] = {
    "txt": _txt,
    "json": _json,
    "srt": _srt,
    "vtt": _vtt,
    "csv": _csv,
}

__all__ = ["FORMATS", "MAX_CUE_CHARS", "Cue", "System", "clock", "cues", "reading_lines", "render"]

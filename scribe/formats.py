"""Transcript downloads (TXT, JSON, SRT, VTT, CSV) and romanization lines built from words.

``render`` turns a whole :class:`~scribe.messages.Transcript` into one of the download
formats. ``join_words`` builds a Jyutping or Yale line from :class:`~scribe.messages.Word`s;
the romanizer uses it for ``Segment.jyutping``/``Segment.yale`` and the subtitle formats use
it for the pieces of a long segment, so both read the same way:
``ngo5 hai6 Peter, nei5 ne1?`` (syllables and Latin words spaced, punctuation attached,
Chinese punctuation written as its ASCII counterpart).

Subtitle cues hold at most ``MAX_CUE_CHARS`` characters (learners expect about 18): longer
segments are cut at word boundaries, preferring the end of a clause, and the segment's
time is shared out in proportion to characters.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from typing import Literal

import msgspec

from scribe.messages import Segment, Transcript, Usage, Word

System = Literal["jyutping", "yale"]
FORMATS = ("txt", "json", "srt", "vtt", "csv")
ROMANIZATIONS = ("jyutping", "yale", "both")
MAX_CUE_CHARS = 18

# How punctuation sits in a romanization line: closing marks stick to the word before,
# opening marks to the word after, joiners to both (e-mail, R&D); anything else stands alone.
_ASCII = str.maketrans(
    {
        "，": ",",
        "、": ",",
        "。": ".",
        "？": "?",
        "！": "!",
        "：": ":",
        "；": ";",
        "（": "(",
        "）": ")",
        "「": '"',
        "」": '"',
        "『": '"',
        "』": '"',
        "《": '"',
        "》": '"',
        "〈": '"',
        "〉": '"',
        "“": '"',
        "”": '"',
    }
)
_CLOSING = frozenset(",.?!:;)]}”’…，、。？！：；）」』》〉％%")
_OPENING = frozenset("([{“‘（「『《〈")
_JOINERS = frozenset("-‐‑/·・&+_@#'’")
_INNER = frozenset(".,:")  # joiners between two Latin words
_CLAUSE_END = frozenset("，、。？！：；,.?!:;…")
_OPENING_ASCII = frozenset(ch.translate(_ASCII) for ch in _OPENING)


def join_words(words: Sequence[Word], system: System) -> str:
    """Build one romanization line from words.

    Romanized words contribute their syllables; words without romanization (Latin text,
    unknown characters) contribute their text as is; punctuation attaches to its
    neighbours; whitespace words only separate.

    Args:
        words: The words of a line, in order.
        system: ``"jyutping"`` or ``"yale"``.

    Returns:
        The line, e.g. ``"ngo5 hai6 Peter, nei5 ne1?"``.
    """
    out: list[str] = []
    glue = True  # no space before the next token
    spaced = False  # the previous word was whitespace
    for index, word in enumerate(words):
        romanized = word.jyutping if system == "jyutping" else word.yale
        text = word.text
        if romanized is None and (not text or text.isspace()):
            spaced = True
            continue
        kind = "token" if romanized is not None else _kind(text)
        if (
            text in _INNER
            and 0 < index < len(words) - 1
            and _is_latin(words[index - 1])
            and _is_latin(words[index + 1])
        ):
            kind = "join"  # Amara.org, U.S.A
        token = romanized if romanized is not None else text.translate(_ASCII)
        if kind == "close":
            out.append(token)
            glue = False
        elif kind == "join" and not spaced:
            out.append(token)
            glue = True
        else:
            if out and (not glue or (spaced and out[-1] not in _OPENING_ASCII)):
                out.append(" ")
            out.append(token)
            glue = kind == "open"
        spaced = False
    return "".join(out)


def _is_latin(word: Word) -> bool:
    return word.jyutping is None and word.text[:1].isascii() and word.text[:1].isalnum()


def _kind(text: str) -> str:
    first = text[0]
    if first in _CLOSING:
        return "close"
    if first in _OPENING:
        return "open"
    if first in _JOINERS:
        return "join"
    return "token"


# --- render ---------------------------------------------------------------------------


def render(transcript: Transcript, fmt: str, romanization: str = "both") -> str:
    """Render a transcript as a download file.

    ``json`` and ``csv`` are data formats and always carry both romanizations;
    ``romanization`` chooses the lines shown in ``txt``, ``srt`` and ``vtt``.

    Args:
        transcript: The whole transcript.
        fmt: One of ``txt``, ``json``, ``srt``, ``vtt``, ``csv``.
        romanization: ``jyutping``, ``yale`` or ``both`` (Jyutping line, then Yale line).

    Returns:
        The file's text (UTF-8 when written; no ASCII escapes).

    Raises:
        ValueError: If ``fmt`` or ``romanization`` is not one of the above.
    """
    fmt_key = fmt.lower().lstrip(".")
    if fmt_key not in _RENDERERS:
        raise ValueError(f"unknown transcript format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if romanization not in _SYSTEMS:
        raise ValueError(f"unknown romanization {romanization!r}: choose one of {', '.join(ROMANIZATIONS)}")
    return _RENDERERS[fmt_key](transcript, _SYSTEMS[romanization])


_SYSTEMS: dict[str, tuple[System, ...]] = {"jyutping": ("jyutping",), "yale": ("yale",), "both": ("jyutping", "yale")}


def _romanized(segment: Segment, system: System) -> str:
    return segment.jyutping if system == "jyutping" else segment.yale


# --- txt ------------------------------------------------------------------------------


def _txt(transcript: Transcript, systems: tuple[System, ...]) -> str:
    blocks = []
    for segment in transcript.segments:
        stamp = f"[{_clock(segment.start)}] "
        lines = [stamp + segment.text]
        lines += [" " * len(stamp) + _romanized(segment, system) for system in systems]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n" if blocks else ""


def _clock(seconds: float) -> str:
    """``mm:ss``, or ``h:mm:ss`` from an hour on."""
    total = int(max(seconds, 0.0))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


# --- json -----------------------------------------------------------------------------


class _JsonSegment(msgspec.Struct):
    """A segment as downloaded: ``Segment`` without the pipeline's ``chunk_seq``."""

    seq: int
    start: float
    end: float
    text: str
    jyutping: str
    yale: str
    words: list[Word]


class _JsonTranscript(msgspec.Struct):
    job_id: str
    source: str
    duration: float
    segments: list[_JsonSegment]
    usage: Usage


_json_encoder = msgspec.json.Encoder()


def _json(transcript: Transcript, systems: tuple[System, ...]) -> str:
    document = _JsonTranscript(
        job_id=transcript.job_id,
        source=transcript.source,
        duration=transcript.duration,
        segments=[
            _JsonSegment(s.seq, s.start, s.end, s.text, s.jyutping, s.yale, list(s.words)) for s in transcript.segments
        ],
        usage=transcript.usage,
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
            out.append(Cue(piece_start, piece_end, text, tuple(join_words(piece, s) for s in systems)))
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

__all__ = ["FORMATS", "MAX_CUE_CHARS", "ROMANIZATIONS", "Cue", "System", "cues", "join_words", "render"]

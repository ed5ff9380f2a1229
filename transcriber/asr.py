"""What every ASR backend gives and takes: a chunk's result, the backend interface, its price.

Backends (``transcriber.local``, ``transcriber.openai_api``) take one compressed chunk (Ogg/Opus
or FLAC bytes) and return its segments with times relative to the chunk start; the caller adds
the chunk offset. Failures come out as ``TransientAsrError`` (retry later) or
``PermanentAsrError`` (give up on this chunk).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.messages import RawSegment, RawWord, Usage
from core.settings import Settings


@dataclass(frozen=True)
class AsrResult:
    """The transcript of one chunk.

    Attributes:
        segments: Segments with times relative to the chunk start (seconds).
        billed_seconds: Local: seconds of audio decoded and processed. OpenAI: the seconds
            OpenAI bills, i.e. its reported duration (or the chunk duration) rounded to the
            nearest whole second, at least 1.
        backend: "local" or "openai".
        model: The model name used for pricing and the usage ledger.
    """

    segments: list[RawSegment]
    billed_seconds: float
    backend: str
    model: str


class AsrBackend(Protocol):
    """What the transcriber service needs from an ASR backend."""

    name: str
    model: str

    async def transcribe(
        self, audio: bytes, *, duration: float, filename: str = "chunk.ogg", prompt: str | None = None
    ) -> AsrResult:
        """Transcribe one compressed chunk (``prompt``: the job's words, after the deployment's prompt);
        raise TransientAsrError or PermanentAsrError."""
        ...

    def answer_options(self, prompt: str | None = None) -> dict[str, Any]:
        """Everything besides the audio that changes the answer to a chunk of a job with this prompt:
        the model and the request or decoding options, the prompt as sent (part of the chunk cache's key)."""
        ...

    async def close(self) -> None:
        """Release the backend's resources."""
        ...


def filename_for_codec(codec: str, stem: str = "chunk") -> str:
    """An upload file name whose extension matches ``AudioChunk.codec`` ("opus" or "flac").

    The OpenAI API picks the decoder from the file name's extension.
    """
    return f"{stem}.{'ogg' if codec == 'opus' else codec}"


def usage_for(result: AsrResult, settings: Settings) -> Usage:
    """Price one ASR result from the settings' per-minute price table.

    Args:
        result: The ASR result.
        settings: Provides ``price_per_minute(model)`` (0 for models not in the table).

    Returns:
        The usage record for the ledger.
    """
    cost = result.billed_seconds / 60.0 * settings.price_per_minute(result.model)
    return Usage(backend=result.backend, model=result.model, billed_seconds=result.billed_seconds, cost_usd=cost)


Piece = tuple[float, float, str] | tuple[float, float, str, Sequence[RawWord]]
"""A segment as a backend gives it: start, end, text, and optionally its timed words."""


def raw_segments(pieces: Iterable[Piece], limit: float) -> list[RawSegment]:
    """Strip texts, drop empty ones, clamp times (the words' too) into [0, limit] (when limit > 0)."""

    def clamp(seconds: float) -> float:
        seconds = max(0.0, float(seconds))
        return min(seconds, limit) if limit > 0 else seconds

    out: list[RawSegment] = []
    for piece in pieces:
        start, end, text = clamp(piece[0]), clamp(piece[1]), piece[2].strip()
        if not text:
            continue
        words = [
            RawWord(
                text=word.text,
                start=round(clamp(word.start), 3),
                end=round(max(clamp(word.start), clamp(word.end)), 3),
                probability=None if word.probability is None else round(word.probability, 3),
            )
            for word in (piece[3] if len(piece) > 3 else ())
            if word.text.strip()
        ]
        out.append(RawSegment(start=round(start, 3), end=round(max(start, end), 3), text=text, words=words))
    return out


def shifted(segment: RawSegment, offset: float) -> RawSegment:
    """The segment, and its words, moved ``offset`` seconds later (a chunk's times onto the job's timeline)."""
    return RawSegment(
        start=round(offset + segment.start, 3),
        end=round(offset + segment.end, 3),
        text=segment.text,
        words=[
            RawWord(
                text=w.text, start=round(offset + w.start, 3), end=round(offset + w.end, 3), probability=w.probability
            )
            for w in segment.words
        ],
    )


MAX_JOB_PROMPT = 400  # characters of a job's own prompt (the gateway refuses longer ones)
# Whisper conditions on the last 223 prompt tokens only (half its 448-token window, less one):
# faster-whisper's ``max_length // 2 - 1``, and OpenAI documents the same for whisper-1.
WHISPER_PROMPT_TOKENS = 223
_BREAKS = " ，、,;；\n\t"


def combined_prompt(deployment: str, job: str | None, *, count: Callable[[str], int] | None = None) -> str | None:
    """The deployment's Cantonese prompt, then the job's own words (names, terms), if any.

    The job's part is cut to :data:`MAX_JOB_PROMPT` characters. Whisper reads only the end of a long
    prompt, so a job's 400 Chinese characters (about 530 tokens) would push the Cantonese prompt,
    which is what steers it to spoken Cantonese, out of what it reads. With ``count`` (a text's
    length in the model's tokens) the job's part is cut further, keeping its beginning and ending
    at a space or comma where it can, until the whole fits :data:`WHISPER_PROMPT_TOKENS`.

    Args:
        deployment: ``settings.asr_prompt`` (may be empty).
        job: The job's prompt (``JobOptions.prompt``), or None.
        count: The token count of a text for the model the prompt goes to; None when the model
            reads long prompts whole.

    Returns:
        The prompt to send, or None when both are empty.
    """
    head = deployment.strip()
    words = (job or "")[:MAX_JOB_PROMPT].strip()

    def joined(words: str) -> str:
        return " ".join(part for part in (head, words.strip()) if part)

    if count is not None and words and count(joined(words)) > WHISPER_PROMPT_TOKENS:
        fits, over = 0, len(words)  # the longest prefix that fits, by bisection (counts grow with length)
        while over - fits > 1:
            middle = (fits + over) // 2
            fits, over = (middle, over) if count(joined(words[:middle])) <= WHISPER_PROMPT_TOKENS else (fits, middle)
        cut = words[:fits]
        if words[fits] not in _BREAKS:  # the cut is inside a name: back to the last break, if any
            at_break = max(cut.rfind(mark) for mark in _BREAKS)
            cut = cut[:at_break] if at_break > 0 else cut
        words = cut
    return joined(words) or None

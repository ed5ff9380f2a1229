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

from core.messages import SPEECH_PAD_S, RawSegment, RawWord, Usage
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


def sent_seconds(duration: float, speech: Sequence[tuple[float, float]]) -> float:
    """How long the audio sent for a chunk is: its ``speech`` stretches joined (``AudioChunk.speech``), or all of it."""
    return round(sum(end - start for start, end in speech), 3) if speech else duration


def on_timeline(segment: RawSegment, offset: float, speech: Sequence[tuple[float, float]] = ()) -> RawSegment:
    """The segment, and its words, from the times of the audio sent onto the job's timeline.

    With ``speech`` (``AudioChunk.speech``: the stretches of the chunk the audio held, joined) a time
    is first put back in its stretch, as faster-whisper's ``SpeechTimestampsMap`` does for its own
    VAD filter. Around a join, the pause the stretches keep (:data:`~core.messages.SPEECH_PAD_S` a
    side) is where nothing was said: a start in it goes to the stretch after the join, an end to the
    one before, so that a line or word is not stretched across the pause that was left out (a
    model often starts the first word after a pause a little early). Then ``offset`` is added.
    """

    def span(start: float, end: float) -> tuple[float, float]:
        start = round(offset + _in_chunk(start, speech, end=False), 3)
        return start, max(start, round(offset + _in_chunk(end, speech, end=True), 3))

    words = []
    for word in segment.words:
        start, end = span(word.start, word.end)
        words.append(RawWord(text=word.text, start=start, end=end, probability=word.probability))
    start, end = span(segment.start, segment.end)
    return RawSegment(start=start, end=end, text=segment.text, words=words)


_EPSILON = 1e-6  # a time on a join, whatever the float sum of the lengths before it


def _in_chunk(seconds: float, speech: Sequence[tuple[float, float]], *, end: bool) -> float:
    """A time in the joined ``speech`` stretches as seconds from the chunk's start (unchanged without them)."""
    if not speech:
        return seconds
    joined = 0.0  # where the stretch starts in the joined audio
    for i, (start, stop) in enumerate(speech[:-1]):
        join = joined + stop - start  # where it meets the next one
        if end and seconds <= join + SPEECH_PAD_S + _EPSILON:
            return min(stop, start + max(0.0, seconds - joined))
        if not end and seconds < join - SPEECH_PAD_S - _EPSILON:
            return start + max(0.0, seconds - joined)
        if not end and seconds < join - _EPSILON:  # in the pause kept before the join: the speech after it
            return speech[i + 1][0]
        joined = join
    start, stop = speech[-1]
    return min(stop, start + max(0.0, seconds - joined))


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

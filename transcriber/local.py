"""The local backend: faster-whisper on the CPU, with the embedded Whisper base or any CTranslate2 model."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import faster_whisper.transcribe
import numpy as np
from faster_whisper import WhisperModel, decode_audio

from core.messages import RawSegment, RawWord
from core.settings import Settings
from transcriber.asr import AsrResult, combined_prompt, raw_segments
from transcriber.errors import PermanentAsrError, TransientAsrError
from transcriber.model import (
    EMBEDDED_DIR_NAME,
    EMBEDDED_MODEL,
    WRITTEN_CHINESE_CHARS,
    load_model,
    written_chinese_suppress_tokens,
)

logger = logging.getLogger(__name__)

# VAD on: measured with bench/asr_eval.py on the 26 reference clips (see the module
# docstring there). Chunks arrive already cut at silences, so VAD barely changes CER on
# speech, but it stops the model from inventing lines on noise-only chunks.
DEFAULT_VAD_FILTER = True

# faster-whisper re-decodes a window at these temperatures when the output looks like a
# loop. Its default six cost up to six passes on a chunk that loops (seen: 18 s instead
# of 1 s on one 24 s chunk); three keep the accuracy (bench/asr_eval.py: CER 0.276 with
# these, 0.278 with all six, 0.363 with 0.0 alone) and bound the cost.
TEMPERATURES = (0.0, 0.2, 0.4)


def decode_options(
    settings: Settings,
    suppress_tokens: list[int],
    job_prompt: str | None = None,
    *,
    count: Callable[[str], int] | None = None,
) -> dict[str, Any]:
    """The ``WhisperModel.transcribe`` options of the local backend (the pipeline bench reuses them).

    ``job_prompt`` (a job's names and terms) follows the deployment's Cantonese prompt in
    ``initial_prompt``, never replacing it; ``count`` (the model's token count of a text) cuts it
    so that both fit the prompt tokens Whisper reads (:func:`transcriber.asr.combined_prompt`).
    """
    return {
        "language": "zh",  # Whisper base has no yue token
        "initial_prompt": combined_prompt(settings.asr_prompt, job_prompt, count=count),
        "beam_size": settings.asr_beam_size,
        "condition_on_previous_text": False,
        "suppress_tokens": list(suppress_tokens),  # faster-whisper may extend the list it is given
        "temperature": list(TEMPERATURES),
    }


def _window_end(segments: list[dict[str, Any]]) -> float | None:
    """Where faster-whisper's next window starts after a window ending mid-segment: its last timestamp.

    With ``word_timestamps`` faster-whisper (1.1-1.2) seeks to the window's last *word* end instead
    (``get_end``; its word alignment also moves segment ends to word ends), which is earlier; at a
    chunk's end that re-decodes a fraction of a second where Whisper invents a line or a loop
    (measured: 1.26x the time of a 10-minute job, and a character error rate of 0.337 instead of
    0.288 on the reference clips; bench/word_times.py). Seeking to the last timestamp, where it
    seeks without word times, keeps the windows, and so the text, of a decode without them: word
    times then only add their alignment. This is also the last speech time faster-whisper hands to
    the next window's alignment.
    """
    if not segments:
        return None
    last = segments[-1]
    return float(last.get(_TIMESTAMP_END, last["end"]))


_TIMESTAMP_END = "scribe_timestamp_end"
_align = WhisperModel.add_word_timestamps


def _add_word_timestamps(self: WhisperModel, segments: list[list[dict[str, Any]]], *args: Any, **kwargs: Any) -> Any:
    """faster-whisper's word alignment, each segment's timestamp end kept first (for :func:`_window_end`)."""
    for window in segments:
        for segment in window:
            segment.setdefault(_TIMESTAMP_END, segment["end"])
    return _align(self, segments, *args, **kwargs)


# faster-whisper reads ``get_end`` from its module and the aligner from the model at call time.
if hasattr(faster_whisper.transcribe, "get_end"):
    faster_whisper.transcribe.get_end = _window_end
    WhisperModel.add_word_timestamps = _add_word_timestamps


def local_model_name(settings: Settings) -> str:
    """The name the local model goes by in results and the price table.

    "whisper-base" for the embedded model, else the model folder's name.
    """
    if settings.asr_model == EMBEDDED_MODEL:
        return EMBEDDED_DIR_NAME
    return Path(settings.asr_model).expanduser().name


class LocalBackend:
    """faster-whisper on the CPU; at most ``asr_workers`` chunks decode at once."""

    name = "local"

    def __init__(
        self,
        model: WhisperModel,
        settings: Settings,
        *,
        model_name: str | None = None,
        vad_filter: bool = DEFAULT_VAD_FILTER,
        suppress_chars: str = WRITTEN_CHINESE_CHARS,
    ) -> None:
        """Wrap an already loaded model.

        Args:
            model: The loaded model (shared, not closed by this backend).
            settings: ``asr_prompt``, ``asr_beam_size``, ``asr_suppress_written``, ``asr_workers``.
            model_name: The name for results and pricing; default from ``settings.asr_model``.
            vad_filter: Drop non-speech with Silero VAD before decoding.
            suppress_chars: With ``settings.asr_suppress_written``, suppress every token
                containing one of these (for experiments; see bench/asr_eval.py).
        """
        self.model = model_name or local_model_name(settings)
        self._whisper: WhisperModel | None = model
        self._vad_filter = vad_filter
        self._slots = asyncio.Semaphore(settings.local_workers)
        # -1 keeps faster-whisper's default suppression (symbols, non-speech tokens).
        self._suppress: list[int] = (
            written_chinese_suppress_tokens(model.hf_tokenizer, suppress_chars)
            if settings.asr_suppress_written
            else [-1]
        )
        self._settings = settings

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalBackend:
        """Assemble and load the configured model (blocking), then wrap it."""
        return cls(load_model(settings), settings)

    @property
    def suppress_tokens(self) -> list[int]:
        """The token ids passed as ``suppress_tokens`` (with -1 for the defaults)."""
        return list(self._suppress)

    async def transcribe(
        self, audio: bytes, *, duration: float, filename: str = "chunk.ogg", prompt: str | None = None
    ) -> AsrResult:
        """Transcribe one chunk in a worker thread.

        Args:
            audio: Compressed audio in any format FFmpeg decodes.
            duration: The chunk's duration in seconds (segment ends are clamped to the audio).
            filename: Unused here; part of the backend interface.
            prompt: The job's own words for the model, added after the deployment's prompt.

        Returns:
            The segments, billed as the seconds of audio decoded.

        Raises:
            PermanentAsrError: The audio cannot be decoded.
            TransientAsrError: The model failed at run time.
        """
        async with self._slots:
            return await asyncio.to_thread(self._transcribe_sync, audio, duration, prompt)

    def _transcribe_sync(self, audio: bytes, duration: float, prompt: str | None = None) -> AsrResult:
        whisper = self._whisper
        if whisper is None:
            raise PermanentAsrError("the local backend is closed", backend=self.name)
        try:
            samples = decode_audio(io.BytesIO(audio))
        except (av.FFmpegError, ValueError, IndexError) as exc:
            raise PermanentAsrError(
                f"cannot decode the audio chunk ({type(exc).__name__}: {exc}): the media is corrupt or not audio",
                backend=self.name,
            ) from exc
        audio_seconds = len(samples) / 16000.0
        if audio_seconds == 0.0:
            return AsrResult(segments=[], billed_seconds=0.0, backend=self.name, model=self.model)
        segments = self._decode_sync(whisper, samples, prompt)
        return AsrResult(segments=segments, billed_seconds=round(audio_seconds, 3), backend=self.name, model=self.model)

    async def decode(
        self, samples: np.ndarray, prompt: str | None = None, *, max_new_tokens: int | None = None
    ) -> list[RawSegment]:
        """Transcribe 16 kHz mono float32 samples in a worker thread (the live policy's decoder).

        Args:
            samples: The audio, already decoded.
            prompt: Words for the model after the deployment's prompt (live: the committed text's tail).
            max_new_tokens: At most this many tokens per 30 s window (None: the model's limit).

        Returns:
            The segments, with word times when ``asr_word_times`` is on, relative to the first sample.

        Raises:
            PermanentAsrError: The backend is closed.
            TransientAsrError: The model failed at run time.
        """
        async with self._slots:
            whisper = self._whisper
            if whisper is None:
                raise PermanentAsrError("the local backend is closed", backend=self.name)
            return await asyncio.to_thread(self._decode_sync, whisper, samples, prompt, max_new_tokens)

    def _decode_sync(
        self, whisper: WhisperModel, samples: np.ndarray, prompt: str | None, max_new_tokens: int | None = None
    ) -> list[RawSegment]:
        audio_seconds = len(samples) / 16000.0
        if audio_seconds == 0.0:
            return []
        started = time.perf_counter()
        try:
            options = self._options(whisper, prompt)
            pieces, _info = whisper.transcribe(samples, **options, max_new_tokens=max_new_tokens)
            # The segments are a lazy generator: decoding happens here, in this thread.
            segments = raw_segments(((p.start, p.end, p.text, _words(p.words)) for p in pieces), audio_seconds)
        except RuntimeError as exc:
            raise TransientAsrError(f"the local model failed: {exc}", backend=self.name) from exc
        logger.debug(
            "local transcription done",
            extra={"audio_s": audio_seconds, "wall_s": time.perf_counter() - started, "segments": len(segments)},
        )
        return segments

    def _options(self, whisper: WhisperModel | None, prompt: str | None) -> dict[str, Any]:
        """``WhisperModel.transcribe``'s options for a chunk of a job with this prompt."""
        count = _token_counter(whisper) if prompt and whisper is not None else None
        options = decode_options(self._settings, self._suppress, prompt, count=count)
        return {"vad_filter": self._vad_filter, "word_timestamps": self._settings.asr_word_times, **options}

    def answer_options(self, prompt: str | None = None) -> dict[str, Any]:
        """The model and every decoding option: what changes the answer to a chunk."""
        return {"model": self.model, "model_path": self._settings.asr_model, **self._options(self._whisper, prompt)}

    async def close(self) -> None:
        """Drop the reference to the model (its memory goes when nobody else holds it)."""
        self._whisper = None


def _words(words: list[Any] | None) -> list[RawWord]:
    """faster-whisper's timed words (each a few tokens: for Chinese, one to a few characters)."""
    return [
        RawWord(text=w.word, start=float(w.start), end=float(w.end), probability=float(w.probability))
        for w in words or ()
    ]


def _token_counter(whisper: WhisperModel) -> Callable[[str], int]:
    """A text's length in the model's tokens, counted as faster-whisper encodes ``initial_prompt``."""
    tokenizer = whisper.hf_tokenizer

    def count(text: str) -> int:
        return len(tokenizer.encode(" " + text.strip(), add_special_tokens=False).ids)

    return count

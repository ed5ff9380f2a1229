"""ASR backends: the local faster-whisper model and the OpenAI transcription API.

Both take one compressed chunk (Ogg/Opus or FLAC bytes) and return its segments with times
relative to the chunk start; the caller adds the chunk offset. Failures come out as
``TransientAsrError`` (retry later) or ``PermanentAsrError`` (give up on this chunk).
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol

import av
import httpx
import openai
from faster_whisper import WhisperModel, decode_audio

from core.messages import RawSegment, Usage
from core.settings import Settings
from transcriber.errors import (
    AsrError,
    BackendConfigError,
    PermanentAsrError,
    TransientAsrError,
)
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


def decode_options(settings: Settings, suppress_tokens: list[int]) -> dict[str, Any]:
    """The ``WhisperModel.transcribe`` options of the local backend (the pipeline bench reuses them)."""
    return {
        "language": "zh",  # Whisper base has no yue token
        "initial_prompt": settings.asr_prompt or None,
        "beam_size": settings.asr_beam_size,
        "condition_on_previous_text": False,
        "suppress_tokens": list(suppress_tokens),  # faster-whisper may extend the list it is given
        "temperature": list(TEMPERATURES),
    }


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

    async def transcribe(self, audio: bytes, *, duration: float, filename: str = "chunk.ogg") -> AsrResult:
        """Transcribe one compressed chunk; raise TransientAsrError or PermanentAsrError."""
        ...

    async def close(self) -> None:
        """Release the backend's resources."""
        ...


def create_backend(settings: Settings, *, http_client: httpx.AsyncClient | None = None) -> AsrBackend:
    """Build the backend named by ``settings.asr_backend``.

    Blocking for the local backend (it assembles and loads the model): call it at start-up
    or through ``asyncio.to_thread``.

    Args:
        settings: The service settings.
        http_client: For the OpenAI backend, an HTTP client to reuse (the caller keeps
            ownership and closes it); ignored by the local backend.

    Returns:
        A ready backend.

    Raises:
        BackendConfigError: The OpenAI backend without an API key.
        ModelError: The local model cannot be assembled or loaded.
    """
    if settings.asr_backend == "openai":
        return OpenAIBackend(settings, http_client=http_client)
    return LocalBackend.from_settings(settings)


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


def local_model_name(settings: Settings) -> str:
    """The name the local model goes by in results and the price table.

    "whisper-base" for the embedded model, else the model folder's name.
    """
    if settings.asr_model == EMBEDDED_MODEL:
        return EMBEDDED_DIR_NAME
    return Path(settings.asr_model).expanduser().name


# --- local faster-whisper ------------------------------------------------------------


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
        self._options = decode_options(settings, self._suppress)

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalBackend:
        """Assemble and load the configured model (blocking), then wrap it."""
        return cls(load_model(settings), settings)

    @property
    def suppress_tokens(self) -> list[int]:
        """The token ids passed as ``suppress_tokens`` (with -1 for the defaults)."""
        return list(self._suppress)

    async def transcribe(self, audio: bytes, *, duration: float, filename: str = "chunk.ogg") -> AsrResult:
        """Transcribe one chunk in a worker thread.

        Args:
            audio: Compressed audio in any format FFmpeg decodes.
            duration: The chunk's duration in seconds (segment ends are clamped to the audio).
            filename: Unused here; part of the backend interface.

        Returns:
            The segments, billed as the seconds of audio decoded.

        Raises:
            PermanentAsrError: The audio cannot be decoded.
            TransientAsrError: The model failed at run time.
        """
        async with self._slots:
            return await asyncio.to_thread(self._transcribe_sync, audio, duration)

    def _transcribe_sync(self, audio: bytes, duration: float) -> AsrResult:
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
        started = time.perf_counter()
        try:
            pieces, _info = whisper.transcribe(samples, vad_filter=self._vad_filter, **self._options)
            # The segments are a lazy generator: decoding happens here, in this thread.
            segments = _raw_segments(((p.start, p.end, p.text) for p in pieces), audio_seconds)
        except RuntimeError as exc:
            raise TransientAsrError(f"the local model failed: {exc}", backend=self.name) from exc
        logger.debug(
            "local transcription done",
            extra={"audio_s": audio_seconds, "wall_s": time.perf_counter() - started, "segments": len(segments)},
        )
        return AsrResult(segments=segments, billed_seconds=round(audio_seconds, 3), backend=self.name, model=self.model)

    async def close(self) -> None:
        """Drop the reference to the model (its memory goes when nobody else holds it)."""
        self._whisper = None


# --- OpenAI API -----------------------------------------------------------------------


def filename_for_codec(codec: str, stem: str = "chunk") -> str:
    """An upload file name whose extension matches ``AudioChunk.codec`` ("opus" or "flac").

    The OpenAI API picks the decoder from the file name's extension.
    """
    return f"{stem}.{'ogg' if codec == 'opus' else codec}"


def json_only_model(model: str) -> bool:
    """Whether an OpenAI transcription model answers only ``json`` (no segments or timestamps).

    whisper-1 (and OpenAI-compatible Whisper servers) give ``verbose_json`` with segments;
    the gpt-*-transcribe family gives ``json`` text only.
    """
    return model.startswith("gpt-")


class OpenAIBackend:
    """OpenAI's ``audio/transcriptions`` endpoint (or any server speaking it).

    No retries here (``max_retries=0``): the work queue retries with backoff, guided by
    ``TransientAsrError.retry_after``.
    """

    name = "openai"

    def __init__(self, settings: Settings, *, http_client: httpx.AsyncClient | None = None) -> None:
        """Make the API client.

        Args:
            settings: ``openai_api_key``, ``openai_base_url``, ``openai_model``,
                ``openai_timeout_s``, ``asr_prompt``.
            http_client: An HTTP client to reuse; the caller keeps ownership and closes it.

        Raises:
            BackendConfigError: No API key while talking to OpenAI itself.
        """
        if not settings.openai_api_key and not settings.openai_base_url:
            raise BackendConfigError(
                "the OpenAI backend needs an API key: set SCRIBE_OPENAI_API_KEY (or use SCRIBE_ASR_BACKEND=local)",
                setting="SCRIBE_OPENAI_API_KEY",
            )
        self.model = settings.openai_model
        self._prompt = settings.asr_prompt
        self._timeout = settings.openai_timeout_s
        self._owns_http_client = http_client is None
        kwargs: dict[str, Any] = {}
        if http_client is not None:
            # openai>=2 is typed for httpx2 clients but accepts httpx ones at run time.
            kwargs["http_client"] = http_client
        self._client = openai.AsyncOpenAI(
            api_key=settings.openai_api_key or "none",
            base_url=settings.openai_base_url or None,
            timeout=settings.openai_timeout_s,
            max_retries=0,
            **kwargs,
        )

    async def transcribe(self, audio: bytes, *, duration: float, filename: str = "chunk.ogg") -> AsrResult:
        """Send one chunk to the API.

        Args:
            audio: Compressed audio (at most 25 MB).
            duration: The chunk's duration in seconds (used for billing and, with json-only
                models, as the single segment's span).
            filename: The upload's file name; its extension tells the API the format.

        Returns:
            The segments (one spanning the chunk for json-only models) and the billed seconds.

        Raises:
            TransientAsrError: Rate limit, 5xx, timeout or connection failure.
            PermanentAsrError: Rejected key, bad request, unknown model, file too large.
        """
        extra: dict[str, Any] = {}
        if self._prompt:
            extra["prompt"] = self._prompt
        if json_only_model(self.model):
            extra["response_format"] = "json"
        else:
            extra["response_format"] = "verbose_json"
            extra["timestamp_granularities"] = ["segment"]
        try:
            response: Any = await self._client.audio.transcriptions.create(
                model=self.model, file=(filename, audio), language="zh", **extra
            )
        except openai.OpenAIError as exc:
            raise self._map_error(exc) from exc
        usage = getattr(response, "usage", None)
        reported = usage.seconds if usage is not None and getattr(usage, "type", None) == "duration" else None
        billed = _billed_seconds(reported if reported is not None else duration)
        segments_in = getattr(response, "segments", None)
        raw: Iterable[tuple[float, float, str]]
        if segments_in is not None:
            raw = ((s.start, s.end, s.text) for s in segments_in)
        else:
            raw = [(0.0, duration, response.text)]
        return AsrResult(
            segments=_raw_segments(raw, duration), billed_seconds=billed, backend=self.name, model=self.model
        )

    def _map_error(self, exc: openai.OpenAIError) -> AsrError:
        return map_openai_error(exc, model=self.model, timeout_s=self._timeout)

    async def close(self) -> None:
        """Close the API client, unless its HTTP client belongs to the caller."""
        if self._owns_http_client:
            await self._client.close()


def map_openai_error(exc: openai.OpenAIError, *, model: str = "", timeout_s: float | None = None) -> AsrError:
    """Turn an openai-python exception into a transient or permanent ASR error, by type.

    Args:
        exc: The exception raised by the client.
        model: The model asked for (for the reason text).
        timeout_s: The configured timeout (for the reason text).

    Returns:
        The error to raise.
    """
    backend = "openai"
    if isinstance(exc, openai.APITimeoutError):
        return TransientAsrError(
            f"OpenAI did not answer within {timeout_s}s (SCRIBE_OPENAI_TIMEOUT_S)", None, backend=backend
        )
    if isinstance(exc, openai.APIConnectionError):
        return TransientAsrError(f"cannot reach the OpenAI API: {exc.message}", None, backend=backend)
    if not isinstance(exc, openai.APIStatusError):
        return PermanentAsrError(f"unexpected OpenAI client error ({type(exc).__name__}): {exc}", backend=backend)
    status = exc.status_code
    detail = _api_message(exc)
    retry_after = _retry_after(exc.response.headers)
    if isinstance(exc, openai.RateLimitError):
        if exc.code == "insufficient_quota":
            return PermanentAsrError(
                "OpenAI account has no quota left (429 insufficient_quota): add credit or use SCRIBE_ASR_BACKEND=local",
                backend=backend,
                status_code=status,
            )
        return TransientAsrError(f"OpenAI rate limit (429): {detail}", retry_after, backend=backend, status_code=status)
    if isinstance(exc, openai.InternalServerError) or status >= 500:
        return TransientAsrError(
            f"OpenAI server error ({status}): {detail}", retry_after, backend=backend, status_code=status
        )
    if status in (408, 409):  # request timeout, lock conflict: openai-python itself retries these
        return TransientAsrError(
            f"OpenAI asked to retry ({status}): {detail}", retry_after, backend=backend, status_code=status
        )
    if isinstance(exc, openai.AuthenticationError):
        reason = f"OpenAI rejected the API key (401): set SCRIBE_OPENAI_API_KEY ({detail})"
    elif isinstance(exc, openai.PermissionDeniedError):
        reason = f"OpenAI refused access (403): the key's project cannot use {model!r} from here ({detail})"
    elif isinstance(exc, openai.NotFoundError):
        reason = f"OpenAI does not know model {model!r} (404): set SCRIBE_OPENAI_MODEL ({detail})"
    elif status == 413:
        reason = f"the audio chunk is too large for OpenAI (413, 25 MB limit): use shorter chunks ({detail})"
    elif isinstance(exc, openai.BadRequestError):
        reason = f"OpenAI rejected the request (400): {detail}"
    else:
        reason = f"OpenAI rejected the request ({status}): {detail}"
    return PermanentAsrError(reason, backend=backend, status_code=status)


# --- helpers -------------------------------------------------------------------------


def _raw_segments(pieces: Iterable[tuple[float, float, str]], limit: float) -> list[RawSegment]:
    """Strip texts, drop empty ones, clamp times into [0, limit] (when limit > 0)."""
    out: list[RawSegment] = []
    for start, end, text in pieces:
        text = text.strip()
        if not text:
            continue
        start, end = max(0.0, float(start)), max(0.0, float(end))
        if limit > 0:
            start, end = min(start, limit), min(end, limit)
        out.append(RawSegment(start=round(start, 3), end=round(max(start, end), 3), text=text))
    return out


def _billed_seconds(seconds: float) -> float:
    # OpenAI bills audio "rounded to the nearest second"; a call is never free.
    return float(max(1, math.floor(seconds + 0.5)))


def _api_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return str(body) if body else f"HTTP {exc.status_code}"


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())

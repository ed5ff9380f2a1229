"""The OpenAI backend: OpenAI's ``audio/transcriptions`` endpoint (or any server speaking it)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import openai

from core.messages import RawWord
from core.settings import Settings
from transcriber.asr import AsrResult, Piece, combined_prompt, raw_segments
from transcriber.errors import AsrError, BackendConfigError, PermanentAsrError, TransientAsrError
from transcriber.placement import PLACEMENT_VERSION, place
from transcriber.speech import speech_regions


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

    async def transcribe(
        self, audio: bytes, *, duration: float, filename: str = "chunk.ogg", prompt: str | None = None
    ) -> AsrResult:
        """Send one chunk to the API.

        Args:
            audio: Compressed audio (at most 25 MB).
            duration: The chunk's duration in seconds (used for billing and, with json-only
                models, as the span their sentences are placed in).
            filename: The upload's file name; its extension tells the API the format.
            prompt: The job's own words for the model, added after the deployment's prompt.

        Returns:
            The segments and the billed seconds. A json-only model's text comes back one segment
            per sentence, placed on the speech Silero VAD finds in ``audio``
            (:mod:`transcriber.placement`).

        Raises:
            TransientAsrError: Rate limit, 5xx, timeout or connection failure.
            PermanentAsrError: Rejected key, bad request, unknown model, file too large.
        """
        try:
            response: Any = await self._client.audio.transcriptions.create(
                model=self.model, file=(filename, audio), **self._request(prompt)
            )
        except openai.OpenAIError as exc:
            raise self._map_error(exc) from exc
        usage = getattr(response, "usage", None)
        reported = usage.seconds if usage is not None and getattr(usage, "type", None) == "duration" else None
        billed = _billed_seconds(reported if reported is not None else duration)
        segments_in = getattr(response, "segments", None)
        raw: Iterable[Piece]
        if segments_in is not None:
            words = [RawWord(text=w.word, start=w.start, end=w.end) for w in getattr(response, "words", None) or ()]
            raw = ((s.start, s.end, s.text, _within(words, s.start, s.end)) for s in segments_in)
        elif response.text.strip():
            raw = await asyncio.to_thread(_placed, response.text, audio, duration)
        else:
            raw = []
        return AsrResult(
            segments=raw_segments(raw, duration), billed_seconds=billed, backend=self.name, model=self.model
        )

    def _request(self, prompt: str | None) -> dict[str, Any]:
        """The request's fields besides the model and the file."""
        request: dict[str, Any] = {"language": "zh"}
        # whisper-1 reads only the last 224 prompt tokens. Each of its (byte-level) tokens covers at
        # least one byte, so counting UTF-8 bytes never undercounts: the Cantonese prompt stays read.
        count = None if json_only_model(self.model) else _utf8_bytes
        if combined := combined_prompt(self._prompt, prompt, count=count):
            request["prompt"] = combined
        if json_only_model(self.model):
            request["response_format"] = "json"
        else:
            request["response_format"] = "verbose_json"
            request["timestamp_granularities"] = ["segment", "word"]
        return request

    def answer_options(self, prompt: str | None = None) -> dict[str, Any]:
        """What the request sends besides the audio, and where: what changes the answer to a chunk.

        For a json-only model also the version of the placement that times its text.
        """
        placed = {"placement": PLACEMENT_VERSION} if json_only_model(self.model) else {}
        return {"model": self.model, "base_url": str(self._client.base_url), **self._request(prompt), **placed}

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


def _placed(text: str, audio: bytes, duration: float) -> list[Piece]:
    """A json-only model's text placed on the chunk's speech (blocking: decoding, VAD, placement)."""
    return place(text, speech_regions(audio) or (), duration)


def _within(words: list[RawWord], start: float, end: float) -> list[RawWord]:
    """The words of one segment: OpenAI lists the words of the whole chunk apart from its segments."""
    return [w for w in words if start - 0.01 <= (w.start + w.end) / 2 <= end + 0.01]


def _utf8_bytes(text: str) -> int:
    """An upper bound of a text's Whisper tokens, with the space the model puts before a prompt."""
    return len(text.encode()) + 1


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

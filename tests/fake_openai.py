"""A FAKE of OpenAI's paid audio transcription API, for tests: a real local HTTP server.

The paid OpenAI API is the one thing this project may fake (it cannot be reached from
here). This server speaks its wire protocol at the HTTP boundary, so the real
openai-python client, httpx and our backend run unchanged against it:

- ``POST /v1/audio/transcriptions`` (multipart: ``file``, ``model``, ``language``,
  ``prompt``, ``response_format``, ``timestamp_granularities[]``), Bearer key checked.
- Answers come from the REAL local faster-whisper model, so texts and timestamps are real:
  ``verbose_json`` (``task``, ``language``, ``duration``, ``text``, ``segments``, ``usage``)
  for whisper-1, ``json`` (``text``, ``usage``) for every model; gpt-* models reject
  ``verbose_json`` with 400 as OpenAI does.
- Errors use OpenAI's JSON shape ``{"error": {"message", "type", "param", "code"}}``.
- ``fail_next(kind, count)`` makes the next requests answer 429 (with Retry-After), 500,
  400, or hang until the client gives up (for timeouts).

Usage::

    with FakeOpenAITranscriptionServer(whisper_model_for_tests()) as fake_openai:
        settings = Settings(asr_backend="openai", openai_base_url=fake_openai.base_url,
                            openai_api_key=fake_openai.api_key)
"""

from __future__ import annotations

import email.parser
import email.policy
import functools
import io
import json
import math
import os
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import av
import numpy as np
from faster_whisper import WhisperModel, decode_audio

from core.settings import Settings
from tests.paths import REPO
from transcriber.model import load_model

FailureKind = Literal["rate_limit", "server_error", "bad_request", "hang"]

FAKE_OPENAI_API_KEY = "sk-fake-openai-test-key"
TRANSCRIPTION_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
# OpenAI reports the detected language by name in verbose_json.
_LANGUAGE_NAMES = {"zh": "chinese", "yue": "cantonese", "en": "english"}


@functools.cache
def whisper_model_for_tests() -> WhisperModel:
    """The real embedded Whisper base model, loaded once per test process.

    Assembled into ``$SCRIBE_TEST_DATA_DIR`` (default ``<repo>/.scribe/test-data``, git-ignored)
    so later test runs reuse the joined file; two threads, as on the CI machines.
    """
    data_dir = Path(os.environ.get("SCRIBE_TEST_DATA_DIR", REPO / ".scribe" / "test-data"))
    return load_model(Settings(data_dir=data_dir, asr_threads=2, asr_workers=1))


def encode_ogg_opus(path: Path, *, max_seconds: float | None = None) -> tuple[bytes, float]:
    """Encode an audio file as a chunk like the streamer's: Ogg/Opus, 16 kHz mono.

    Args:
        path: Any audio file FFmpeg reads.
        max_seconds: Keep only the first seconds.

    Returns:
        The Ogg bytes and the duration in seconds.
    """
    samples = decode_audio(str(path))
    if max_seconds is not None:
        samples = samples[: int(max_seconds * 16000)]
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
    frame.sample_rate = 16000
    buf = io.BytesIO()
    with av.open(buf, "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=16000, layout="mono")
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue(), len(samples) / 16000.0


@dataclass
class FakeOpenAIRequest:
    """What one request to the fake carried (for assertions)."""

    path: str
    authorized: bool
    fields: dict[str, str] = field(default_factory=dict)
    timestamp_granularities: list[str] = field(default_factory=list)
    filename: str | None = None
    file_size: int = 0
    status: int = 0


class FakeOpenAITranscriptionServer:
    """A local HTTP server that FAKES OpenAI's audio transcription endpoint (see module doc)."""

    def __init__(
        self,
        model: WhisperModel,
        *,
        api_key: str = FAKE_OPENAI_API_KEY,
        host: str = "127.0.0.1",
        beam_size: int = 1,
        hang_limit_s: float = 60.0,
    ) -> None:
        """Prepare the fake; ``start()`` (or ``with``) binds a free port.

        Args:
            model: The real faster-whisper model that produces the answers.
            api_key: The only Bearer key accepted.
            host: Interface to listen on.
            beam_size: Beam size of the fake's decoding (1 keeps tests fast).
            hang_limit_s: How long a "hang" failure holds a request at most.
        """
        self.model = model
        self.api_key = api_key
        self.beam_size = beam_size
        self.hang_limit_s = hang_limit_s
        self.requests: list[FakeOpenAIRequest] = []
        self._failures: deque[tuple[FailureKind, float]] = deque()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._httpd = _FakeHTTPServer((host, 0), _Handler, self)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The ``base_url`` for ``openai.AsyncOpenAI`` (ends in ``/v1``)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def settings_for(self, settings: Settings, **changes: Any) -> Settings:
        """``settings`` with the openai backend pointed at this fake (and ``changes``)."""
        return settings.with_(
            asr_backend="openai", openai_base_url=self.base_url, openai_api_key=self.api_key, **changes
        )

    def start(self) -> FakeOpenAITranscriptionServer:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release hanging requests, stop serving and close the socket."""
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAITranscriptionServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def fail_next(self, kind: FailureKind, count: int = 1, *, retry_after: float = 2.0) -> None:
        """Make the next ``count`` transcription requests fail.

        Args:
            kind: "rate_limit" (429 with Retry-After), "server_error" (500), "bad_request"
                (400 unsupported file) or "hang" (no answer until the client gives up).
            count: How many requests.
            retry_after: Seconds sent in the Retry-After header of a 429.
        """
        with self._lock:
            self._failures.extend([(kind, retry_after)] * count)

    def reset(self) -> None:
        """Forget queued failures and recorded requests."""
        with self._lock:
            self._failures.clear()
            self.requests.clear()

    def _next_failure(self) -> tuple[FailureKind, float] | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def _record(self, request: FakeOpenAIRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _transcribe(
        self,
        audio: bytes,
        *,
        model: str,
        language: str | None,
        prompt: str | None,
        verbose: bool,
        words: bool = False,
    ) -> Any:
        samples = decode_audio(io.BytesIO(audio))
        duration = len(samples) / 16000.0
        pieces, info = self.model.transcribe(
            samples,
            language=language or None,
            initial_prompt=prompt or None,
            beam_size=self.beam_size,
            condition_on_previous_text=False,
            word_timestamps=words,
        )
        segments = list(pieces)
        text = "".join(s.text for s in segments).strip()
        # OpenAI bills whisper-1 per second, "rounded to the nearest second".
        billed = {"type": "duration", "seconds": max(1, math.floor(duration + 0.5))}
        if not verbose:
            return {"text": text, "usage": billed}
        return {
            "task": "transcribe",
            "language": _LANGUAGE_NAMES.get(info.language, info.language),
            "duration": round(duration, 2),
            "text": text,
            "segments": [
                {
                    "id": s.id - 1,
                    "seek": s.seek,
                    "start": s.start,
                    "end": s.end,
                    "text": s.text,
                    "tokens": list(s.tokens),
                    "temperature": s.temperature,
                    "avg_logprob": s.avg_logprob,
                    "compression_ratio": s.compression_ratio,
                    "no_speech_prob": s.no_speech_prob,
                }
                for s in segments
            ],
            # OpenAI lists the words of the whole file apart from the segments, with no probability.
            **(
                {"words": [{"word": w.word, "start": w.start, "end": w.end} for s in segments for w in s.words or ()]}
                if words
                else {}
            ),
            "usage": billed,
        }


class _FakeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: Any) -> None:
        super().__init__(address, handler)
        self.fake: FakeOpenAITranscriptionServer = fake


def _error(message: str, type_: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FakeHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def do_POST(self) -> None:
        fake = self.server.fake
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        authorized = self.headers.get("Authorization", "") == f"Bearer {fake.api_key}"
        record = FakeOpenAIRequest(path=self.path, authorized=authorized)
        try:
            status, payload, headers = self._answer(fake, body, record)
        except Exception as exc:  # the fake must answer like a server, never drop the socket
            status, payload, headers = 500, _error(f"fake server bug: {exc!r}", "server_error"), {}
        record.status = status
        fake._record(record)
        if status == 0:  # hang: the client has given up; nothing sensible to write
            self.close_connection = True
            return
        self._send_json(status, payload, headers)

    def _answer(
        self, fake: FakeOpenAITranscriptionServer, body: bytes, record: FakeOpenAIRequest
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self.path.rstrip("/") != "/v1/audio/transcriptions":
            return 404, _error(f"Invalid URL (POST {self.path})", "invalid_request_error"), {}
        if not record.authorized:
            given = self.headers.get("Authorization", "").removeprefix("Bearer ")
            return (
                401,
                _error(
                    f"Incorrect API key provided: {given[:8]}****. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    code="invalid_api_key",
                ),
                {},
            )
        audio = self._parse_multipart(body, record)
        failure = fake._next_failure()
        if failure is not None:
            kind, retry_after = failure
            if kind == "rate_limit":
                return (
                    429,
                    _error(
                        "Rate limit reached for whisper-1 in organization org-fake on requests per min (RPM).",
                        "requests",
                        code="rate_limit_exceeded",
                    ),
                    {"Retry-After": f"{retry_after:g}", "x-ratelimit-remaining-requests": "0"},
                )
            if kind == "server_error":
                return (
                    500,
                    _error("The server had an error while processing your request. Sorry about that!", "server_error"),
                    {},
                )
            if kind == "bad_request":
                return 400, _unsupported_file(), {}
            fake._release.wait(fake.hang_limit_s)
            return 0, {}, {}
        model = record.fields.get("model", "")
        fmt = record.fields.get("response_format", "json")
        if record.filename is None:
            return 400, _error("you must provide a file", "invalid_request_error", param="file"), {}
        if model not in TRANSCRIPTION_MODELS:
            return (
                404,
                _error(f"The model `{model}` does not exist.", "invalid_request_error", code="model_not_found"),
                {},
            )
        if fmt not in ("json", "verbose_json"):
            return 400, _error(f"fake supports json and verbose_json, not {fmt}", "invalid_request_error"), {}
        if fmt == "verbose_json" and model != "whisper-1":
            return (
                400,
                _error(
                    f"response_format 'verbose_json' is not compatible with model '{model}'. Use 'json' or 'text'.",
                    "invalid_request_error",
                    param="response_format",
                    code="unsupported_value",
                ),
                {},
            )
        try:
            payload = fake._transcribe(
                audio,
                model=model,
                language=record.fields.get("language"),
                prompt=record.fields.get("prompt"),
                verbose=fmt == "verbose_json",
                words=fmt == "verbose_json" and "word" in record.timestamp_granularities,
            )
        except (ValueError, IndexError, OSError):  # PyAV: not audio, corrupt, no audio stream
            return 400, _unsupported_file(), {}
        return 200, payload, {}

    def _parse_multipart(self, body: bytes, record: FakeOpenAIRequest) -> bytes:
        """Fill ``record`` from the form fields; return the uploaded file's bytes."""
        audio = b""
        head = f"Content-Type: {self.headers.get('Content-Type', '')}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        if not message.is_multipart():
            return audio
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            data = part.get_payload(decode=True) or b""
            if not isinstance(name, str) or not isinstance(data, bytes):
                continue
            if name == "file":
                record.filename = part.get_filename() or "file"
                record.file_size = len(data)
                audio = data
            elif name == "timestamp_granularities[]":
                record.timestamp_granularities.append(data.decode())
            else:
                record.fields[name] = data.decode()
        return audio

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_fake_{uuid.uuid4().hex[:16]}")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


def _unsupported_file() -> dict[str, Any]:
    return _error(
        "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', "
        "'wav', 'webm']",
        "invalid_request_error",
        code="invalid_value",
    )

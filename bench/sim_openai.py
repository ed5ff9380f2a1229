"""A SIMULATION of OpenAI's paid audio transcription API, for benchmarks: canned text, a set delay, a cap.

This is not OpenAI and not the test fake (``tests/fake_openai.py`` answers with the real local
model). It answers every request with canned Cantonese text after ``delay_s`` seconds, so what the
pipeline sends, what it would be billed and how busy it keeps the API can be measured without an
account, without money and without a model:

- ``POST /v1/audio/transcriptions``, multipart (``file``, ``model``, ``language``, ``prompt``,
  ``response_format``, ``timestamp_granularities[]``), any Bearer key. ``verbose_json`` (whisper-1)
  has a few segments spanning the audio, and per-character ``words`` when asked for; ``json`` (the
  only format of the gpt-4o models, which refuse ``verbose_json`` with 400 as OpenAI does) has the
  text. Both carry ``usage: {"type": "duration", "seconds": N}``.
- Billing as OpenAI bills audio: the upload's duration, decoded with PyAV, rounded to the nearest
  second, at least 1; only answered requests are billed.
- At most ``limit`` requests in flight: one more is answered at once with 429, ``Retry-After`` and
  OpenAI's error JSON (``{"error": {"message", "type", "param", "code"}}``).
- Every request is recorded (:class:`Call`): when, the file name (the transcriber names it after the
  job and chunk), audio and billed seconds, status. ``GET /sim/stats`` gives the counts as JSON.

One thread per request (``ThreadingHTTPServer``), so 32 and more slow requests wait side by side.
In a bench::

    with SimulatedOpenAI(delay_s=5.0, limit=16) as sim:
        env["SCRIBE_OPENAI_BASE_URL"] = sim.base_url
        ...
        counts = sim.counts(since)

Alone, printing the counts on Ctrl-C or SIGTERM::

    .venv/bin/python -m bench.sim_openai --port 8090 --delay 5 --limit 16
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import re
import signal
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import av

MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
SEGMENT_S = 5.0  # about one canned sentence per 5 s of audio, up to MAX_SEGMENTS
MAX_SEGMENTS = 4
# Spoken Cantonese in Traditional characters, as a council meeting might go; cycled over the answers.
SENTENCES = (
    "各位委員早晨，我哋而家開始今日嘅會議。",
    "主席，我想跟進一下上次會議提出嘅問題。",
    "呢個項目嘅預算已經超出咗原本嘅估計。",
    "我哋會喺下個月向委員會提交詳細嘅報告。",
    "有冇委員想就呢個議題發言？",
    "多謝主席，我同意秘書處嘅建議。",
    "不過我想問下，時間表係咪可以再提早啲？",
    "我哋明白大家嘅關注，會盡快處理。",
    "居民反映話夜晚啲噪音好大。",
    "我建議同有關部門再傾下。",
    "呢度嘅交通問題一直都好嚴重。",
    "好，如果冇其他問題，我哋進入下一個議程。",
)
PUNCTUATION = frozenset("，。？！、：；")
_BOUNDARY = re.compile(r"boundary=(\"[^\"]+\"|[^;\s]+)", re.IGNORECASE)
_NAME = re.compile(r';\s*name="([^"]*)"')
_FILENAME = re.compile(r';\s*filename="([^"]*)"')
UNSUPPORTED_FILE = (
    "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']"
)


@dataclass(frozen=True)
class Call:
    """One request as the simulation saw it.

    Attributes:
        started: ``time.monotonic()`` when its body had arrived.
        ended: When it was answered.
        filename: The upload's file name (the transcriber's is ``<job>-<seq>.<ext>``).
        status: 200, 429, or the error answered.
        audio_s: The upload's decoded duration (0 when not decoded).
        billed_s: What OpenAI would bill for it (0 unless answered 200).
        size: The upload's bytes.
    """

    started: float
    ended: float
    filename: str
    status: int
    audio_s: float
    billed_s: float
    size: int = 0

    @property
    def job_id(self) -> str:
        """The job the transcriber named the upload after (``<job>-<seq>.<ext>``)."""
        return self.filename.rsplit(".", 1)[0].rsplit("-", 1)[0]


@dataclass
class Counts:
    """What the simulation counted over some calls.

    Attributes:
        requests: Requests received.
        answered: Answered 200 (billed).
        rejected: Answered 429 (over the limit).
        errors: Answered another error.
        peak_in_flight: The most requests held at once.
        billed_s: Seconds billed, as OpenAI bills them.
        audio_s: Seconds of audio in the answered uploads.
        bytes: Bytes of the answered uploads.
        jobs: The jobs the requests were for (from their file names).
    """

    requests: int = 0
    answered: int = 0
    rejected: int = 0
    errors: int = 0
    peak_in_flight: int = 0
    billed_s: float = 0.0
    audio_s: float = 0.0
    bytes: int = 0
    jobs: set[str] = field(default_factory=set)


class SimulatedOpenAI:
    """A local HTTP server SIMULATING OpenAI's transcription endpoint (see the module's docstring).

    Args:
        delay_s: How long each answered request is held before its answer.
        limit: Requests in flight at most; one more is answered 429 at once. None: no limit.
        retry_after_s: The ``Retry-After`` of a 429.
        host: The interface to listen on.
        port: The port (0: a free one).
    """

    def __init__(
        self,
        *,
        delay_s: float = 5.0,
        limit: int | None = None,
        retry_after_s: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.delay_s = delay_s
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.calls: list[Call] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sentences = itertools.cycle(SENTENCES)
        self._httpd = _Server((host, port), _Handler, self)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``SCRIBE_OPENAI_BASE_URL`` for this server (ends in ``/v1``)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> SimulatedOpenAI:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="sim-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release the requests being held, stop serving and close the socket."""
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SimulatedOpenAI:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def mark(self) -> int:
        """A mark for :meth:`counts`: the calls from now on; the peak in flight starts again from now."""
        with self._lock:
            self.peak_in_flight = self.in_flight
            return len(self.calls)

    def counts(self, since: int = 0, *, job_ids: set[str] | None = None) -> Counts:
        """The counts of the calls after ``since`` (a :meth:`mark`), of ``job_ids`` only when given.

        The peak in flight is over all requests since the last mark, whichever job made them.
        """
        with self._lock:
            calls, peak = self.calls[since:], self.peak_in_flight
        counts = Counts(peak_in_flight=peak)
        for call in calls:
            if job_ids is not None and call.job_id not in job_ids:
                continue
            counts.requests += 1
            counts.answered += call.status == 200
            counts.rejected += call.status == 429
            counts.errors += call.status not in (200, 429)
            counts.billed_s += call.billed_s
            counts.audio_s += call.audio_s
            counts.bytes += call.size if call.status == 200 else 0
            counts.jobs.add(call.job_id)
        return counts

    def mean_in_flight(self, since: int, start: float, end: float) -> float:
        """Answered requests in flight on average between two ``time.monotonic()`` readings."""
        with self._lock:
            calls = [c for c in self.calls[since:] if c.status == 200]
        busy = sum(max(0.0, min(c.ended, end) - max(c.started, start)) for c in calls)
        return busy / (end - start) if end > start else 0.0

    # --- the handler's side ----------------------------------------------------------------------

    def enter(self) -> bool:
        """Take a place in flight; False when the limit is reached (the request gets a 429)."""
        with self._lock:
            if self.limit is not None and self.in_flight >= self.limit:
                return False
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            return True

    def leave(self, call: Call) -> None:
        with self._lock:
            self.in_flight -= 1
            self.calls.append(call)

    def record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def hold(self) -> None:
        """Wait out the simulated call (at once when the server stops)."""
        self._stopping.wait(self.delay_s)

    def sentence(self) -> str:
        with self._lock:
            return next(self._sentences)

    def stats(self) -> dict[str, Any]:
        """Every count so far, for ``GET /sim/stats``."""
        counts = self.counts()
        return {**asdict(counts), "jobs": len(counts.jobs), "in_flight": self.in_flight, "limit": self.limit}


def audio_seconds(data: bytes) -> float:
    """The duration of an uploaded audio file, decoded with PyAV (ValueError when it is not audio)."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise ValueError("no audio stream")
            seconds = 0.0
            for frame in container.decode(audio=0):
                seconds += frame.samples / frame.sample_rate
            return seconds
    except av.FFmpegError as exc:
        raise ValueError(str(exc)) from exc


def billed_seconds(seconds: float) -> float:
    """What OpenAI bills for audio of ``seconds``: rounded to the nearest second, at least one."""
    return float(max(1, math.floor(seconds + 0.5)))


def canned_answer(sim: SimulatedOpenAI, duration: float, *, verbose: bool, words: bool) -> dict[str, Any]:
    """The answer for an upload of ``duration`` seconds: a canned sentence per segment, segments spanning it."""
    count = max(1, min(MAX_SEGMENTS, round(duration / SEGMENT_S)))
    edges = [duration * i / count for i in range(count + 1)]
    texts = [sim.sentence() for _ in range(count)]
    usage = {"type": "duration", "seconds": int(billed_seconds(duration))}
    if not verbose:
        return {"text": "".join(texts), "usage": usage}
    segments: list[dict[str, Any]] = [
        {
            "id": i,
            "seek": 0,
            "start": round(edges[i], 2),
            "end": round(edges[i + 1], 2),
            "text": text,
            "tokens": [],
            "temperature": 0.0,
            "avg_logprob": -0.25,
            "compression_ratio": 1.1,
            "no_speech_prob": 0.01,
        }
        for i, text in enumerate(texts)
    ]
    answer: dict[str, Any] = {
        "task": "transcribe",
        "language": "chinese",
        "duration": round(duration, 2),
        "text": "".join(texts),
        "segments": segments,
    }
    if words:
        answer["words"] = [w for s in segments for w in _words(s["text"], s["start"], s["end"])]
    return answer | {"usage": usage}


def _words(text: str, start: float, end: float) -> list[dict[str, Any]]:
    """A segment's characters as words evenly over its time, punctuation kept with the character before it."""
    pieces: list[str] = []
    for char in text:
        if char in PUNCTUATION and pieces:
            pieces[-1] += char
        else:
            pieces.append(char)
    step = (end - start) / max(1, len(pieces))
    return [
        {"word": p, "start": round(start + i * step, 2), "end": round(start + (i + 1) * step, 2)}
        for i, p in enumerate(pieces)
    ]


def error(message: str, type_: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def parse_form(content_type: str, body: bytes) -> tuple[dict[str, list[str]], tuple[str, bytes] | None]:
    """A multipart form: its text fields (each name's values) and its ``file`` part (name, bytes), if any.

    Split on the boundary rather than read by ``email.parser``, which takes about 12 ms of CPU for a
    chunk's upload, in a process that answers 32 of them at once.
    """
    fields: dict[str, list[str]] = {}
    upload = None
    boundary = _BOUNDARY.search(content_type)
    if not content_type.lower().startswith("multipart/form-data") or boundary is None:
        return fields, upload
    delimiter = b"--" + boundary.group(1).strip('"').encode()
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):  # the closing delimiter
            break
        head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        data = data.removesuffix(b"\r\n")
        disposition = next(
            (line for line in head.decode("utf-8", "replace").split("\r\n") if line.lower().startswith("content-disp")),
            "",
        )
        name, filename = _NAME.search(disposition), _FILENAME.search(disposition)
        if name is None:
            continue
        if name.group(1) == "file":
            upload = (filename.group(1) if filename else "file", data)
        else:
            fields.setdefault(name.group(1), []).append(data.decode("utf-8", "replace"))
    return fields, upload


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256  # many clients connect at once; the default backlog of 5 would delay some by a second

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], sim: SimulatedOpenAI) -> None:
        super().__init__(address, handler)
        self.sim = sim


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a bench prints its own figures

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/sim/stats":
            self._send(200, self.server.sim.stats())
        else:
            self._send(404, error(f"Invalid URL (GET {self.path})", "invalid_request_error"))

    def do_POST(self) -> None:
        sim = self.server.sim
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        started = time.monotonic()
        if self.path.rstrip("/") != "/v1/audio/transcriptions":
            self._send(404, error(f"Invalid URL (POST {self.path})", "invalid_request_error"))
            return
        fields, upload = parse_form(self.headers.get("Content-Type", ""), body)
        filename, size = (upload[0], len(upload[1])) if upload else ("", 0)
        if not sim.enter():
            sim.record(Call(started, time.monotonic(), filename, 429, 0.0, 0.0, size))
            message = (
                f"Rate limit reached for requests in flight (simulated limit {sim.limit}): "
                "please try again after the time in Retry-After."
            )
            headers = {"Retry-After": f"{sim.retry_after_s:g}", "x-ratelimit-remaining-requests": "0"}
            self._send(429, error(message, "requests", code="rate_limit_exceeded"), headers)
            return
        status, seconds = 500, 0.0
        try:
            status, payload, seconds = self._answer(fields, upload)
            if status == 200:
                sim.hold()
            self._send(status, payload)
        finally:
            billed = billed_seconds(seconds) if status == 200 else 0.0
            sim.leave(Call(started, time.monotonic(), filename, status, seconds, billed, size))

    def _answer(
        self, fields: dict[str, list[str]], upload: tuple[str, bytes] | None
    ) -> tuple[int, dict[str, Any], float]:
        """The status, answer and audio seconds of a request in flight (before its delay)."""
        sim = self.server.sim
        model = (fields.get("model") or [""])[0]
        fmt = (fields.get("response_format") or ["json"])[0]
        if upload is None:
            return 400, error("you must provide a file", "invalid_request_error", param="file"), 0.0
        if model not in MODELS:
            message = f"The model `{model}` does not exist."
            return 404, error(message, "invalid_request_error", code="model_not_found"), 0.0
        if fmt not in ("json", "verbose_json"):
            message = f"the simulation answers json and verbose_json, not {fmt}"
            return 400, error(message, "invalid_request_error"), 0.0
        if fmt == "verbose_json" and model != "whisper-1":
            message = f"response_format 'verbose_json' is not compatible with model '{model}'. Use 'json' or 'text'."
            return 400, error(message, "invalid_request_error", param="response_format", code="unsupported_value"), 0.0
        try:
            seconds = audio_seconds(upload[1])
        except ValueError:
            return 400, error(UNSUPPORTED_FILE, "invalid_request_error", code="invalid_value"), 0.0
        words = "word" in fields.get("timestamp_granularities[]", [])
        return 200, canned_answer(sim, seconds, verbose=fmt == "verbose_json", words=words), seconds

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-request-id", f"req_sim_{uuid.uuid4().hex[:16]}")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (its timeout): nothing to answer
            self.close_connection = True


def main(argv: list[str] | None = None) -> None:
    """Serve the simulation until Ctrl-C or SIGTERM, then print its counts."""
    parser = argparse.ArgumentParser(description="A SIMULATION of OpenAI's audio transcription API (canned text).")
    parser.add_argument("--port", type=int, default=8090, help="port on 127.0.0.1 (8090)")
    parser.add_argument("--delay", type=float, default=5.0, help="seconds each answered request is held (5)")
    parser.add_argument("--limit", type=int, help="requests in flight at most; more are answered 429 (no limit)")
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After of a 429, seconds (1)")
    args = parser.parse_args(argv)
    sim = SimulatedOpenAI(delay_s=args.delay, limit=args.limit, retry_after_s=args.retry_after, port=args.port)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    with sim:
        print(f"SIMULATED OpenAI transcription API (canned text, not OpenAI) at {sim.base_url}", flush=True)
        done.wait()
    print(json.dumps(sim.stats()))


if __name__ == "__main__":
    main()

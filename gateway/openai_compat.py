"""OpenAI's transcription API on this service: ``POST /v1/audio/transcriptions`` and ``GET /v1/models``.

Code written for OpenAI (its SDK with ``base_url`` pointing here, or anything that speaks the
same multipart request) gets this service's Cantonese instead, as speaches and WhisperLive do
for theirs. One request is one job: the file is stored and transcribed by the same pipeline as
``POST /v1/jobs``, and the answer comes when the job ends (or, with ``stream=true``, line by line
as server-sent events). A client that goes away first cancels its job, so nothing more is billed.

What differs from OpenAI, on purpose:

- The text is Traditional Chinese as Hong Kong writes it; ``verbose_json`` segments add
  ``jyutping``, ``yale`` and ``chars`` (one reading per character). Whisper's per-segment
  scores (``avg_logprob``, ``compression_ratio``, ``no_speech_prob``, ``tokens``, ``seek``) are not
  kept by the pipeline: they are 0 and ``[]``.
- ``language`` may be Cantonese or Chinese (``yue``, ``zh``, ``zh-HK``, …): anything else is a
  400, since the service transcribes Cantonese only. ``temperature`` is accepted and ignored.
- ``timestamp_granularities[]=word`` adds ``words`` to ``verbose_json``: the lexicon's words (a
  Chinese word is one to four characters, a number is one word) timed from their characters'
  times, as the speech model timed them. With a backend that times no words (OpenAI's gpt-4o
  models, ``SCRIBE_ASR_WORD_TIMES=false``) the list is empty. ``segments`` are always given.
- ``model`` is the model this deployment serves (``GET /v1/models``) or ``whisper-1``, which
  most client code sends, as another name for it.
- ``srt`` and ``vtt`` are subtitles of at most about 18 characters a cue, characters only; a
  ``romanization`` form field (``jyutping``, ``yale``, ``both``) adds reading lines under them.
- ``usage`` is ``{"type": "duration", "seconds"}`` in every answer, the streamed one included.
- Errors keep this API's shape, ``{"error": {"code", "message"}}``; the SDK's exceptions carry
  ``message``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import anyio
import msgspec
from litestar import MediaType, Request, Response, get, post
from litestar.datastructures import State, UploadFile
from litestar.exceptions import HTTPException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)
from litestar.response import ServerSentEvent, ServerSentEventMessage

from core import bus
from core.messages import Cancelled, Char, Failed, Final, JobEvent, JobOptions, Partial, Segment, Transcript
from core.process import Runtime
from core.settings import Settings
from gateway.accounts import account_of
from gateway.errors import ApiError, unavailable
from gateway.openapi import API_KEY, error_responses
from gateway.submit import FORM_OVERHEAD, Submission, file_title, read_form, start_job
from scribe import client
from scribe.formats import render
from store import repo
from transcriber.asr import MAX_JOB_PROMPT

logger = logging.getLogger(__name__)

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
RESPONSE_FORMATS: tuple[str, ...] = get_args(ResponseFormat)
SubtitleReadings = Literal["none", "jyutping", "yale", "both"]
SUBTITLE_READINGS: tuple[str, ...] = get_args(SubtitleReadings)
ALIAS = "whisper-1"
OWNER = "cantonesescribe"
# First subtag of a language tag (zh-HK, yue-Hant, zh_TW): Cantonese, or Chinese as Whisper calls it.
_LANGUAGES = frozenset({"zh", "yue", "cantonese", "chinese"})
_TEXT_MEDIA = {"text": "text/plain", "srt": "application/x-subrip; charset=utf-8", "vtt": "text/vtt"}


# --- answers -----------------------------------------------------------------------------


class DurationUsage(msgspec.Struct):
    """What the request is billed by: seconds of audio, as OpenAI reports it for Whisper."""

    seconds: float
    type: Literal["duration"] = "duration"


class Transcription(msgspec.Struct):
    """``response_format=json``: the whole text."""

    text: str
    usage: DurationUsage


class VerboseSegment(msgspec.Struct):
    """One line with OpenAI's segment fields (the scores the pipeline does not keep are 0 or empty),
    then its readings: ``jyutping``, ``yale`` and one reading per character (``chars``)."""

    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    jyutping: str
    yale: str
    chars: list[Char]


class VerboseWord(msgspec.Struct):
    """``timestamp_granularities[]=word``: a word and when it is spoken."""

    word: str
    start: float
    end: float


class VerboseTranscription(msgspec.Struct, omit_defaults=True):
    """``response_format=verbose_json``: the text, its lines with times and readings, and the duration;
    ``words`` only when asked for."""

    task: Literal["transcribe"]
    language: str
    duration: float
    text: str
    segments: list[VerboseSegment]
    usage: DurationUsage
    words: list[VerboseWord] | None = None


class TextDelta(msgspec.Struct):
    """``stream=true``: a line was committed. ``delta`` is its text (with the space that joins it to
    the text before, if any); ``line`` is the line itself, with its times and readings (ours)."""

    delta: str
    line: Segment
    type: Literal["transcript.text.delta"] = "transcript.text.delta"


class TextDone(msgspec.Struct):
    """``stream=true``: the job is done; ``text`` is the whole text, the deltas joined."""

    text: str
    usage: DurationUsage
    type: Literal["transcript.text.done"] = "transcript.text.done"


class Model(msgspec.Struct):
    """A model ``POST /v1/audio/transcriptions`` takes."""

    id: str
    created: int
    owned_by: str
    object: Literal["model"] = "model"


class ModelList(msgspec.Struct):
    """``GET /v1/models``."""

    data: list[Model]
    object: Literal["list"] = "list"


_EVENTS = ("TextDelta", "TextDone")


def served_model(settings: Settings) -> str:
    """The id of the model this deployment transcribes with (as ``transcriber.local.local_model_name``
    names a local one, without loading the transcriber here)."""
    if settings.asr_backend == "openai":
        return settings.openai_model
    return "whisper-base" if settings.asr_model == "base" else os.path.basename(settings.asr_model.rstrip("/"))


# --- the OpenAPI description ---------------------------------------------------------------


@dataclass
class TranscriptionOperation(Operation):
    """The multipart body is read by hand (Litestar cannot describe it), and the answer comes in the
    format asked for: JSON, text, subtitles or server-sent events."""

    def __post_init__(self) -> None:
        def text(description: str, **extra: Any) -> Schema:
            return Schema(type=OpenAPIType.STRING, description=description, **extra)

        body = Schema(
            type=OpenAPIType.OBJECT,
            required=["file", "model"],
            properties={
                "file": text("The audio or video file.", format=OpenAPIFormat.BINARY),
                "model": text(f"A model from GET /v1/models, or {ALIAS} (another name for it)."),
                "language": text("Cantonese or Chinese: yue, zh, zh-HK, yue-Hant, … (any other is refused)."),
                "prompt": text(
                    "Names and terms that help; added after the service's Cantonese prompt.",
                    max_length=MAX_JOB_PROMPT,
                ),
                "response_format": text("The answer's format.", enum=list(RESPONSE_FORMATS), default="json"),
                "temperature": Schema(type=OpenAPIType.NUMBER, description="Accepted and ignored."),
                "timestamp_granularities[]": Schema(
                    type=OpenAPIType.ARRAY,
                    items=text("segment (always given); word adds `words` to verbose_json.", enum=["segment", "word"]),
                ),
                "stream": Schema(
                    type=OpenAPIType.BOOLEAN,
                    default=False,
                    description="Answer with server-sent events as lines are committed (response_format is ignored).",
                ),
                "romanization": text(
                    "Reading lines under the characters in srt and vtt (ours).", enum=list(SUBTITLE_READINGS)
                ),
            },
        )
        self.request_body = RequestBody(required=True, content={"multipart/form-data": OpenAPIMediaType(schema=body)})
        content = getattr(self.responses and self.responses.get("200"), "content", None)
        if content is not None:
            # The 200's types (see routes) are JSON answers and stream events: each goes to its media type,
            # as anyOf (a verbose_json answer is a json answer too, so oneOf would match neither).
            kinds: dict[bool, list[Any]] = {True: [], False: []}
            for kind in content["application/json"].schema.one_of or []:
                kinds[kind.ref.endswith(_EVENTS)].append(kind)  # Litestar shortens the names later
            content["application/json"] = OpenAPIMediaType(schema=Schema(any_of=kinds[False]))
            content["text/plain"] = OpenAPIMediaType(schema=text("response_format=text: the whole text."))
            content["application/x-subrip"] = OpenAPIMediaType(schema=text("response_format=srt."))
            content["text/vtt"] = OpenAPIMediaType(schema=text("response_format=vtt."))
            event = Schema(
                type=OpenAPIType.OBJECT,
                required=["data"],
                description="One server-sent event: a transcript.text.delta per line, then transcript.text.done "
                '(or an error event whose data is {"error": {"code", "message"}}).',
                properties={
                    "event": text("Absent, or error.", enum=["error"]),
                    "data": text(
                        "A TextDelta or TextDone, or an error, as JSON.",
                        content_media_type="application/json",
                        content_schema=Schema(any_of=[*kinds[True], Reference("#/components/schemas/ErrorBody")]),
                    ),
                },
            )
            content["text/event-stream"] = OpenAPIMediaType(schema=event)


def routes(settings: Settings) -> list[HTTPRouteHandler]:
    """The two endpoints; the upload limit is this deployment's, as for ``POST /v1/jobs``."""
    transcriptions = post(
        "/v1/audio/transcriptions",
        status_code=200,
        operation_class=TranscriptionOperation,
        request_max_body_size=settings.max_upload_bytes + FORM_OVERHEAD,
        responses={
            200: ResponseSpec(  # the stream's events are here for their schemas; TranscriptionOperation sorts them
                data_container=Transcription | VerboseTranscription | TextDelta | TextDone,  # type: ignore[arg-type]
                description="The transcript in the format asked for; with stream=true, server-sent events.",
                generate_examples=False,
            ),
            **error_responses(400, 401, 403, 409, 413, 415, 503),
        },
        security=API_KEY,
        summary="Transcribe a file (OpenAI-compatible)",
    )(create_transcription)
    return [transcriptions, list_models]


@get(
    "/v1/models",
    security=API_KEY,
    responses=error_responses(401),
    summary="The models this deployment serves (OpenAI-compatible)",
)
async def list_models(state: State) -> ModelList:
    """What ``model`` may name in ``POST /v1/audio/transcriptions``: the served model, and ``whisper-1``
    as another name for it."""
    served = served_model(state.rt.settings)
    ids = [served] + ([ALIAS] if served != ALIAS else [])
    return ModelList([Model(id=name, created=0, owned_by=OWNER) for name in ids])


# --- the request ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Asked:
    """What a transcription request asks for, read and checked."""

    response_format: ResponseFormat
    stream: bool
    romanization: SubtitleReadings
    prompt: str | None
    words: bool = False


async def create_transcription(request: Request[Any, Any, Any], state: State) -> Response[Any] | ServerSentEvent:
    """Transcribe the uploaded file, as OpenAI's ``POST /v1/audio/transcriptions`` does (multipart
    ``file``, ``model``, ``language``, ``prompt``, ``response_format``, ``timestamp_granularities[]``,
    ``stream``)."""
    rt: Runtime = state.rt
    if not rt.nc.is_connected:  # fail fast: a publish would wait for its ack until it times out
        raise unavailable()
    if request.content_type[0] != "multipart/form-data":
        raise ApiError(
            415, "unsupported_media_type", 'Send a multipart form (multipart/form-data) with the audio in "file".'
        )
    limit = rt.settings.max_upload_bytes
    too_large = ApiError(413, "too_large", f"The file is larger than the {limit:,} byte limit.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        raise too_large
    try:
        form = await read_form(request)
    except HTTPException as exc:
        if exc.status_code == 413:
            raise too_large from exc
        raise
    try:
        asked = _checked(form, rt.settings)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "bad_request", 'The form has no file in the field "file".')
        size = await asyncio.to_thread(upload.file.seek, 0, os.SEEK_END)
        await asyncio.to_thread(upload.file.seek, 0)
        if size > limit:
            raise too_large
        if size == 0:
            raise ApiError(400, "bad_input", "The uploaded file is empty.")
        # Readings are always made (verbose_json and the stream carry them); the key is not used,
        # so the fingerprint binds nothing.
        options = JobOptions(romanization="both", prompt=asked.prompt)
        submission = Submission("", options, "", file=upload.file, title=file_title(upload.filename))  # type: ignore[arg-type]
        job_id, _ = await start_job(rt, submission, account=account_of(request))
    finally:
        for value in form.values():
            if isinstance(value, UploadFile):
                await value.close()
    logger.info("openai-compatible transcription", extra={"job_id": job_id, "stream": asked.stream})
    if asked.stream:
        return ServerSentEvent(_stream(rt, job_id), headers={"Cache-Control": "no-store"})
    return await _answer(request, rt, job_id, asked)


def _checked(form: Any, settings: Settings) -> Asked:
    """The form's fields, checked as OpenAI's API defines them (plus ``romanization``).

    Raises:
        ApiError: 400 with a sentence saying what to send instead.
    """
    model = str(form.get("model") or "")
    served = served_model(settings)
    if model not in (served, ALIAS):
        raise ApiError(
            400, "model_not_found", f"model must be {served} (or {ALIAS}, another name for it): see GET /v1/models."
        )
    language = str(form.get("language") or "zh")
    if language.lower().replace("_", "-").split("-")[0] not in _LANGUAGES:
        raise ApiError(
            400,
            "unsupported_language",
            f"This service transcribes Cantonese only: language may be yue or zh (or a regional form such as "
            f"zh-HK), or left out; not {language!r}.",
        )
    response_format = str(form.get("response_format") or "json")
    if response_format not in RESPONSE_FORMATS:
        raise ApiError(400, "bad_request", f"response_format must be one of {', '.join(RESPONSE_FORMATS)}.")
    granularities = [str(value) for value in form.getall("timestamp_granularities[]", [])]
    if any(value not in ("segment", "word") for value in granularities):
        raise ApiError(400, "bad_request", "timestamp_granularities[] may be segment or word.")
    prompt = str(form.get("prompt") or "").strip()
    if len(prompt) > MAX_JOB_PROMPT:
        raise ApiError(400, "bad_request", f"prompt may be at most {MAX_JOB_PROMPT} characters.")
    try:
        float(str(form.get("temperature") or "0"))  # accepted, then ignored: the deployment decodes as it does
    except ValueError:
        raise ApiError(400, "bad_request", "temperature must be a number.") from None
    stream = str(form.get("stream") or "false").lower()
    if stream not in ("true", "false"):
        raise ApiError(400, "bad_request", "stream must be true or false.")
    romanization = str(form.get("romanization") or "none")
    if romanization not in SUBTITLE_READINGS:
        raise ApiError(400, "bad_request", f"romanization must be one of {', '.join(SUBTITLE_READINGS)}.")
    words = "word" in granularities
    return Asked(response_format, stream == "true", romanization, prompt or None, words)  # type: ignore[arg-type]


# --- the answer, when the job ends ---------------------------------------------------------


async def _ending(rt: Runtime, job_id: str) -> Final | Failed | Cancelled:
    async with contextlib.aclosing(client.follow(rt.js, job_id)) as events:
        async for event in events:
            if isinstance(event, Final | Failed | Cancelled):
                return event
    raise unavailable("The job's events")  # follow ends only at the end


async def _answer(request: Request[Any, Any, Any], rt: Runtime, job_id: str, asked: Asked) -> Response[Any]:
    """Wait for the job's end (cancelling it if the client leaves first), then answer in the format asked for.

    Raises:
        ApiError: 400 with the reason of a failed job (the input is what failed), 409 for a cancelled one.
    """
    ending = asyncio.create_task(_ending(rt, job_id))
    leaving = asyncio.create_task(_disconnected(request))
    try:
        done, _ = await asyncio.wait((ending, leaving), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (ending, leaving):
            task.cancel()
    if ending not in done:
        await _cancel(rt, job_id)
        raise ApiError(400, "disconnected", "The client went away; the job was cancelled.")
    outcome = ending.result()
    if isinstance(outcome, Failed):
        raise ApiError(400, "bad_input", outcome.reason)
    if isinstance(outcome, Cancelled):
        raise ApiError(409, "cancelled", f"The job was cancelled: {outcome.reason}")
    transcript = await repo.transcript(rt.pool, job_id)
    if transcript is None:
        raise unavailable("The transcript")
    return _render(transcript, asked)


def _render(transcript: Transcript, asked: Asked) -> Response[Any]:
    usage = DurationUsage(seconds=round(transcript.duration, 3))
    text = joined(line.text for line in transcript.segments)
    if asked.response_format == "json":
        return Response(Transcription(text=text, usage=usage), media_type=MediaType.JSON)
    if asked.response_format == "verbose_json":
        segments = [
            VerboseSegment(
                id=line.seq,
                seek=0,
                start=line.start,
                end=line.end,
                text=line.text,
                tokens=[],
                temperature=0.0,
                avg_logprob=0.0,
                compression_ratio=0.0,
                no_speech_prob=0.0,
                jyutping=line.jyutping,
                yale=line.yale,
                chars=line.chars,
            )
            for line in transcript.segments
        ]
        words = [word for line in transcript.segments for word in timed_words(line)] if asked.words else None
        body = VerboseTranscription("transcribe", "cantonese", transcript.duration, text, segments, usage, words)
        return Response(body, media_type=MediaType.JSON)
    if asked.response_format == "text":
        return Response(text + "\n", media_type=_TEXT_MEDIA["text"])
    subtitles = render(transcript, asked.response_format, asked.romanization)
    return Response(subtitles, media_type=_TEXT_MEDIA[asked.response_format])


def timed_words(line: Segment) -> list[VerboseWord]:
    """The line's words with the times of their first and last timed characters; untimed ones left out."""
    out: list[VerboseWord] = []
    at = 0
    for word in line.words:
        chars = line.chars[at : at + len(word.text)]
        at += len(word.text)
        starts = [c.start for c in chars if c.start is not None]
        ends = [c.end for c in chars if c.end is not None]
        if starts and ends and word.text.strip():
            out.append(VerboseWord(word=word.text, start=min(starts), end=max(ends)))
    return out


def joined(lines: Iterable[str]) -> str:
    """Lines as one text: Chinese runs on without spaces, other scripts get one between them."""
    text = ""
    for line in lines:
        text += _continued(text, line)
    return text


def _continued(before: str, line: str) -> str:
    """``line`` as it continues ``before`` in :func:`joined`."""
    line = line.strip()
    if before and line and not (_cjk(before[-1]) and _cjk(line[0])):
        return " " + line
    return line


def _cjk(char: str) -> bool:
    return "\u2e80" <= char <= "\u9fff" or "\u3000" <= char <= "\u303f" or "\uff00" <= char <= "\uffef"


async def _disconnected(request: Request[Any, Any, Any]) -> None:
    """Returns when the client has gone (its body is read already: the next message says so)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _cancel(rt: Runtime, job_id: str) -> None:
    """Cancel the job of a client that went away, as ``DELETE /v1/jobs/{id}`` does: no more is billed.

    Shielded: it runs while a stream whose client left unwinds, and Litestar cancels that again and again.
    """
    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):  # it may have ended meanwhile
        if await repo.cancel_job(rt.pool, job_id):
            await bus.publish_event(rt.js, Cancelled(job_id=job_id, reason="The client went away."))
            logger.info("job cancelled: its client went away", extra={"job_id": job_id})


# --- the answer as lines come (stream=true) ------------------------------------------------

_encode = msgspec.json.Encoder().encode


async def _next(events: AsyncGenerator[JobEvent, None]) -> JobEvent:
    return await anext(events)


async def _stream(rt: Runtime, job_id: str) -> AsyncIterator[ServerSentEventMessage]:
    """``transcript.text.delta`` per line as it is committed, then ``transcript.text.done``; an error
    event if the job fails or is cancelled. A client that leaves cancels the job."""
    events = client.follow(rt.js, job_id)
    pending: asyncio.Task[JobEvent] | None = None
    text = ""
    ended = False
    try:
        while True:
            # Each event is awaited in a task of its own: when the client leaves, Litestar's cancel
            # scope cancels every await of this generator's unwinding, but that task only once, so
            # the follower's own cleanup (its unsubscribe) runs.
            pending = asyncio.create_task(_next(events))
            event = await pending
            match event:
                case Partial():
                    for line in event.segments:
                        delta = _continued(text, line.text)
                        text += delta
                        yield ServerSentEventMessage(data=_encode(TextDelta(delta, line)).decode())
                case Final():
                    ended = True
                    done = TextDone(text=text, usage=DurationUsage(seconds=round(event.duration, 3)))
                    yield ServerSentEventMessage(data=_encode(done).decode())
                    return
                case Failed() | Cancelled():
                    ended = True
                    code = "bad_input" if isinstance(event, Failed) else "cancelled"
                    error = {"error": {"code": code, "message": event.reason}, "type": "error"}
                    yield ServerSentEventMessage(data=_encode(error).decode(), event="error")
                    return
    finally:
        with anyio.CancelScope(shield=True):
            if not ended:
                await _cancel(rt, job_id)
            if pending is None or pending.done():  # else the follower is being cancelled and ends itself
                await events.aclose()

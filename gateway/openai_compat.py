"""OpenAI's transcription API on this service: ``POST /v1/audio/transcriptions`` and ``GET /v1/models``.

Code written for OpenAI (its SDK with ``base_url`` pointing here, or anything that speaks the
same multipart request) gets this service's Cantonese instead, as speaches and WhisperLive do
for theirs. One request is one job: the file is stored and transcribed by the same pipeline as
``POST /v1/jobs``, and the answer comes when the job ends (or, with ``stream=true``, line by line
as server-sent events). A client that goes away first cancels its job, so nothing more is billed.

What differs from OpenAI, on purpose:

- The text is Traditional Chinese as Hong Kong writes it; ``verbose_json`` segments add
  ``jyutping``, ``yale`` and ``chars`` (one reading per character). Whisper's per-segment
  scores (``avg_logprob``, ``compression_ratio``, ``no_speech_prob``, ``tokens``) are not kept
  by the pipeline: they are 0 and ``[]``.
- ``language`` may be Cantonese or Chinese (``yue``, ``zh``, ``zh-HK``, …): anything else is a
  400, since the service transcribes Cantonese only. ``temperature`` is accepted and ignored.
- ``timestamp_granularities[]=word`` is a 400: the pipeline has no word timings, and invented
  ones would mislead.
- ``model`` is the model this deployment serves (``GET /v1/models``) or ``whisper-1``, which
  most client code sends, as another name for it.
- ``srt`` and ``vtt`` are subtitles of at most about 18 characters; a ``romanization`` form
  field (``jyutping``, ``yale``, ``both``) adds reading lines under the characters.
- Errors keep this API's shape, ``{"error": {"code", "message"}}``; the SDK reads ``message``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from litestar import MediaType, Request, Response, get, post
from litestar.datastructures import State, UploadFile
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.response import ServerSentEvent, ServerSentEventMessage

from core import bus
from core.messages import Cancelled, Char, Failed, Final, JobOptions, Partial, Transcript
from core.process import Runtime
from core.settings import Settings
from gateway.errors import ApiError, unavailable
from gateway.openapi import error_responses
from gateway.submit import FORM_OVERHEAD, Submission, read_form, start_job
from scribe import client
from scribe.formats import render
from store import repo
from transcriber.asr import MAX_JOB_PROMPT

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
RESPONSE_FORMATS: tuple[str, ...] = ("json", "text", "srt", "vtt", "verbose_json")
ALIAS = "whisper-1"
_LANGUAGES = frozenset({"zh", "yue", "cantonese", "chinese"})
_TEXT_MEDIA = {
    "text": "text/plain",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt",
}


class DurationUsage(msgspec.Struct):
    """What the request is billed by: seconds of audio, as OpenAI reports it."""

    seconds: float
    type: Literal["duration"] = "duration"


class Transcription(msgspec.Struct):
    """``response_format=json``: the whole text."""

    text: str
    usage: DurationUsage


class VerboseSegment(msgspec.Struct):
    """One line, with OpenAI's segment fields (those the pipeline does not keep are 0 or empty)
    and its readings."""

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


class VerboseTranscription(msgspec.Struct):
    """``response_format=verbose_json``: the text, its lines with times and readings, and the duration."""

    task: Literal["transcribe"]
    language: str
    duration: float
    text: str
    segments: list[VerboseSegment]
    usage: DurationUsage


class Model(msgspec.Struct):
    id: str
    created: int
    owned_by: str
    object: Literal["model"] = "model"


class ModelList(msgspec.Struct):
    data: list[Model]
    object: Literal["list"] = "list"


def served_model(settings: Settings) -> str:
    """The id of the model this deployment transcribes with."""
    if settings.asr_backend == "openai":
        return settings.openai_model
    return "whisper-base" if settings.asr_model == "base" else os.path.basename(settings.asr_model.rstrip("/"))


@dataclass(frozen=True)
class Request_:
    """A transcription request, read and checked."""

    response_format: str
    stream: bool
    romanization: str
    language: str


@dataclass
class TranscriptionOperation(Operation):
    """The multipart body, read by hand, as OpenAI documents it."""

    def __post_init__(self) -> None:
        def text(description: str, **extra: Any) -> Schema:
            return Schema(type=OpenAPIType.STRING, description=description, **extra)

        body = Schema(
            type=OpenAPIType.OBJECT,
            required=["file", "model"],
            properties={
                "file": text("The audio or video file.", format=OpenAPIFormat.BINARY),
                "model": text(f"A model from GET /v1/models, or {ALIAS}."),
                "language": text("Cantonese or Chinese: yue, zh, zh-HK, …"),
                "prompt": text(f"Names and terms that help (at most {MAX_JOB_PROMPT} characters)."),
                "response_format": text("The answer's format.", enum=list(RESPONSE_FORMATS), default="json"),
                "temperature": Schema(type=OpenAPIType.NUMBER, description="Accepted and ignored."),
                "timestamp_granularities[]": Schema(
                    type=OpenAPIType.ARRAY, items=text("segment (word is refused)", enum=["segment", "word"])
                ),
                "stream": Schema(type=OpenAPIType.BOOLEAN, description="Server-sent events as lines come."),
                "romanization": text("Reading lines in srt and vtt.", enum=["none", "jyutping", "yale", "both"]),
            },
        )
        self.request_body = RequestBody(required=True, content={"multipart/form-data": OpenAPIMediaType(schema=body)})
        ok = self.responses and self.responses.get("200")
        content = getattr(ok, "content", None)
        if content is not None:
            content["text/plain"] = OpenAPIMediaType(schema=text("response_format=text, srt or vtt."))
            content["text/event-stream"] = OpenAPIMediaType(schema=text("stream=true: transcript.text.* events."))


def routes(settings: Settings) -> list[HTTPRouteHandler]:
    """The two endpoints; the upload limit is this deployment's."""
    transcriptions = post(
        "/v1/audio/transcriptions",
        status_code=200,
        operation_class=TranscriptionOperation,
        request_max_body_size=settings.max_upload_bytes + FORM_OVERHEAD,
        responses=error_responses(400, 409, 413, 415, 503),
        summary="Transcribe a file (OpenAI-compatible)",
    )(create_transcription)
    return [transcriptions, list_models]


@get("/v1/models", summary="The models this deployment serves (OpenAI-compatible)")
async def list_models(state: State) -> ModelList:
    """What ``model`` may name in ``POST /v1/audio/transcriptions``."""
    served = served_model(state.rt.settings)
    ids = [served] + ([ALIAS] if served != ALIAS else [])
    return ModelList([Model(id=name, created=0, owned_by="cantonesescribe") for name in ids])


async def create_transcription(
    request: Request[Any, Any, Any], state: State
) -> Response[Transcription] | ServerSentEvent:
    """Transcribe the uploaded file, as OpenAI's ``POST /v1/audio/transcriptions`` does."""
    rt: Runtime = state.rt
    if not rt.nc.is_connected:
        raise unavailable()
    if request.content_type[0] != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", 'Send a multipart form with the audio in the field "file".')
    form = await read_form(request)
    try:
        asked = _checked(form, rt.settings)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "bad_request", 'The form has no file in the field "file".')
        size = await asyncio.to_thread(upload.file.seek, 0, os.SEEK_END)
        await asyncio.to_thread(upload.file.seek, 0)
        if size > rt.settings.max_upload_bytes:
            raise ApiError(
                413, "too_large", f"The file is larger than the {rt.settings.max_upload_bytes:,} byte limit."
            )
        if size == 0:
            raise ApiError(400, "bad_input", "The uploaded file is empty.")
        prompt = str(form.get("prompt") or "") or None
        options = JobOptions(romanization="both", prompt=prompt)
        job_id, _ = await start_job(rt, Submission("", options, "", file=upload.file))  # type: ignore[arg-type]
    finally:
        for value in form.values():
            if isinstance(value, UploadFile):
                await value.close()
    if asked.stream:
        return ServerSentEvent(_stream(rt, job_id), headers={"Cache-Control": "no-store"})
    return await _answer(request, rt, job_id, asked)


def _checked(form: Any, settings: Settings) -> Request_:
    model = str(form.get("model") or "")
    served = served_model(settings)
    if model not in (served, ALIAS):
        raise ApiError(400, "model_not_found", f"model must be {served} (or {ALIAS}), the model this server uses.")
    language = str(form.get("language") or "zh")
    if language.lower().replace("_", "-").split("-")[0] not in _LANGUAGES:
        raise ApiError(
            400,
            "unsupported_language",
            f"This service transcribes Cantonese only: language may be yue or zh (or left out), not {language!r}.",
        )
    response_format = str(form.get("response_format") or "json")
    if response_format not in RESPONSE_FORMATS:
        raise ApiError(400, "bad_request", f"response_format must be one of {', '.join(RESPONSE_FORMATS)}.")
    granularities = [str(value) for value in form.getall("timestamp_granularities[]", [])]
    if "word" in granularities:
        raise ApiError(
            400,
            "unsupported_granularity",
            "Word timestamps are not available: this service times whole lines. Ask for segment timestamps.",
        )
    if any(value != "segment" for value in granularities):
        raise ApiError(400, "bad_request", "timestamp_granularities[] may only be segment.")
    prompt = str(form.get("prompt") or "")
    if len(prompt) > MAX_JOB_PROMPT:
        raise ApiError(400, "bad_request", f"prompt may be at most {MAX_JOB_PROMPT} characters.")
    temperature = str(form.get("temperature") or "0")
    try:
        float(temperature)
    except ValueError:
        raise ApiError(400, "bad_request", "temperature must be a number.") from None
    stream = str(form.get("stream") or "false").lower()
    if stream not in ("true", "false"):
        raise ApiError(400, "bad_request", "stream must be true or false.")
    romanization = str(form.get("romanization") or "none")
    if romanization not in ("none", "jyutping", "yale", "both"):
        raise ApiError(400, "bad_request", "romanization must be none, jyutping, yale or both.")
    return Request_(response_format, stream == "true", romanization, language)


async def _ending(rt: Runtime, job_id: str) -> Final | Failed | Cancelled:
    async for event in client.follow(rt.js, job_id):
        if isinstance(event, Final | Failed | Cancelled):
            return event
    raise ApiError(503, "unavailable", "The job's events stopped; try again.")  # follow ends only at the end


async def _answer(request: Request[Any, Any, Any], rt: Runtime, job_id: str, asked: Request_) -> Response[Any]:
    """Wait for the job's end (cancelling it if the client leaves first), then answer in the format asked for."""
    ending = asyncio.create_task(_ending(rt, job_id))
    leaving = asyncio.create_task(_disconnected(request))
    try:
        await asyncio.wait((ending, leaving), return_when=asyncio.FIRST_COMPLETED)
    finally:
        leaving.cancel()
    if not ending.done():
        ending.cancel()
        await _cancel(rt, job_id)
        raise ApiError(400, "disconnected", "The client went away; the job was cancelled.")
    outcome = ending.result()
    if isinstance(outcome, Failed):
        raise ApiError(400, "bad_input", outcome.reason)
    if isinstance(outcome, Cancelled):
        raise ApiError(409, "cancelled", f"The job was cancelled: {outcome.reason}")
    transcript = await repo.transcript(rt.pool, job_id)
    if transcript is None:
        raise ApiError(503, "unavailable", "The transcript is not readable yet; try again.")
    return _render(transcript, asked)


def _render(transcript: Transcript, asked: Request_) -> Response[Any]:
    usage = DurationUsage(seconds=round(transcript.duration, 3))
    text = joined(line.text for line in transcript.segments)
    if asked.response_format == "json":
        return Response(Transcription(text=text, usage=usage), media_type=MediaType.JSON)
    if asked.response_format == "verbose_json":
        segments = [
            VerboseSegment(
                id=index,
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
            for index, line in enumerate(transcript.segments)
        ]
        body = VerboseTranscription("transcribe", "cantonese", transcript.duration, text, segments, usage)
        return Response(body, media_type=MediaType.JSON)
    if asked.response_format == "text":
        return Response(text + "\n", media_type=_TEXT_MEDIA["text"])
    return Response(
        render(transcript, asked.response_format, asked.romanization), media_type=_TEXT_MEDIA[asked.response_format]
    )


def joined(lines: Any) -> str:
    """Lines as one text: Chinese runs on without spaces, other scripts get one between them."""
    out = ""
    for line in lines:
        line = line.strip()
        if out and line and not (_cjk(out[-1]) and _cjk(line[0])):
            out += " "
        out += line
    return out


def _cjk(char: str) -> bool:
    return "\u2e80" <= char <= "\u9fff" or "\u3000" <= char <= "\u303f" or "\uff00" <= char <= "\uffef"


async def _disconnected(request: Request[Any, Any, Any]) -> None:
    """Returns when the client has gone (its body is read already: the next message says so)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _cancel(rt: Runtime, job_id: str) -> None:
    with contextlib.suppress(Exception):  # the job may have ended meanwhile; nothing else to do
        if await repo.cancel_job(rt.pool, job_id):
            await bus.publish_event(rt.js, Cancelled(job_id=job_id, reason="The client went away."))


class _Delta(msgspec.Struct):
    delta: str
    type: Literal["transcript.text.delta"] = "transcript.text.delta"


class _Done(msgspec.Struct):
    text: str
    usage: DurationUsage
    type: Literal["transcript.text.done"] = "transcript.text.done"


_encode = msgspec.json.Encoder().encode


async def _stream(rt: Runtime, job_id: str) -> AsyncIterator[ServerSentEventMessage]:
    """``transcript.text.delta`` per line as it is committed, then ``transcript.text.done``; an error
    event if the job fails. A client that leaves cancels the job."""
    lines: list[str] = []
    finished = False
    try:
        async for event in client.follow(rt.js, job_id):
            match event:
                case Partial():
                    for line in event.segments:
                        before = joined(lines)
                        lines.append(line.text)
                        delta = joined(lines)[len(before) :]  # the line, with the space joined() puts before it
                        yield ServerSentEventMessage(data=_encode(_Delta(delta)).decode())
                case Final():
                    finished = True
                    done = _Done(text=joined(lines), usage=DurationUsage(seconds=round(event.duration, 3)))
                    yield ServerSentEventMessage(data=_encode(done).decode())
                    return
                case Failed() | Cancelled():
                    finished = True
                    code = "bad_input" if isinstance(event, Failed) else "cancelled"
                    error = {"error": {"code": code, "message": event.reason}, "type": "error"}
                    yield ServerSentEventMessage(data=msgspec.json.encode(error).decode(), event="error")
                    return
    finally:
        if not finished:
            await _cancel(rt, job_id)

"""The API's descriptions: the OpenAPI document (``/schema/openapi.json``), mostly written by Litestar
from the handlers' types, with what types cannot say added here: the token's two security schemes,
the error answers, bodies read by hand, answers in several media types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import (
    Components,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
    SecurityScheme,
)

from core.messages import ROMANIZATIONS
from gateway.errors import ErrorBody

VERSION = "1.1.0"

# Either way of showing a job's token; every per-job endpoint accepts both, and (with accounts)
# its owner's API key.
JOB_TOKEN: list[dict[str, list[str]]] = [{"apiKey": []}, {"jobToken": []}, {"jobTokenQuery": []}]
# An API key (SCRIBE_AUTH=keys); without accounts these endpoints need nothing.
API_KEY: list[dict[str, list[str]]] = [{"apiKey": []}, {}]

_ERRORS = {
    400: "The request is not valid: a parameter, header or body says something this endpoint cannot take.",
    401: "No API key or token, or not a valid one. Send the API key as `Authorization: Bearer sk_…`; a job's "
    "token as `Authorization: Bearer …` or `?token=…`.",
    403: "Over a quota of the API key's plan (`quota_exceeded`), a job's token where its owner's key is needed "
    "(`forbidden`), or a web page from another site (`cross_origin`; see `SCRIBE_CORS_ORIGINS`).",
    404: "There is no such job (or its audio, or the line, is not stored yet).",
    409: "The job (or the line) is not in a state that allows this.",
    410: "The job's transcript and audio were purged, or its audio has expired.",
    413: "The body is larger than this endpoint takes.",
    415: "The body's Content-Type is not one this endpoint takes.",
    416: "The byte range starts past the end of the audio.",
    429: "Too many requests (`rate_limited`: over the key's or the address's rate, with `Retry-After` and the "
    "`RateLimit-*` headers), or too many connections or streams from this client; try again later.",
    503: "The message bus or the database cannot be reached right now; try again after `Retry-After` seconds.",
}


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """The error answers of an operation, each in the one error shape; any request may be malformed
    (400) or come from a client holding too many connections (429)."""
    return {
        status: ResponseSpec(data_container=ErrorBody, description=_ERRORS[status], generate_examples=False)
        for status in sorted({400, 429, *statuses})
    }


def config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="CantoneseScribe",
        version=VERSION,
        description=(
            "Cantonese speech in, Traditional Chinese characters with Jyutping and Yale out, streamed while the "
            "audio is still being processed. Submit a link or a file to `POST /v1/jobs`; the answer carries the "
            "job's token, which opens that job (a share link). A server with accounts (`SCRIBE_AUTH=keys`) needs an "
            "API key on every `/v1` request except those reads, counts each key's jobs against its plan "
            "(`GET /v1/me`) and limits its request rate. The live transcript streams over a websocket "
            "(`/v1/jobs/{job_id}/stream`) and server-sent events (`/v1/jobs/{job_id}/events`); their messages are "
            "described by the AsyncAPI document at `/schema/asyncapi.json`. Every error answers "
            '`{"error": {"code", "message"}}`.'
        ),
        components=Components(
            security_schemes={
                "apiKey": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="An API key (`sk_…`, from `scribe keys create`) as `Authorization: Bearer <key>`, "
                    "or from a browser's websocket as the subprotocol `key.<key>`. Needed on every `/v1` endpoint "
                    "when the server runs with `SCRIBE_AUTH=keys`, except the reads a job's token opens.",
                ),
                "jobToken": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="The job's token from the submit's answer, as `Authorization: Bearer <token>`.",
                ),
                "jobTokenQuery": SecurityScheme(
                    type="apiKey",
                    name="token",
                    security_scheme_in="query",
                    description="The job's token as `?token=<token>` (for links and the browser).",
                ),
            }
        ),
        use_handler_docstrings=True,
        path="/schema",
    )


def _string(description: str, **extra: Any) -> Schema:
    return Schema(type=OpenAPIType.STRING, description=description, **extra)


_ROMANIZATION = _string("The readings to add.", enum=list(ROMANIZATIONS), default="both")


@dataclass
class SubmitOperation(Operation):
    """The submit's body: read by hand (JSON or a multipart form), so Litestar cannot describe it."""

    def __post_init__(self) -> None:
        link = Schema(
            type=OpenAPIType.OBJECT,
            required=["url"],
            properties={
                "url": _string(
                    "An http(s) link to audio or video (a page yt-dlp knows, or a media file).",
                    format=OpenAPIFormat.URI,
                    min_length=1,
                ),
                "romanization": _ROMANIZATION,
                "webhook_url": _string(
                    "Called with the job's terminal event when it ends (a signed POST; see the README).",
                    format=OpenAPIFormat.URI,
                    min_length=1,
                    max_length=2000,
                ),
                "fresh": Schema(
                    type=OpenAPIType.BOOLEAN,
                    default=False,
                    description=(
                        "Transcribe again. Without it, a video or file transcribed before with the same options "
                        "is replayed at once from the stored transcript and billed nothing."
                    ),
                ),
            },
            additional_properties=False,
        )
        upload = Schema(
            type=OpenAPIType.OBJECT,
            required=["file"],
            properties={
                "file": _string("The audio or video file.", format=OpenAPIFormat.BINARY),
                "romanization": _ROMANIZATION,
                "webhook_url": _string("As for a link; empty means none.", max_length=2000),
                "fresh": _string("As for a link.", enum=["true", "false"], default="false"),
            },
        )
        self.request_body = RequestBody(
            required=True,
            description=(
                "A link as JSON (at most 16 KB), or a file as a multipart form (up to SCRIBE_MAX_UPLOAD_BYTES)."
            ),
            content={
                "application/json": OpenAPIMediaType(schema=link),
                "multipart/form-data": OpenAPIMediaType(schema=upload),
            },
        )


_TEXT_FORMATS = {
    "application/x-subrip": "SubRip subtitles (`format=srt`).",
    "text/vtt": "WebVTT subtitles (`format=vtt`).",
    "text/plain": "Plain text (`format=txt`).",
    "text/csv": "CSV (`format=csv`).",
}


@dataclass
class TranscriptOperation(Operation):
    """The transcript comes in the format asked for: JSON, or one of four text formats."""

    def __post_init__(self) -> None:
        ok = self.responses and self.responses.get("200")
        content = getattr(ok, "content", None)
        if content is not None:
            for media, description in _TEXT_FORMATS.items():
                content[media] = OpenAPIMediaType(schema=_string(description))


@dataclass
class AudioOperation(Operation):
    """Audio bytes: all of them (200) or the range asked for (206)."""

    def __post_init__(self) -> None:
        for status in ("200", "206"):
            answer = self.responses and self.responses.get(status)
            if answer is not None and getattr(answer, "content", None) is not None:
                answer.content = {  # type: ignore[union-attr]
                    "audio/ogg": OpenAPIMediaType(schema=_string("Ogg/Opus audio.", format=OpenAPIFormat.BINARY))
                }


EVENT_TYPES = (
    "snapshot",
    "progress",
    "segments",
    "revised",
    "final",
    "failed",
    "cancelled",
    "heartbeat",
    "lagged",
    "error",
)


@dataclass
class EventStreamOperation(Operation):
    """A stream of server-sent events, each described as one event; the envelopes' schemas are in the
    AsyncAPI document."""

    def __post_init__(self) -> None:
        answer = self.responses and self.responses.get("200")
        if answer is not None:
            event = Schema(
                type=OpenAPIType.OBJECT,
                description="One server-sent event. See /schema/asyncapi.json for each envelope's fields.",
                required=["data", "event"],
                properties={
                    "event": _string("The envelope's type.", enum=list(EVENT_TYPES)),
                    "data": _string("The envelope, as JSON.", content_media_type="application/json"),
                    "id": _string("The number of the last line sent so far (-1: none yet).", pattern=r"^-?\d+$"),
                    "retry": Schema(type=OpenAPIType.INTEGER, description="Milliseconds to wait before reconnecting."),
                },
            )
            answer.content = {"text/event-stream": OpenAPIMediaType(schema=event)}  # type: ignore[union-attr]

"""The live stream's protocol as an AsyncAPI 3.0 document (``/schema/asyncapi.json``), beside OpenAPI.

The message schemas come from the Structs the stream sends (:mod:`gateway.envelopes`) and the
bus events (:mod:`core.messages`), so the document cannot drift from the code.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec
from litestar import HttpMethod, Response, route

from core.messages import Cancelled, Failed, Final, Partial, Progress, Revised
from gateway.envelopes import (
    CancelledEnvelope,
    ErrorEnvelope,
    FailedEnvelope,
    FinalEnvelope,
    Heartbeat,
    InterimEnvelope,
    Lagged,
    LaggingEnvelope,
    Lines,
    ProgressEnvelope,
    RevisedEnvelope,
    SessionEnvelope,
    Snapshot,
)
from gateway.live import ControlMessage
from gateway.openapi import VERSION

_STREAM = (
    Snapshot,
    ProgressEnvelope,
    Lines,
    RevisedEnvelope,
    FinalEnvelope,
    FailedEnvelope,
    CancelledEnvelope,
    Heartbeat,
    Lagged,
    InterimEnvelope,
    LaggingEnvelope,
)
_BUS = (Progress, Partial, Revised, Final, Failed, Cancelled)

_CLOSE_CODES = (
    "The server closes the websocket with 1000 after a terminal message (final, failed, cancelled); 4408 after "
    "`lagged`; 4400 (bad `after`), 4401 (no or wrong token or API key), 4404 (no such job), 4410 (purged) after an "
    "`error`; 1013 (try again later) after a retryable `error` (the message bus is down); 4429 after a retryable "
    "`error` when this client or API key holds too many streams (`SCRIBE_MAX_STREAMS`)."
)


_LIVE_CLOSE_CODES = (
    "`/v1/live` closes with 1000 after `final`; 4400 after an `error` for a query or frame the service cannot use "
    "(an encoding that does not decode is told within its first 64 KiB, a frame over 64 KiB, a text message other "
    "than the two below); 1009 for a message over 128 KiB; 4401 without a key where one is needed; 4403 over a "
    "quota (live minutes included); 4429 over this client's open streams; 1013 after a retryable `error`: `busy` "
    "(no transcriber can take the session: try again in a minute) or a dependency down."
)


def _message(struct: type[msgspec.Struct], prefix: str) -> dict[str, Any]:
    tag = struct.__struct_config__.tag
    return {
        "name": str(tag),
        "title": f"{prefix}{tag}",
        "summary": (struct.__doc__ or "").strip().splitlines()[0] if struct.__doc__ else str(tag),
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{struct.__name__}"},
    }


@cache
def document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the websocket, the SSE stream and the bus's job events."""
    structs = (*_STREAM, ErrorEnvelope, SessionEnvelope, ControlMessage, *_BUS)
    _, schemas = msgspec.json.schema_components(structs, ref_template="#/components/schemas/{name}")
    stream_messages = {f"stream_{s.__struct_config__.tag}": _message(s, "") for s in (*_STREAM, ErrorEnvelope)}
    bus_messages = {f"bus_{s.__struct_config__.tag}": _message(s, "bus ") for s in _BUS}
    job_id = {"description": "The job's id, from the submit's answer."}
    refs = {name: {"$ref": f"#/components/messages/{name}"} for name in stream_messages}
    bus_refs = {name: {"$ref": f"#/components/messages/{name}"} for name in bus_messages}
    live_messages = {
        "live_session": _message(SessionEnvelope, ""),
        "live_audio": {
            "name": "audio",
            "title": "audio frame",
            "summary": "A binary message of audio in the declared encoding, at most 64 KiB (MediaRecorder's 250 ms "
            "slices, or raw PCM in any split).",
            "contentType": "application/octet-stream",
            "payload": {"type": "string", "format": "binary"},
        },
        "live_control": {
            "name": "control",
            "title": "close_stream / keep_alive",
            "summary": '{"type": "close_stream"} ends the session (what is buffered is transcribed, `final` '
            'follows, then close 1000); {"type": "keep_alive"} keeps a quiet session open without audio.',
            "contentType": "application/json",
            "payload": {"$ref": "#/components/schemas/ControlMessage"},
        },
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "CantoneseScribe live transcript",
            "version": VERSION,
            "description": (
                "A job's transcript while it is made. The websocket and the SSE stream carry the same JSON "
                'messages, `{"v": 1, "type", "job_id", "seq", …}`: first a `snapshot` (the lines so far, after '
                "`after`), a long backlog continuing at once in `segments` pages, then live messages, ending with "
                "one terminal message. Lines are numbered by their own `seq` and sent once; a line changes "
                "only by a `revised` message (a correction by the job's owner) that replaces it; resume with "
                "`?after=N` (websocket) or `Last-Event-ID: N` (SSE, whose event ids are line numbers). "
                "A job's token is required: `?token=`, `Authorization: Bearer` (SSE), or the websocket "
                "subprotocol `token.<TOKEN>`; or, on a server with accounts, the owner's API key: "
                "`Authorization: Bearer sk_…` (SSE) or the subprotocol `key.<KEY>`. "
                + _CLOSE_CODES
                + " Integrators on the bus subscribe to `scribe.events.<job_id>` "
                "(JetStream stream SCRIBE_EVENTS, kept 7 days: replayable), whose "
                "messages are the bus events below."
            ),
        },
        "servers": {
            "gateway": {"host": "127.0.0.1:8000", "protocol": "ws", "description": "The gateway (its own address)."},
            "gateway-http": {"host": "127.0.0.1:8000", "protocol": "http", "description": "SSE over HTTP."},
            "nats": {"host": "127.0.0.1:4222", "protocol": "nats", "description": "The deployment's NATS."},
        },
        "channels": {
            "stream": {
                "address": "/v1/jobs/{job_id}/stream",
                "servers": [{"$ref": "#/servers/gateway"}],
                "parameters": {"job_id": job_id},
                "messages": refs,
                "description": "Websocket. Query: `token`, `after` (the last line number the client has; -1 for all), "
                "`follow=revisions` (stay open after the end for the `revised` messages of later corrections).",
                "bindings": {
                    "ws": {
                        "query": {
                            "type": "object",
                            "properties": {
                                "token": {"type": "string"},
                                "after": {"type": "integer", "minimum": -1},
                                "follow": {"type": "string", "enum": ["revisions"]},
                            },
                        }
                    }
                },
            },
            "events": {
                "address": "/v1/jobs/{job_id}/events",
                "servers": [{"$ref": "#/servers/gateway-http"}],
                "parameters": {"job_id": job_id},
                "messages": refs,
                "description": (
                    "Server-sent events (`text/event-stream`): `event:` is the message's type, `data:` the message, "
                    "`id:` the number of the last line sent (-1 before the first). A reconnect to an ended job that "
                    "has seen its last line gets 204."
                ),
            },
            "live": {
                "address": "/v1/live",
                "servers": [{"$ref": "#/servers/gateway"}],
                "messages": {
                    "live_session": {"$ref": "#/components/messages/live_session"},
                    **refs,
                    "live_audio": {"$ref": "#/components/messages/live_audio"},
                    "live_control": {"$ref": "#/components/messages/live_control"},
                },
                "description": (
                    "Websocket: live audio in, the session's transcript out. A live session is a job: the first "
                    "message is `session` (its id, token and links, as a 202 from `POST /v1/jobs`), then the job's "
                    "messages as on `/v1/jobs/{job_id}/stream`, with `interim` (the line in progress, replaced by "
                    "each next one) and `lagging`. The session ends at `close_stream`, after `SCRIBE_LIVE_IDLE_S` "
                    "without a frame, when the client goes, or at `SCRIBE_LIVE_MAX_S` / the plan's live minutes "
                    "(with a warning); the job keeps what it heard. Under `SCRIBE_AUTH=keys` it needs a key (the "
                    "subprotocol `key.<KEY>` from a browser). " + _LIVE_CLOSE_CODES
                ),
                "bindings": {
                    "ws": {
                        "query": {
                            "type": "object",
                            "required": ["encoding"],
                            "properties": {
                                "encoding": {"type": "string", "enum": ["linear16", "webm", "ogg"]},
                                "sample_rate": {
                                    "type": "integer",
                                    "minimum": 8000,
                                    "maximum": 48000,
                                    "description": "Required for linear16 (raw little-endian 16-bit PCM).",
                                },
                                "channels": {"type": "integer", "minimum": 1, "maximum": 2, "default": 1},
                                "romanization": {"type": "string", "enum": ["jyutping", "yale", "both"]},
                            },
                        }
                    }
                },
            },
            "bus": {
                "address": "scribe.events.{job_id}",
                "servers": [{"$ref": "#/servers/nats"}],
                "parameters": {"job_id": job_id},
                "messages": bus_refs,
                "description": "The job's events on NATS JetStream, tagged by `type`.",
            },
        },
        "operations": {
            "receiveStream": {"action": "receive", "channel": {"$ref": "#/channels/stream"}},
            "receiveEvents": {"action": "receive", "channel": {"$ref": "#/channels/events"}},
            "receiveBus": {"action": "receive", "channel": {"$ref": "#/channels/bus"}},
            "receiveLive": {
                "action": "receive",
                "channel": {"$ref": "#/channels/live"},
                "messages": [{"$ref": "#/channels/live/messages/live_session"}]
                + [{"$ref": f"#/channels/live/messages/{name}"} for name in refs],
            },
            "sendLive": {
                "action": "send",
                "channel": {"$ref": "#/channels/live"},
                "messages": [
                    {"$ref": "#/channels/live/messages/live_audio"},
                    {"$ref": "#/channels/live/messages/live_control"},
                ],
            },
        },
        "components": {"schemas": schemas, "messages": {**stream_messages, **bus_messages, **live_messages}},
    }


@route("/schema/asyncapi.json", http_method=[HttpMethod.GET, HttpMethod.HEAD], include_in_schema=False)
async def asyncapi_document() -> Response[dict[str, Any]]:
    """The AsyncAPI 3.0 document of the live stream."""
    return Response(document(), media_type="application/json")

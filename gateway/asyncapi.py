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
    Lagged,
    Lines,
    ProgressEnvelope,
    RevisedEnvelope,
    Snapshot,
)
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
)
_BUS = (Progress, Partial, Revised, Final, Failed, Cancelled)

_CLOSE_CODES = (
    "The server closes the websocket with 1000 after a terminal message (final, failed, cancelled); 4408 after "
    "`lagged`; 4400 (bad `after`), 4401 (no or wrong token or API key), 4404 (no such job), 4410 (purged) after an "
    "`error`; 1013 (try again later) after a retryable `error` (the message bus is down); 4429 after a retryable "
    "`error` when this client or API key holds too many streams (`SCRIBE_MAX_STREAMS`)."
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
    structs = (*_STREAM, ErrorEnvelope, *_BUS)
    _, schemas = msgspec.json.schema_components(structs, ref_template="#/components/schemas/{name}")
    stream_messages = {f"stream_{s.__struct_config__.tag}": _message(s, "") for s in (*_STREAM, ErrorEnvelope)}
    bus_messages = {f"bus_{s.__struct_config__.tag}": _message(s, "bus ") for s in _BUS}
    job_id = {"description": "The job's id, from the submit's answer."}
    refs = {name: {"$ref": f"#/components/messages/{name}"} for name in stream_messages}
    bus_refs = {name: {"$ref": f"#/components/messages/{name}"} for name in bus_messages}
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
        },
        "components": {"schemas": schemas, "messages": {**stream_messages, **bus_messages}},
    }


@route("/schema/asyncapi.json", http_method=[HttpMethod.GET, HttpMethod.HEAD], include_in_schema=False)
async def asyncapi_document() -> Response[dict[str, Any]]:
    """The AsyncAPI 3.0 document of the live stream."""
    return Response(document(), media_type="application/json")

"""NATS connection and JetStream topology, created idempotently from ``nats/streams.json``."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from scribe import subjects
from scribe.messages import encoder
from scribe.settings import Settings

logger = logging.getLogger(__name__)

NATS_CONFIG_DIR = Path(__file__).resolve().parent.parent / "nats"


class TopologyError(RuntimeError):
    """The stream definitions are missing or the server refused them."""


@dataclass(frozen=True)
class Topology:
    streams: list[js_api.StreamConfig]
    consumers: dict[str, tuple[str, js_api.ConsumerConfig]]  # durable name -> (stream, config)


def load_topology(settings: Settings, path: Path | None = None) -> Topology:
    """Read stream and consumer definitions; the transcriber's limits come from settings."""
    path = path or NATS_CONFIG_DIR / "streams.json"
    if not path.is_file():
        path = Path.cwd() / "nats" / "streams.json"
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise TopologyError(f"cannot read the JetStream definitions at {path}: {exc}") from exc
    streams = [
        js_api.StreamConfig(
            name=s["name"],
            subjects=s["subjects"],
            retention=js_api.RetentionPolicy(s.get("retention", "limits")),
            storage=js_api.StorageType(s.get("storage", "file")),
            max_age=float(s["max_age_s"]),
            duplicate_window=float(s["duplicate_window_s"]),
            max_msg_size=s.get("max_msg_size"),
        )
        for s in data["streams"]
    ]
    consumers: dict[str, tuple[str, js_api.ConsumerConfig]] = {}
    for c in data["consumers"]:
        ack_wait, max_deliver = float(c["ack_wait_s"]), int(c["max_deliver"])
        if c["durable_name"] == subjects.CONSUMER_TRANSCRIBER:
            ack_wait, max_deliver = settings.ack_wait_s, settings.max_deliver
        consumers[c["durable_name"]] = (
            c["stream"],
            js_api.ConsumerConfig(
                durable_name=c["durable_name"],
                filter_subject=c["filter_subject"],
                ack_policy=js_api.AckPolicy.EXPLICIT,
                deliver_policy=js_api.DeliverPolicy.ALL,
                ack_wait=ack_wait,
                max_deliver=max_deliver,
                max_ack_pending=int(c["max_ack_pending"]),
            ),
        )
    return Topology(streams=streams, consumers=consumers)


async def connect(url: str, name: str) -> NATS:
    """Connect with endless reconnects: a NATS restart pauses work, it does not end it."""
    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=5,
    )


async def ensure_topology(js: JetStreamContext, topology: Topology) -> None:
    """Create or update every stream and durable consumer; safe to call from every process."""
    for config in topology.streams:
        try:
            await js.stream_info(config.name or "")
        except NotFoundError:
            await js.add_stream(config)
            logger.info("stream created", extra={"stream": config.name})
            continue
        try:
            await js.update_stream(config)
        except nats.js.errors.BadRequestError as exc:
            raise TopologyError(f"stream {config.name} exists with settings that cannot be changed: {exc}") from exc
    for stream, consumer in topology.consumers.values():
        try:
            await js.add_consumer(stream, consumer)
        except nats.js.errors.BadRequestError:
            # An older definition of the same durable: update what the server lets us update.
            logger.warning("consumer exists with other settings; keeping it", extra={"consumer": consumer.durable_name})


async def publish(
    js: JetStreamContext, subject: str, message: Any, *, msg_id: str | None = None, ack_timeout: float = 10.0
) -> js_api.PubAck:
    """Publish a Struct as JSON; ``msg_id`` makes JetStream drop duplicates within the stream's window."""
    headers = {"Nats-Msg-Id": msg_id} if msg_id else None
    return await js.publish(subject, encoder.encode(message), headers=headers, timeout=ack_timeout)

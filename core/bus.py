"""The NATS connection, the JetStream topology brought up to its definition, and publishing."""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import nats
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js import api as js_api

from core import subjects
from core.messages import Cancelled, Failed, Final, JobEvent, Partial, Revised, encoder
from core.topology import Bucket, Consumer, Topology

logger = logging.getLogger(__name__)


class TopologyError(RuntimeError):
    """A stream or consumer exists on the server with settings it refuses to change to ours."""


async def connect(url: str, name: str) -> NATS:
    """Connect with endless reconnects: a NATS restart pauses work, it does not end it."""
    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=5,
    )


async def ensure_topology(js: JetStreamContext, topology: Topology, owned: Collection[str] | None = None) -> None:
    """Create or update every stream, and the durable consumers; safe to call from every process.

    A consumer belongs to the service that reads it: only a process running that service
    brings it to its definition (the transcriber's limits are the transcriber's settings).
    Other processes create a missing consumer and leave an existing one as it is, so a
    streamer started without ``SCRIBE_ACK_WAIT_S`` does not reset the transcribers'.

    Args:
        js: A JetStream context.
        topology: The definitions.
        owned: The durable names this process runs (``None``: every one).

    Raises:
        TopologyError: The server refused a definition, or kept a consumer with other limits
            than ours; the message names what to change.
    """
    for stream in topology.streams:
        config = stream.config()
        try:
            await js.stream_info(stream.name)
        except nats.js.errors.NotFoundError:
            await js.add_stream(config)
            logger.info("stream created", extra={"stream": stream.name})
            continue
        try:
            await js.update_stream(config)
        except nats.js.errors.APIError as exc:
            raise TopologyError(
                f"stream {stream.name} exists with settings that cannot be changed to ours ({exc.description}); "
                f"remove it (nats stream rm {stream.name}) or point SCRIBE_NATS_URL at another server"
            ) from exc
    for bucket in (topology.uploads, topology.audio):
        await _ensure_bucket(js, bucket)
    for consumer in topology.consumers:
        if owned is None or consumer.durable in owned or consumer.service in owned:
            await _ensure_consumer(js, consumer)
        else:
            try:
                await js.consumer_info(consumer.stream.name, consumer.durable)
            except nats.js.errors.NotFoundError:
                await _ensure_consumer(js, consumer)


async def _ensure_bucket(js: JetStreamContext, bucket: Bucket) -> None:
    """Create the object store if it is missing; an existing one is left as it is."""
    try:
        await js.object_store(bucket.name)
    except nats.js.errors.BucketNotFoundError:
        await js.create_object_store(bucket.name, config=js_api.ObjectStoreConfig(ttl=bucket.max_age_s))
        logger.info("bucket created", extra={"bucket": bucket.name})


async def _ensure_consumer(js: JetStreamContext, consumer: Consumer) -> None:
    """Create the consumer, or update it where it exists: the server updates what it can."""
    try:
        info = await js.add_consumer(consumer.stream.name, consumer.config())
    except nats.js.errors.APIError as exc:  # 400 for most refusals, 500 for a push consumer made pull
        raise TopologyError(
            f"consumer {consumer.durable} on {consumer.stream.name} exists with settings that cannot be changed to "
            f"ours ({exc.description}); remove it (nats consumer rm {consumer.stream.name} {consumer.durable}) "
            "and start again"
        ) from exc
    got = info.config
    wanted = (consumer.filter_subject, consumer.max_deliver, consumer.max_ack_pending)
    have = (got.filter_subject, got.max_deliver, got.max_ack_pending)
    # ack_wait travels as whole nanoseconds (nats-py truncates: 4.1 s is stored as 4.099999999).
    if have != wanted or abs((got.ack_wait or 0.0) - consumer.ack_wait_s) > 1e-6:
        raise TopologyError(
            f"consumer {consumer.durable} on {consumer.stream.name} kept (filter, max_deliver, max_ack_pending) = "
            f"{have} and ack_wait {got.ack_wait} s instead of {wanted} and {consumer.ack_wait_s} s; "
            "remove it and start again"
        )


async def publish(
    js: JetStreamContext, subject: str, message: Any, *, msg_id: str | None = None, ack_timeout: float = 10.0
) -> js_api.PubAck:
    """Publish a Struct as JSON; ``msg_id`` makes JetStream drop duplicates within the stream's window."""
    headers = {"Nats-Msg-Id": msg_id} if msg_id else None
    return await js.publish(subject, encoder.encode(message), headers=headers, timeout=ack_timeout)


def event_msg_id(event: JobEvent) -> str | None:
    """The ``Nats-Msg-Id`` of a job event: one final, one failure and one partial per chunk per job,
    one revision per line per revision number.

    Progress events carry none: a repeated one is harmless.
    """
    match event:
        case Final():
            return f"{event.job_id}:final"
        case Failed():
            return f"{event.job_id}:failed"
        case Cancelled():
            return f"{event.job_id}:cancelled"
        case Partial():
            return f"{event.job_id}:partial:{event.chunk_seq}"
        case Revised():
            return f"{event.job_id}:revised:{event.segment.seq}:{event.segment.revision}"
    return None


async def publish_event(js: JetStreamContext, event: JobEvent) -> js_api.PubAck:
    """Publish a job event on ``scribe.events.<job_id>``, with its message id."""
    return await publish(js, subjects.events(event.job_id), event, msg_id=event_msg_id(event))

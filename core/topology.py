"""JetStream streams and durable consumers, defined once, in code.

Every process brings the server up to these definitions on start
(:func:`core.bus.ensure_topology`), and each service reads its own consumer's limits from
here: the streamer's heartbeat and last-delivery check, the transcriber's redelivery. Only
the transcriber's ``ack_wait`` and ``max_deliver`` are settings (``SCRIBE_ACK_WAIT_S``,
``SCRIBE_MAX_DELIVER``), because how long one ASR call may take depends on the backend, and,
with an API backend, its ``max_ack_pending`` (``SCRIBE_API_MAX_IN_FLIGHT``).
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import api as js_api

from core import subjects
from core.settings import Settings

_DAY_S = 86_400.0


@dataclass(frozen=True)
class Stream:
    """One JetStream stream.

    Attributes:
        name: The stream's name.
        subjects: The subjects it stores.
        work_queue: Messages are removed once acked (work queue) rather than kept until
            ``max_age_s`` (limits: replayable).
        max_age_s: How long a message is kept at most.
        duplicate_window_s: How long a ``Nats-Msg-Id`` is remembered to drop a repeated publish.
        max_msg_size: The largest message the stream accepts, in bytes.
    """

    name: str
    subjects: tuple[str, ...]
    work_queue: bool
    max_age_s: float
    duplicate_window_s: float
    max_msg_size: int

    def config(self) -> js_api.StreamConfig:
        """The configuration nats-py sends to the server."""
        return js_api.StreamConfig(
            name=self.name,
            subjects=list(self.subjects),
            retention=js_api.RetentionPolicy.WORK_QUEUE if self.work_queue else js_api.RetentionPolicy.LIMITS,
            storage=js_api.StorageType.FILE,
            max_age=self.max_age_s,
            duplicate_window=self.duplicate_window_s,
            max_msg_size=self.max_msg_size,
        )


@dataclass(frozen=True)
class Consumer:
    """One durable pull consumer, shared by every process of a service.

    Attributes:
        stream: The stream it reads.
        durable: Its durable name.
        filter_subject: What it takes from the stream.
        ack_wait_s: How long a delivered message may go without an ack or a heartbeat
            before JetStream delivers it again.
        max_deliver: Deliveries before JetStream gives up on a message (and says so in an
            advisory, which fails the message's job).
        max_ack_pending: Messages delivered and not yet acked, over all processes.
        new_only: Start at the messages that arrive after the consumer is made (a consumer of
            the replayable events stream), not at the stream's first message.
    """

    stream: Stream
    durable: str
    filter_subject: str
    ack_wait_s: float
    max_deliver: int
    max_ack_pending: int
    new_only: bool = False
    service: str = ""  # the service that reads it, when its durable name is not the service's name

    @property
    def heartbeat_s(self) -> float:
        """How often a long handler tells JetStream it is still working on a message."""
        return max(1.0, self.ack_wait_s / 4)

    def config(self) -> js_api.ConsumerConfig:
        """The configuration nats-py sends to the server."""
        return js_api.ConsumerConfig(
            durable_name=self.durable,
            filter_subject=self.filter_subject,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            deliver_policy=js_api.DeliverPolicy.NEW if self.new_only else js_api.DeliverPolicy.ALL,
            ack_wait=self.ack_wait_s,
            max_deliver=self.max_deliver,
            max_ack_pending=self.max_ack_pending,
        )


JOBS = Stream(
    name="SCRIBE_JOBS",
    subjects=(subjects.JOBS_SUBMITTED,),
    work_queue=True,
    max_age_s=7 * _DAY_S,
    duplicate_window_s=600.0,
    max_msg_size=64 * 1024,
)
CHUNKS = Stream(
    name="SCRIBE_CHUNKS",
    subjects=(subjects.CHUNKS,),
    work_queue=True,
    max_age_s=_DAY_S,
    duplicate_window_s=1800.0,
    max_msg_size=8 * 1024 * 1024,  # a 60 s FLAC chunk is about 1.3 MB in base64 JSON
)
SEGMENTS = Stream(
    name="SCRIBE_SEGMENTS",
    subjects=(f"{subjects.SEGMENTS_PREFIX}.>",),
    work_queue=True,
    max_age_s=_DAY_S,
    duplicate_window_s=1800.0,
    max_msg_size=1024 * 1024,
)
EVENTS = Stream(
    name="SCRIBE_EVENTS",
    subjects=(f"{subjects.EVENTS_PREFIX}.>",),
    work_queue=False,  # kept for a week: late subscribers replay a job from its start
    max_age_s=7 * _DAY_S,
    duplicate_window_s=600.0,
    max_msg_size=1024 * 1024,
)
ALERTS = Stream(
    name="SCRIBE_ALERTS",
    subjects=(subjects.ALERTS_COST,),
    work_queue=False,  # kept for a month: an operator replays them (nats stream view SCRIBE_ALERTS)
    max_age_s=30 * _DAY_S,
    duplicate_window_s=_DAY_S,  # an alert published again the same day (after a rolled-back claim) is dropped
    max_msg_size=64 * 1024,
)
LIVE = Stream(
    name="SCRIBE_LIVE",
    subjects=(subjects.LIVE_SESSIONS,),
    work_queue=True,  # a session's message is acked when it ends
    max_age_s=_DAY_S,
    duplicate_window_s=600.0,
    max_msg_size=64 * 1024,
)
LIVE_AUDIO = Stream(
    name="SCRIBE_LIVE_AUDIO",
    subjects=(f"{subjects.LIVE_AUDIO_PREFIX}.>",),
    work_queue=False,  # read again from the start by a transcriber taking a session over; purged at its end
    max_age_s=_DAY_S,
    duplicate_window_s=600.0,
    max_msg_size=256 * 1024,
)
STREAMS = (JOBS, CHUNKS, SEGMENTS, EVENTS, ALERTS, LIVE, LIVE_AUDIO)
# Live sessions, apart from file chunks so that one never waits behind a 60 s chunk. ack_wait is the
# takeover time: a transcriber that stops heartbeating loses its sessions to others.
LIVE_CONSUMER = Consumer(LIVE, "live", subjects.LIVE_SESSIONS, 10.0, 5, 10_000, service="transcriber")
WEBHOOK_SPARE_DELIVERIES = 100  # deliveries of a webhook's event beyond its attempts (see Topology.from_settings)


@dataclass(frozen=True)
class Bucket:
    """A JetStream object store: files that move between processes (uploads), not paths.

    Attributes:
        name: The bucket's name (its stream is ``OBJ_<name>``).
        max_age_s: How long an object is kept.
    """

    name: str
    max_age_s: float


UPLOADS_BUCKET = "scribe-uploads"
AUDIO_BUCKET = "scribe-audio"  # each job's audio for playback, under the job's id


@dataclass(frozen=True)
class Topology:
    """The streams, the services' consumers and the two buckets, for one set of settings.

    ``webhooks`` and ``cost_alerts`` are the gateway's: every gateway process shares them, so each
    job's completion webhook, and each cost alert, is sent by one of them.
    """

    streamer: Consumer
    transcriber: Consumer
    romanizer: Consumer
    live: Consumer = LIVE_CONSUMER
    webhooks: Consumer = Consumer(
        EVENTS, "webhooks", f"{subjects.EVENTS_PREFIX}.>", 60.0, 6 + WEBHOOK_SPARE_DELIVERIES, 10_000, new_only=True
    )
    cost_alerts: Consumer = Consumer(
        ALERTS, "cost-alerts", subjects.ALERTS_COST, 60.0, 6 + WEBHOOK_SPARE_DELIVERIES, 1000, new_only=True
    )
    uploads: Bucket = Bucket(UPLOADS_BUCKET, _DAY_S)
    audio: Bucket = Bucket(AUDIO_BUCKET, 7 * _DAY_S)
    streams: tuple[Stream, ...] = STREAMS

    @classmethod
    def from_settings(cls, settings: Settings) -> Topology:
        """The topology every process of a deployment must agree on."""
        return cls(
            streamer=Consumer(JOBS, "streamer", subjects.JOBS_SUBMITTED, 60.0, 3, 64),
            # With an API backend, max_ack_pending is the one limit on calls in flight over every transcriber
            # (SCRIBE_API_MAX_IN_FLIGHT). A chunk nak'ed with a delay stays ack-pending and keeps its place:
            # it is backing off (a rate limit, a server error) and will be a call again.
            transcriber=Consumer(
                CHUNKS,
                "transcriber",
                subjects.CHUNKS,
                settings.ack_wait_s,
                settings.max_deliver,
                settings.api_max_in_flight if settings.asr_backend == "openai" else 256,
            ),
            romanizer=Consumer(SEGMENTS, "romanizer", f"{subjects.SEGMENTS_PREFIX}.>", 30.0, 10, 1024),
            # Every event of every job passes through it (progress and lines are acked at once).
            # Attempts are counted in PostgreSQL (SCRIBE_WEBHOOK_MAX_ATTEMPTS); the spare deliveries
            # absorb handler errors (PostgreSQL down for half an hour, at the loop's backoff of up to 30 s)
            # and crashes, after which a redelivery only finds the delivery ended. A retry waiting
            # out its delay (nak) stays ack-pending: max_ack_pending is large so that receivers
            # that are down for a while do not stop every other job's webhook.
            webhooks=Consumer(
                EVENTS,
                "webhooks",
                f"{subjects.EVENTS_PREFIX}.>",
                60.0,
                settings.webhook_max_attempts + WEBHOOK_SPARE_DELIVERIES,
                10_000,
                new_only=True,
            ),
            # The gateways' cost alerts, POSTed to SCRIBE_ALERT_WEBHOOK_URL as webhooks are (same attempts).
            cost_alerts=Consumer(
                ALERTS,
                "cost-alerts",
                subjects.ALERTS_COST,
                60.0,
                settings.webhook_max_attempts + WEBHOOK_SPARE_DELIVERIES,
                1000,
                new_only=True,
            ),
            uploads=Bucket(UPLOADS_BUCKET, settings.upload_retention_s),
            audio=Bucket(AUDIO_BUCKET, settings.audio_retention_s),
        )

    @property
    def consumers(self) -> tuple[Consumer, ...]:
        """Every durable consumer."""
        return (self.streamer, self.transcriber, self.romanizer, self.live, self.webhooks, self.cost_alerts)

"""Submitting a job and following its events: what the terminal, the gateway and integrations share.

::

    job_id = await submit(js, "clip.mp3")
    async for event in follow(js, job_id):
        ...   # Progress, Partial (its new lines), Revised (a line corrected), and last Final or Failed

Everything goes through NATS: the job is published on ``scribe.jobs.submitted`` (the
streamer makes its row) and its events are read back from ``scribe.events.<job_id>``,
which JetStream keeps for a week, so a follower that starts late, or again after a lost
connection, sees the job from its first event.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator
from typing import BinaryIO

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api

from core import bus, subjects, uploads
from core.messages import Cancelled, Failed, Final, JobEvent, JobOptions, JobSubmitted, Partial, job_event_decoder


async def upload(js: JetStreamContext, file: BinaryIO | bytes) -> str:
    """Store a file in the uploads bucket, for a job any streamer can read.

    Args:
        js: A JetStream context.
        file: The bytes, or a binary file open for reading.

    Returns:
        The source to submit: ``upload:<name>``.
    """
    return await uploads.put(js, file)


async def submit(
    js: JetStreamContext,
    source: str,
    *,
    options: JobOptions | None = None,
    job_id: str | None = None,
    user_id: str | None = None,
    max_seconds: float | None = None,
    plan: str | None = None,
) -> str:
    """Submit a job.

    Args:
        js: A JetStream context.
        source: An http(s) URL or an upload (:func:`upload`); a path only for the streamer of
            this process (``Streamer.allow_local_file``).
        options: What the submitter asked for.
        job_id: The job's id; a new random one when ``None``. Submitting the same id again
            within the stream's duplicate window is dropped, so a retried submit is safe.
        user_id: Who the job is for, when known.
        max_seconds: The longest audio the submitter's plan allows per job; None: only the
            deployment's limit applies.
        plan: The plan's name, for the messages about its limit ("the free plan allows ...").

    Returns:
        The job's id.
    """
    job_id = job_id or uuid.uuid4().hex
    job = JobSubmitted(
        job_id=job_id,
        source=source,
        user_id=user_id,
        options=options or JobOptions(),
        max_seconds=max_seconds,
        plan=plan,
    )
    await bus.publish(js, subjects.JOBS_SUBMITTED, job, msg_id=job_id)
    return job_id


async def follow(js: JetStreamContext, job_id: str, *, after: int = -1) -> AsyncGenerator[JobEvent, None]:
    """The job's events in order, from its first one to its ``Final``, ``Failed`` or ``Cancelled`` (yielded last).

    Args:
        js: A JetStream context.
        job_id: The job.
        after: The ``seq`` of the last line already seen: ``Partial`` events come without the
            lines up to it, so a follower that resumes sees every line once. ``-1``: none seen.

    Yields:
        ``Progress``, ``Partial``, ``Revised`` (a line corrected by the job's owner, the one way a
        line changes once sent) and, last, ``Final``, ``Failed`` or ``Cancelled``. Corrections made
        after the end are not followed: the store has them (``store.repo.transcript``).

    The subscription ends with the last event; a caller that may stop earlier wraps the
    generator in ``contextlib.aclosing`` so it ends then too.
    """
    events: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_event(msg: Msg) -> None:
        await events.put(msg.data)

    sub = await js.subscribe(
        subjects.events(job_id), cb=on_event, ordered_consumer=True, deliver_policy=js_api.DeliverPolicy.ALL
    )
    try:
        while True:
            event = job_event_decoder.decode(await events.get())
            if isinstance(event, Partial) and event.segments and event.segments[0].seq <= after:
                event = msgspec.structs.replace(event, segments=[s for s in event.segments if s.seq > after])
            yield event
            if isinstance(event, Final | Failed | Cancelled):
                return
    finally:
        await sub.unsubscribe()

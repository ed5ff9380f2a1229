"""One job's events for every viewer in this gateway process: one NATS subscription, fanned out.

A :class:`JobFeed` subscribes to ``scribe.events.<job_id>`` from the job's first event (the
stream keeps a week), numbers the events it receives (``seq``, from 1) and keeps them, so a
viewer who joins late gets a snapshot cut at an exact event, then every later event: no gap,
no repeat. Each viewer has a bounded queue; a viewer that falls behind is marked lagged and
dropped, never slowing the others or growing memory. Any number of gateway processes can serve
one job: each has its own feed from the same replayable stream.

A live session's notices (its interim line, ``lagging``) come on core NATS
(``scribe.live.updates.<job_id>``): each is offered to the viewers there at that moment with the
number of the last event, and never kept, so a viewer who joins later or resumes never gets one
replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js import api as js_api

from core import subjects
from core.messages import Cancelled, JobEvent, LiveClaimed, LiveNotice, job_event_decoder, live_notice_decoder
from core.topology import EVENTS

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Viewer:
    """One websocket or SSE client of a feed.

    Attributes:
        queue: ``(seq, event)`` pairs not yet sent, at most the feed's ``queue_size``.
        encoded: The feed's envelopes as JSON text by event number, shared by every viewer that
            gets the same envelope (most do: an event is encoded once, not once per viewer).
        lagged: Set when an event did not fit: the viewer must be told and closed.
        purged: Set when the job was purged: the viewer must be told and closed (a marker is queued
            to wake it; it is not an event of the job and is never sent).
    """

    queue: asyncio.Queue[tuple[int, JobEvent | LiveNotice]]
    encoded: dict[int, str] = field(default_factory=dict)
    lagged: bool = False
    purged: bool = False

    def offer(self, seq: int, event: JobEvent | LiveNotice) -> None:
        if self.lagged:
            return
        try:
            self.queue.put_nowait((seq, event))
        except asyncio.QueueFull:
            self.lagged = True


class JobFeed:
    """The events of one job, kept and fanned out to this process's viewers."""

    def __init__(self, js: JetStreamContext, job_id: str, *, queue_size: int, nc: NATS | None = None) -> None:
        self.js = js
        self.nc = nc
        self.job_id = job_id
        self.queue_size = queue_size
        self.history: list[JobEvent] = []
        self.viewers: set[Viewer] = set()
        self._sub: Subscription | None = None
        self._notices: Subscription | None = None
        self._arrived = asyncio.Event()
        self.encoded: dict[int, str] = {}

    async def start(self, *, catch_up_s: float = 5.0) -> None:
        """Subscribe from the job's first event, and wait until what the stream held then has arrived,
        so the first viewer's snapshot is complete."""
        subject = subjects.events(self.job_id)
        if self.nc is not None:
            self._notices = await self.nc.subscribe(subjects.live_updates(self.job_id), cb=self._on_notice)
        self._sub = await self.js.subscribe(
            subject, cb=self._on_event, ordered_consumer=True, deliver_policy=js_api.DeliverPolicy.ALL
        )
        info = await self.js.stream_info(EVENTS.name, subjects_filter=subject)
        held = (info.state.subjects or {}).get(subject, 0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(catch_up_s):
                while len(self.history) < held:
                    self._arrived.clear()
                    await self._arrived.wait()

    async def stop(self) -> None:
        for sub in (self._sub, self._notices):
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        self._sub = self._notices = None

    async def _on_notice(self, msg: Msg) -> None:
        """A live session's notice: to the viewers now, after the last event they have; never kept."""
        try:
            notice = live_notice_decoder.decode(msg.data)
        except ValueError:
            logger.warning("unreadable live notice dropped", extra={"job_id": self.job_id})
            return
        if isinstance(notice, LiveClaimed):
            return
        for viewer in self.viewers:
            viewer.offer(len(self.history), notice)

    async def _on_event(self, msg: Msg) -> None:
        event = job_event_decoder.decode(msg.data)
        self.history.append(event)
        seq = len(self.history)
        self._arrived.set()
        while len(self.encoded) > 64:  # viewers this far behind are lagged anyway
            del self.encoded[next(iter(self.encoded))]
        for viewer in self.viewers:
            viewer.offer(seq, event)

    def join(self) -> tuple[list[JobEvent], Viewer]:
        """The events so far and a viewer that gets every later one (no await between: an exact cut)."""
        viewer = Viewer(asyncio.Queue(self.queue_size), self.encoded)
        self.viewers.add(viewer)
        return list(self.history), viewer


class Feeds:
    """This process's feeds, one per job with viewers; a feed stops when its last viewer leaves."""

    def __init__(self, js: JetStreamContext, *, queue_size: int, nc: NATS | None = None) -> None:
        self.js = js
        self.nc = nc
        self.queue_size = queue_size
        self._feeds: dict[str, JobFeed] = {}
        self._starting: dict[str, asyncio.Future[JobFeed]] = {}

    async def _feed(self, job_id: str) -> JobFeed:
        if (feed := self._feeds.get(job_id)) is not None:
            return feed
        if (starting := self._starting.get(job_id)) is not None:
            return await asyncio.shield(starting)
        future: asyncio.Future[JobFeed] = asyncio.get_running_loop().create_future()
        self._starting[job_id] = future
        feed = JobFeed(self.js, job_id, queue_size=self.queue_size, nc=self.nc)
        try:
            await feed.start()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()  # the viewer that started it left; another retries
            else:
                future.set_exception(exc)
                future.add_done_callback(lambda done: done.exception())  # retrieved even when nobody waits
            raise
        finally:
            del self._starting[job_id]
        self._feeds[job_id] = feed
        future.set_result(feed)
        return feed

    @contextlib.asynccontextmanager
    async def watch(self, job_id: str) -> AsyncIterator[tuple[list[JobEvent], Viewer]]:
        """Join the job's feed: the events so far, and the viewer that receives the rest."""
        feed = await self._feed(job_id)
        history, viewer = feed.join()
        try:
            yield history, viewer
        finally:
            feed.viewers.discard(viewer)
            if not feed.viewers and self._feeds.get(job_id) is feed:
                del self._feeds[job_id]
                await feed.stop()

    async def purged(self, job_id: str) -> None:
        """The job was purged: its viewers are told and closed, and its events forgotten."""
        feed = self._feeds.pop(job_id, None)
        if feed is None:
            return
        for viewer in feed.viewers:
            viewer.purged = True
            with contextlib.suppress(asyncio.QueueFull):  # wakes a viewer waiting for its next event
                viewer.queue.put_nowait((0, Cancelled(job_id=job_id, reason="purged")))
        feed.history.clear()
        feed.encoded.clear()
        await feed.stop()

    async def close(self) -> None:
        for feed in list(self._feeds.values()):
            await feed.stop()
        self._feeds.clear()

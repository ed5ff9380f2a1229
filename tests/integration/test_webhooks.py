"""Completion webhooks, driven through the gateway's notifier (``gateway.webhooks.Notifier``).

Real NATS JetStream and PostgreSQL, and a real HTTP receiver on 127.0.0.1 (``http.server`` in
a thread). Events are published as the services publish them (``core.bus.publish_event``); the
notifiers run on the shared ``webhooks`` consumer as every gateway process runs them. "Nothing
more will be sent" is waited for, not slept for: once the consumer has no event left undelivered
or unacked, no notifier holds one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from core import bus, subjects
from core.messages import Cancelled, Failed, Final, JobEvent, JobOptions, Partial, Progress, Usage, encoder
from core.process import Runtime
from core.settings import Settings
from gateway import webhooks
from store import repo
from store import webhooks as store
from streamer.errors import BlockedURL, InputError

pytestmark = pytest.mark.integration

FAST = (0.05, 0.1)  # retry delays for tests: the schedule's shape, without its minutes
WAIT_S = 15.0


@dataclass
class Receiver:
    """A webhook receiver: answers each POST with the next queued status (then 200) and keeps it.

    Attributes:
        statuses: Answers still queued.
        location: The ``Location`` header of a 3xx answer.
        drip_s: > 0: answer 200 one header line at a time, this long apart (a slow receiver).
        got: ``(headers, body)`` of every POST, in order.
        url: Where it listens.
    """

    statuses: list[int] = field(default_factory=list)
    location: str = ""
    drip_s: float = 0.0
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    def ids(self) -> Counter[str]:
        return Counter(headers["webhook-id"] for headers, _ in self.got)


@contextlib.contextmanager
def receiver(*statuses: int, location: str = "", drip_s: float = 0.0) -> Iterator[Receiver]:
    state = Receiver(list(statuses), location, drip_s)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with lock:
                state.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = state.statuses.pop(0) if state.statuses else 200
            with contextlib.suppress(OSError):  # a client that gave up has closed the connection
                if state.drip_s:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    for n in range(100):
                        self.wfile.flush()
                        time.sleep(state.drip_s)
                        self.wfile.write(f"x-drip-{n}: .\r\n".encode())
                    self.wfile.write(b"content-length: 0\r\n\r\n")
                    return
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("location", state.location)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/scribe"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@contextlib.asynccontextmanager
async def notifiers(rt: Runtime, settings: Settings, count: int = 1) -> AsyncIterator[None]:
    """``count`` notifiers on the shared consumer, each on its own NATS connection (a gateway process each)."""
    secret = await repo.secret(rt.pool, webhooks.SECRET_NAME)
    stop = asyncio.Event()
    connections = [rt.nc] + [await bus.connect(rt.settings.nats_url, f"gateway-{i}") for i in range(1, count)]
    running = [
        webhooks.Notifier(nc, rt.pool, rt.topology.webhooks, settings, secret, delays=FAST) for nc in connections
    ]
    tasks = [asyncio.create_task(notifier.run(stop)) for notifier in running]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for nc in connections[1:]:
            await nc.close()


async def _job(rt: Runtime, url: str | None) -> str:
    job_id = uuid.uuid4().hex
    await repo.create_job(rt.pool, job_id, "https://example.com/a.mp3", user_id=None, options=JobOptions())
    if url is not None:
        await store.set_url(rt.pool, job_id, url)
    return job_id


def _final(job_id: str) -> Final:
    return Final(job_id=job_id, duration=3.0, segment_count=2, usage=Usage("local", "whisper-base", 3.0, 0.0))


async def _poll(condition: Callable[[], Any]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not await condition():  # noqa: ASYNC110 (the notifier's outcome is in PostgreSQL)
            await asyncio.sleep(0.05)


async def _ended(rt: Runtime, *job_ids: str) -> dict[str, store.Delivery]:
    """Each job's delivery once none of them is pending any more."""
    found: dict[str, store.Delivery | None] = {}

    async def ended() -> bool:
        for job_id in job_ids:
            found[job_id] = await store.delivery(rt.pool, job_id)
        return all(d is not None and d.state != "pending" for d in found.values())

    await _poll(ended)
    return {job_id: d for job_id, d in found.items() if d is not None}


async def _quiet(rt: Runtime) -> None:
    """Every event published so far handled and acked: no notifier holds one, nothing more is sent."""
    js, consumer = rt.js, rt.topology.webhooks

    async def quiet() -> bool:
        info = await js.consumer_info(consumer.stream.name, consumer.durable)
        return info.num_pending == 0 and info.num_ack_pending == 0

    await _poll(quiet)


async def _publish(rt: Runtime, *events: JobEvent) -> None:
    for event in events:
        await bus.publish_event(rt.js, event)


async def test_a_final_event_is_posted_once_and_signed_for_its_job_only(settings: Settings, rt: Runtime) -> None:
    with receiver() as site:
        async with notifiers(rt, settings):
            hooked, silent = await _job(rt, site.url), await _job(rt, None)
            final = _final(hooked)
            await _publish(
                rt,
                Progress(job_id=hooked, chunks_published=1, seconds_decoded=1.0),
                Partial(job_id=hooked, chunk_seq=0, segments=[], chunks_done=1),
                _final(silent),
                final,
            )
            ended = await _ended(rt, hooked)
            await _quiet(rt)
    assert ended[hooked] == store.Delivery("delivered", 1, 200, None)
    assert await store.delivery(rt.pool, silent) is None  # no webhook: nothing recorded, nothing sent
    assert len(site.got) == 1
    headers, body = site.got[0]
    assert body == encoder.encode(final)  # the event exactly as on NATS
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "CantoneseScribe-webhook/1"
    assert headers["webhook-id"] == f"{hooked}.final"
    deployment = await repo.secret(rt.pool, webhooks.SECRET_NAME)
    secret = webhooks.webhook_secret(deployment, hooked)
    assert secret.startswith("whsec_")
    assert webhooks.verify(secret, headers, body)
    assert not webhooks.verify(webhooks.webhook_secret(deployment, silent), headers, body)
    assert not webhooks.verify(secret, headers, body.replace(b'"duration":3.0', b'"duration":4.0'))
    assert not webhooks.verify(secret, headers, body, now=time.time() + 600)  # replayed ten minutes later


async def test_failed_attempts_are_retried_then_delivered_or_given_up(
    settings: Settings, rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.webhooks")
    with (
        receiver(500, 503) as flaky,
        receiver(*[500] * 10) as broken,
        receiver(410) as gone,
        receiver() as target,
        receiver(*[302] * 10, location="") as moved,
    ):
        moved.location = target.url
        async with notifiers(rt, settings.with_(webhook_max_attempts=3)):
            jobs = {site.url: await _job(rt, site.url) for site in (flaky, broken, gone, moved)}
            recovers, never, stopped, redirected = jobs.values()
            await _publish(
                rt,
                _final(recovers),
                Failed(job_id=never, reason="The link is not media."),
                Cancelled(job_id=stopped),
                _final(redirected),
            )
            ended = await _ended(rt, *jobs.values())
            await _quiet(rt)
    assert ended[recovers] == store.Delivery("delivered", 3, 200, None)
    assert (ended[never].state, ended[never].attempts, ended[never].last_status) == ("failed", 3, 500)
    assert (ended[stopped].state, ended[stopped].attempts, ended[stopped].last_status) == ("failed", 1, 410)
    assert (ended[redirected].state, ended[redirected].attempts) == ("failed", 3)
    assert "redirect" in (ended[redirected].last_error or "")
    assert flaky.ids() == {f"{recovers}.final": 3}  # the same id on every attempt: the receiver can drop repeats
    assert broken.ids() == {f"{never}.failed": 3}
    assert gone.ids() == {f"{stopped}.cancelled": 1}
    assert len(moved.got) == 3 and target.got == []  # redirects are not followed
    secret = webhooks.webhook_secret(await repo.secret(rt.pool, webhooks.SECRET_NAME), recovers)
    assert all(webhooks.verify(secret, headers, body) for headers, body in flaky.got)
    given_up = [r for r in caplog.records if r.levelno == logging.WARNING and r.getMessage() == "webhook given up"]
    assert {getattr(r, "job_id", None) for r in given_up} == {never, stopped, redirected}
    assert all(getattr(r, "host", None) == "127.0.0.1" for r in given_up)


async def test_a_receiver_answering_a_byte_at_a_time_is_cut_off_at_the_deadline(
    settings: Settings, rt: Runtime
) -> None:
    # Each piece comes well within the timeout, so only a deadline on the whole attempt ends it.
    with receiver(drip_s=0.1) as slow:
        async with notifiers(rt, settings.with_(webhook_timeout_s=0.5, webhook_max_attempts=2)):
            job_id = await _job(rt, slow.url)
            await _publish(rt, _final(job_id))
            ended = await _ended(rt, job_id)
    assert ended[job_id] == store.Delivery("failed", 2, None, "No answer within 0.5 s.")
    assert len(slow.got) == 2


async def test_two_gateways_send_each_webhook_once_and_never_again(settings: Settings, rt: Runtime) -> None:
    with receiver() as site:
        async with notifiers(rt, settings, count=2):
            job_ids = [await _job(rt, site.url) for _ in range(8)]
            await _publish(rt, *(_final(job_id) for job_id in job_ids))
            ended = await _ended(rt, *job_ids)
            await _quiet(rt)
            # The same event again (as if its ack was lost and JetStream redelivered it), and a
            # second terminal event for the job: neither is sent.
            again = job_ids[0]
            await bus.publish(rt.js, subjects.events(again), _final(again), msg_id=f"{again}:final:again")
            await _publish(rt, Cancelled(job_id=again))
            await _quiet(rt)
    assert all(delivery == store.Delivery("delivered", 1, 200, None) for delivery in ended.values())
    assert site.ids() == {f"{job_id}.final": 1 for job_id in job_ids}
    assert await store.delivery(rt.pool, again) == store.Delivery("delivered", 1, 200, None)


async def test_a_private_address_is_refused_and_never_called(
    settings: Settings, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(BlockedURL, match=r"private or local network address \(127\.0\.0\.1\)"):
        webhooks.check("http://127.0.0.1:9/hook", allow_private=False)
    with pytest.raises(InputError, match="http:// or https://"):
        webhooks.check("ftp://example.com/hook", allow_private=False)
    with pytest.raises(InputError, match="longer than 2,000 characters"):
        webhooks.check("https://example.com/" + "a" * 2000, allow_private=False)
    webhooks.check("http://127.0.0.1:9/hook", allow_private=True)  # tests and trusted deployments

    public_only = settings.with_(allow_private_urls=False)
    with receiver() as site:
        async with notifiers(rt, public_only):
            # Stored when the name pointed elsewhere, say: refused at delivery, not retried.
            now_private = await _job(rt, site.url)
            await _publish(rt, _final(now_private))
            first = await _ended(rt, now_private)
            # DNS that answers a public address to the check and a private one to the connection:
            # the connection itself is vetted against the address it dials.
            monkeypatch.setattr(webhooks, "_vetted", lambda url, *, allow_private: None)
            rebound = await _job(rt, site.url)
            await _publish(rt, _final(rebound))
            second = await _ended(rt, rebound)
            await _quiet(rt)
    for delivery in (first[now_private], second[rebound]):
        assert (delivery.state, delivery.attempts, delivery.last_status) == ("failed", 1, None)
        assert "private or local network address (127.0.0.1)" in (delivery.last_error or "")
    assert site.got == []

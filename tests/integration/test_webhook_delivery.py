"""Completion webhooks end to end through the gateway: the submit's secret, the status's delivery,
and a private address refused at submit and at delivery (the notifier itself: test_webhooks.py).

A real local receiver (http.server in a thread), real NATS JetStream and PostgreSQL; the
notifiers are the gateway's own (``gateway.webhooks.Notifier``) run as the gateway runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from core import bus
from core.messages import Final, JobOptions, Usage
from core.process import Runtime
from gateway import webhooks
from gateway.app import create_app
from store import repo
from store import webhooks as store

pytestmark = pytest.mark.integration


@dataclass
class Receiver:
    """Answers POSTs with the statuses queued (then 200), keeping what it got."""

    statuses: list[int] = field(default_factory=list)
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""
    arrived: threading.Event = field(default_factory=threading.Event)


@contextlib.contextmanager
def receiver(*statuses: int) -> Iterator[Receiver]:
    state = Receiver(list(statuses))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            state.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            state.arrived.set()
            self.send_response(state.statuses.pop(0) if state.statuses else 200)
            self.send_header("content-length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/scribe"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()


@contextlib.asynccontextmanager
async def notifiers(rt: Runtime, settings: Any, count: int = 1) -> AsyncIterator[None]:
    """``count`` notifiers (as many gateway processes' worth) on the shared consumer, with short retries."""
    stop = asyncio.Event()
    secret = await repo.secret(rt.pool, webhooks.SECRET_NAME)
    running = [
        webhooks.Notifier(rt.nc, rt.pool, rt.topology.webhooks, settings, secret, delays=(0.1, 0.2))
        for _ in range(count)
    ]
    tasks = [asyncio.create_task(notifier.run(stop)) for notifier in running]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def _job(rt: Runtime, url: str | None) -> str:
    job_id = uuid.uuid4().hex
    await repo.create_job(rt.pool, job_id, "https://example.com/a.mp3", user_id=None, options=JobOptions())
    if url is not None:
        await store.set_url(rt.pool, job_id, url)
    return job_id


def _final(job_id: str) -> Final:
    return Final(job_id=job_id, duration=3.0, segment_count=2, usage=Usage("local", "whisper-base", 3.0, 0.0))


async def _until(condition: Any, limit_s: float = 20) -> None:
    async with asyncio.timeout(limit_s):
        while not await condition():  # noqa: ASYNC110 (polling the store the notifier writes)
            await asyncio.sleep(0.05)


async def test_a_private_address_is_refused_at_submit_and_never_called(settings, nats_url, database_url, rt) -> None:
    public_only = settings.with_(allow_private_urls=False)
    with pytest.raises(webhooks.InputError, match="private or local network address"):
        webhooks.check("http://127.0.0.1:9/hook", allow_private=False)
    with pytest.raises(webhooks.InputError, match="http"):
        webhooks.check("ftp://example.com/hook", allow_private=False)
    with receiver() as site:
        async with notifiers(rt, public_only):
            job_id = await _job(rt, site.url)  # stored before the rules changed, say
            await bus.publish_event(rt.js, _final(job_id))

            async def ended() -> bool:
                found = await store.delivery(rt.pool, job_id)
                return found is not None and found.state == "failed"

            await _until(ended)
    found = await store.delivery(rt.pool, job_id)
    assert found is not None and found.attempts == 1 and "private" in (found.last_error or "")
    assert site.got == []
    cfg = public_only.with_(nats_url=nats_url, database_url=database_url)
    async with AsyncTestClient(app=create_app(cfg), base_url="http://127.0.0.1") as client:
        refused = await client.post(
            "/v1/jobs", json={"url": "http://93.184.215.14/a.mp3", "webhook_url": "http://10.0.0.8/hook"}
        )
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_webhook_url"


async def test_the_submit_answers_with_the_secret_and_the_status_shows_the_delivery(
    settings, nats_url, database_url, rt
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    with receiver() as site:
        async with AsyncTestClient(app=create_app(cfg), base_url="http://127.0.0.1") as client:
            accepted = await client.post("/v1/jobs", json={"url": "http://127.0.0.1:9/a.mp3", "webhook_url": site.url})
            plain = await client.post("/v1/jobs", json={"url": "http://127.0.0.1:9/a.mp3"})
            body = accepted.json()
            job_id, token, secret = body["job_id"], body["token"], body["webhook_secret"]
            before = (await client.get(f"/v1/jobs/{job_id}", params={"token": token})).json()["webhook"]
            await bus.publish_event(rt.js, _final(job_id))  # the app's own notifier sends it
            await asyncio.to_thread(site.arrived.wait, 20)

            async def shown() -> bool:
                status = (await client.get(f"/v1/jobs/{job_id}", params={"token": token})).json()
                return bool(status["webhook"]["state"] == "delivered")

            await _until(shown)
    assert secret.startswith("whsec_") and secret != token and "webhook_secret" not in plain.json()
    assert before == {"state": "pending", "attempts": 0, "last_status": None, "last_error": None}
    headers, payload = site.got[0]
    assert webhooks.verify(secret, headers, payload)

"""Completion webhooks end to end through the gateway: the submit's secret, the status's delivery,
and a private address refused at submit and at delivery (the notifier itself: test_webhooks.py).

A real local receiver (http.server in a thread), real NATS JetStream and PostgreSQL; the
notifiers are the gateway's own (``gateway.webhooks.Notifier``) run as the gateway runs them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from core import bus
from gateway import webhooks
from gateway.app import create_app
from store import webhooks as store
from tests.integration.test_webhooks import _final, _job, notifiers, receiver

pytestmark = pytest.mark.integration


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

            async def arrived() -> bool:
                return bool(site.got)

            await _until(arrived)

            async def shown() -> bool:
                status = (await client.get(f"/v1/jobs/{job_id}", params={"token": token})).json()
                return bool(status["webhook"]["state"] == "delivered")

            await _until(shown)
    assert secret.startswith("whsec_") and secret != token and "webhook_secret" not in plain.json()
    assert before == {"state": "pending", "attempts": 0, "last_status": None, "last_error": None}
    headers, payload = site.got[0]
    assert webhooks.verify(secret, headers, payload)

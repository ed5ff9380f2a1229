"""Cost alerts POSTed to the operator's ``SCRIBE_ALERT_WEBHOOK_URL``; a service of every gateway process.

A transcriber publishes each alert once on ``scribe.alerts.cost`` (:mod:`transcriber.alerts`).
Every gateway process reads the durable ``cost-alerts`` consumer of the ``SCRIBE_ALERTS`` stream,
so JetStream hands each alert to one of them; the alert's row in ``cost_alerts`` counts the
attempts (:func:`store.alerts.claim_delivery`), so a redelivery never sends an ended one again.
The POST is a job webhook's (:mod:`gateway.webhooks`): the body is the alert exactly as on NATS,
``webhook-id`` is ``cost-alert.<day>.<kind>`` on every attempt, it goes through the SSRF guard
(a private address needs ``SCRIBE_ALLOW_PRIVATE_URLS``), and it is retried with backoff up to
``SCRIBE_WEBHOOK_MAX_ATTEMPTS`` attempts. It is signed (``webhook-signature``, Standard Webhooks)
when ``SCRIBE_ALERT_WEBHOOK_SECRET`` is set; without it the URL itself is the secret, as with
most chat and paging webhooks. With no URL set, alerts are acked and left in the store and stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from core.messages import CostAlert, cost_alert_decoder
from core.process import Runtime
from core.settings import Settings
from core.topology import Consumer
from core.worker import consume, heartbeat
from gateway.webhooks import RETRY_DELAYS_S, USER_AGENT, post, retry_delay, signed_headers
from store import alerts as store
from store.webhooks import DeliveryState

logger = logging.getLogger(__name__)


def alert_headers(alert: CostAlert, body: bytes, secret: str) -> dict[str, str]:
    """The POST's headers: signed with ``secret`` (``whsec_…``) when there is one."""
    message_id = f"cost-alert.{alert.day.isoformat()}.{alert.kind}"
    if secret:
        return signed_headers(secret, message_id, body)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(time.time())),
    }


class AlertSender:
    """Sends each cost alert to ``SCRIBE_ALERT_WEBHOOK_URL`` (``core.process.Service``).

    Args:
        nc: The process's NATS connection.
        pool: The asyncpg pool.
        consumer: ``Topology.cost_alerts``, shared by every gateway process.
        settings: The URL, its secret, the timeout and attempts, whether private addresses may be called.
        delays: The waits between attempts (tests make them short).
    """

    def __init__(
        self, nc: NATS, pool: Any, consumer: Consumer, settings: Settings, *, delays: Sequence[float] = RETRY_DELAYS_S
    ) -> None:
        self.nc = nc
        self.pool = pool
        self.consumer = consumer
        self.settings = settings
        self.delays = delays

    @classmethod
    async def open(cls, rt: Runtime) -> AlertSender:
        return cls(rt.nc, rt.pool, rt.topology.cost_alerts, rt.settings)

    async def run(self, stop: asyncio.Event) -> None:
        """Send alerts until ``stop`` is set; an attempt under way is finished first."""
        await consume(self.nc, self.consumer, handler=self.handle, stop=stop, concurrency=2)

    async def close(self) -> None:
        """Nothing to release: the connections belong to the process."""

    async def handle(self, msg: Msg) -> None:
        """One alert: ack it (no URL, or sent already), or make one attempt and ack or nak (retry)."""
        try:
            alert = cost_alert_decoder.decode(msg.data)
        except msgspec.DecodeError:
            logger.warning("undecodable cost alert skipped", extra={"subject": msg.subject})
            await msg.ack()
            return
        url = self.settings.alert_webhook_url.strip()
        if not url:
            await msg.ack()
            return
        claimed = await store.claim_delivery(self.pool, alert)
        if claimed.webhook_state != "pending":
            await msg.ack()  # delivered or given up already (a redelivery)
            return
        async with heartbeat(msg, self.consumer.heartbeat_s):
            await self.attempt(msg, alert, url, attempts_before=claimed.webhook_attempts)

    async def attempt(self, msg: Msg, alert: CostAlert, url: str, *, attempts_before: int) -> None:
        """POST the alert, store the outcome, then ack (ended) or nak with the next delay (retry)."""
        answer = await post(
            url,
            msg.data,
            alert_headers(alert, msg.data, self.settings.alert_webhook_secret),
            allow_private=self.settings.allow_private_urls,
            timeout_s=self.settings.webhook_timeout_s,
        )
        state: DeliveryState
        if answer.ok:
            state = "delivered"
        elif answer.final or attempts_before + 1 >= self.settings.webhook_max_attempts:
            state = "failed"
        else:
            state = "pending"
        attempts = await store.record_attempt(
            self.pool,
            alert.day,
            alert.kind,
            state=state,
            status=answer.status,
            error=None if answer.ok else answer.error,
        )
        log: dict[str, Any] = {"day": alert.day.isoformat(), "kind": alert.kind, "host": urlsplit(url).hostname}
        log |= {"status": answer.status, "attempt": attempts, "error": answer.error}
        if attempts is None:  # ended meanwhile, by a redelivery of this alert elsewhere
            await msg.ack()
        elif state == "pending":
            delay = retry_delay(self.delays, attempts)
            logger.info("cost alert webhook failed; retrying", extra={**log, "retry_in_s": delay})
            await msg.nak(delay=delay)
        elif state == "failed":
            logger.warning("cost alert webhook given up", extra=log)
            await msg.ack()
        else:
            logger.info("cost alert webhook delivered", extra=log)
            await msg.ack()

"""Completion webhooks: a job's terminal event POSTed to the URL given at submit, signed, retried.

- **Once, by one gateway.** Every gateway process reads the durable ``webhooks`` consumer of the
  events stream (:mod:`core.topology`); JetStream hands each event to one of them. Progress and
  lines are skipped; a ``final``, ``failed`` or ``cancelled`` of a job with a webhook is sent.
- **The body** is the event exactly as on NATS (``{"type": "final", "job_id", …}``).
- **Signed** as Standard Webhooks do (standardwebhooks.com): ``webhook-id`` (``<job>.<type>``,
  the same on every retry), ``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256
  of "id.timestamp.body">``. The key is the job's own ``whsec_…`` secret, derived from a
  deployment secret and returned to the submitter alone: the job's read token (which a shared
  link carries) never signs anything.
- **Through the SSRF guard**: the URL must be http(s) to a public address, checked again at
  each attempt against the addresses actually dialled; redirects are not followed.
- **Retried** with backoff and jitter (about 5 s, 30 s, 2 min, 10 min, 30 min) on a timeout, a
  connection error or a non-2xx answer, up to ``SCRIBE_WEBHOOK_MAX_ATTEMPTS`` attempts in all,
  counted in PostgreSQL (:mod:`store.webhooks`) so a gateway restart neither loses nor repeats
  one. A 410 from the receiver, or a URL that now points at a private address, ends it at once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from core.messages import Cancelled, Failed, Final, job_event_decoder
from core.process import Runtime
from core.settings import Settings
from core.topology import Consumer
from core.worker import consume
from store import repo
from store import webhooks as store
from streamer.errors import InputError
from streamer.guard import AddressPolicy, BlockedConnection, check_url, vetting_connections

logger = logging.getLogger(__name__)

SECRET_NAME = "webhook-signing"
SECRET_PREFIX = "whsec_"
MAX_URL_LENGTH = 2000
RETRY_DELAYS_S = (5.0, 30.0, 120.0, 600.0, 1800.0)  # after attempts 1, 2, 3, ...; the last repeats
TOLERANCE_S = 300  # a receiver refuses signatures further off its clock than this
USER_AGENT = "CantoneseScribe-webhook/1"


def check(url: str, *, allow_private: bool) -> None:
    """Refuse a webhook URL the service would not call.

    Raises:
        InputError: Not http(s), too long, or not to a public address; the reason says what to send.
    """
    if len(url) > MAX_URL_LENGTH:
        raise InputError(f"The webhook_url is longer than {MAX_URL_LENGTH:,} characters.")
    if urlsplit(url).scheme not in ("http", "https"):
        raise InputError("The webhook_url must be an http:// or https:// address the service can call.")
    try:
        check_url(url, allow_private=allow_private)
    except InputError as exc:
        raise InputError(f"The webhook_url cannot be used: {exc.reason}") from exc


def webhook_secret(deployment_secret: bytes, job_id: str) -> str:
    """The job's signing secret (``whsec_`` and base64), handed to its submitter only."""
    key = hmac.new(deployment_secret, b"webhook:" + job_id.encode(), hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(key).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header's value for one message."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> bool:
    """What a receiver does: the signature is the job's, over this body, and recent."""
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        message_id, timestamp = lowered["webhook-id"], int(lowered["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_S:
        return False
    expected = sign(secret, message_id, timestamp, body)
    offered = lowered.get("webhook-signature", "").split()
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)


@dataclass(frozen=True)
class Answer:
    """How one attempt went: the receiver's status, or why there was none."""

    status: int | None = None
    error: str | None = None
    refused: bool = False  # the URL may not be called (any more): no retry

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def post(url: str, body: bytes, headers: Mapping[str, str], *, allow_private: bool, timeout_s: float) -> Answer:
    """POST once (blocking; run it in a thread), every connection vetted by the SSRF guard."""
    try:
        check_url(url, allow_private=allow_private)
    except InputError as exc:
        return Answer(error=exc.reason, refused=True)
    try:
        with (
            vetting_connections(AddressPolicy(allow_private=allow_private)),
            httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client,
            client.stream("POST", url, content=body, headers=dict(headers)) as response,
        ):
            for _ in response.iter_bytes(4096):  # the answer's body is not used: read a little, then go
                break
            return Answer(status=response.status_code)
    except httpx.HTTPError as exc:
        cause: BaseException | None = exc
        for _ in range(6):  # httpx wraps httpcore's error, which wraps the guard's refusal
            if isinstance(cause, BlockedConnection):
                return Answer(error=cause.blocked.reason, refused=True)
            cause = None if cause is None else (cause.__cause__ or cause.__context__)
        return Answer(error=f"{type(exc).__name__}: {exc}"[:300])


class Notifier:
    """Sends each job's completion webhook; a service of every gateway process."""

    def __init__(
        self,
        nc: NATS,
        pool: Any,
        consumer: Consumer,
        settings: Settings,
        secret: bytes,
        *,
        delays: Sequence[float] = RETRY_DELAYS_S,
    ) -> None:
        self.nc = nc
        self.pool = pool
        self.consumer = consumer
        self.settings = settings
        self.secret = secret
        self.delays = delays

    @classmethod
    async def open(cls, rt: Runtime) -> Notifier:
        return cls(rt.nc, rt.pool, rt.topology.webhooks, rt.settings, await repo.secret(rt.pool, SECRET_NAME))

    async def run(self, stop: asyncio.Event) -> None:
        await consume(self.nc, self.consumer, handler=self.handle, stop=stop, concurrency=4)

    async def close(self) -> None:
        """Nothing to release: the connections belong to the process."""

    def retry_delay(self, attempts: int) -> float:
        base = self.delays[min(attempts, len(self.delays)) - 1]
        return base * random.uniform(0.8, 1.2)

    async def handle(self, msg: Msg) -> None:
        event = job_event_decoder.decode(msg.data)
        if not isinstance(event, Final | Failed | Cancelled):
            await msg.ack()
            return
        url = await store.url_of(self.pool, event.job_id)
        done = await store.delivery(self.pool, event.job_id)
        if url is None or done is None or done.state != "pending":
            await msg.ack()
            return
        kind = {Final: "final", Failed: "failed", Cancelled: "cancelled"}[type(event)]
        message_id, timestamp = f"{event.job_id}.{kind}", int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(webhook_secret(self.secret, event.job_id), message_id, timestamp, msg.data),
        }
        answer = await asyncio.to_thread(
            post,
            url,
            msg.data,
            headers,
            allow_private=self.settings.allow_private_urls,
            timeout_s=self.settings.webhook_timeout_s,
        )
        last = done.attempts + 1 >= self.settings.webhook_max_attempts
        if answer.ok:
            state = "delivered"
        elif answer.refused or answer.status == 410 or last:
            state = "failed"
        else:
            state = "pending"
        attempts = await store.record_attempt(
            self.pool,
            event.job_id,
            kind,
            state=state,  # type: ignore[arg-type]
            status=answer.status,
            error=answer.error,
        )
        log = {"job_id": event.job_id, "host": urlsplit(url).hostname, "status": answer.status, "attempt": attempts}
        if state == "pending":
            await msg.nak(delay=self.retry_delay(attempts))
            logger.info("webhook attempt failed; retrying", extra={**log, "error": answer.error})
            return
        if state == "failed":
            logger.warning("webhook given up", extra={**log, "error": answer.error})
        else:
            logger.info("webhook delivered", extra=log)
        await msg.ack()

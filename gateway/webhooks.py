"""Completion webhooks: a job's terminal event POSTed to the URL given at submit, signed, retried.

- **Once, by one gateway.** Every gateway process reads the durable ``webhooks`` consumer of the
  events stream (:mod:`core.topology`); JetStream hands each event to one of them. Progress and
  lines are acked and skipped; a ``final``, ``failed`` or ``cancelled`` of a job with a webhook is
  sent. The first terminal event of a job claims its delivery (:func:`store.webhooks.claim`): a
  delivery that has ended is never sent again, whatever JetStream redelivers.
- **The body** is the event exactly as on NATS (``{"type": "final", "job_id", …}``).
- **Signed** as Standard Webhooks do (standardwebhooks.com): ``webhook-id`` (``<job>.<type>``,
  the same on every retry, for the receiver to drop a repeat), ``webhook-timestamp`` and
  ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``. The key is the job's own
  ``whsec_…`` secret, derived from a deployment secret and returned to the submitter alone: the
  job's read token (which a shared link carries) never signs anything.
- **Through the SSRF guard**: the URL must be http(s) to a public address, resolved and checked
  again at each attempt, and every connection the POST makes is vetted against the address it
  dials (:func:`streamer.guard.vetting_connections`), so DNS that changes its answer between the
  check and the connection still cannot reach a private address. Redirects are not followed.
  The POST runs on the event loop under one deadline for the whole attempt: a receiver that
  answers a byte at a time cannot hold a worker (or a thread) past ``SCRIBE_WEBHOOK_TIMEOUT_S``.
- **Retried** with backoff and jitter (about 5 s, 30 s, 2 min, 10 min, 30 min) on a timeout, a
  connection error, a failed DNS lookup or a non-2xx answer, up to ``SCRIBE_WEBHOOK_MAX_ATTEMPTS``
  attempts in all. The wait is JetStream's (``nak(delay=…)``) and the count is PostgreSQL's
  (:mod:`store.webhooks`), so a gateway restart neither loses a retry nor resets the count. A 410
  from the receiver, or a URL that now points at a private address, ends the delivery at once.

Delivery is at least once: a gateway that dies after the receiver answered and before the
outcome is stored sends the event again, with the same ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from core.messages import Cancelled, Failed, Final, job_event_decoder
from core.process import Runtime
from core.settings import Settings
from core.topology import Consumer
from core.worker import consume, heartbeat
from store import repo
from store import webhooks as store
from streamer.errors import BlockedURL, UnreachableURL
from streamer.errors import InputError as InputError  # what check() raises, for its callers to catch
from streamer.guard import AddressPolicy, BlockedConnection, Target, canonical_host, vet, vetting_connections

logger = logging.getLogger(__name__)

SECRET_NAME = "webhook-signing"
SECRET_PREFIX = "whsec_"
MAX_URL_LENGTH = 2000
RETRY_DELAYS_S = (5.0, 30.0, 120.0, 600.0, 1800.0)  # after attempts 1, 2, 3, ...; the last repeats
JITTER = 0.2  # each delay is drawn within +/- 20 %, so receivers that were down are not hit in step
TOLERANCE_S = 300  # a receiver refuses signatures further off its clock than this
USER_AGENT = "CantoneseScribe-webhook/1"
ANSWER_BYTES = 4096  # of the receiver's answer, read and ignored
CONCURRENCY = 8  # POSTs in flight per gateway process: slow receivers must not hold up the others

TERMINAL = frozenset({"final", "failed", "cancelled"})


class _Head(msgspec.Struct):
    """The two fields that decide what to do with an event; the rest is not decoded (partials are big)."""

    type: str
    job_id: str = ""


_head_decoder = msgspec.json.Decoder(_Head)


# --- the URL -----------------------------------------------------------------------------------------


def check(url: str, *, allow_private: bool) -> None:
    """Refuse a webhook URL the service would not call (blocking: it looks the name up).

    Args:
        url: The ``webhook_url`` a submitter gave.
        allow_private: Let loopback and private addresses through (tests, trusted deployments).

    Raises:
        BlockedURL: Too long, not http(s), malformed, or not to a public address.
        UnreachableURL: Its server name does not resolve.
        (Both are ``InputError``s; ``reason`` says what to send instead.)
    """
    _vetted(url, allow_private=allow_private)


def _vetted(url: str, *, allow_private: bool) -> Target:
    """The URL resolved once, every address allowed; the refusal says "webhook_url", not "link"."""
    if len(url) > MAX_URL_LENGTH:
        raise BlockedURL(f"The webhook_url is longer than {MAX_URL_LENGTH:,} characters. Give a shorter address.")
    try:
        parts = urlsplit(url.strip())
        scheme, host = parts.scheme.lower(), parts.hostname
    except ValueError:
        scheme, host = "", None
    if scheme not in ("http", "https"):
        raise BlockedURL("The webhook_url must be an http:// or https:// address that this service can POST to.")
    if not allow_private and host and _local_name(host):
        raise _private(host)
    try:
        target = vet(url, AddressPolicy(allow_private=True))  # parse and resolve; the addresses are judged below
    except BlockedURL as exc:
        raise BlockedURL(f"The webhook_url cannot be used: {exc.reason}") from exc
    except UnreachableURL as exc:
        raise UnreachableURL(f"The webhook_url cannot be reached: {exc.reason}") from exc
    policy = AddressPolicy(allow_private=allow_private)
    for _family, sockaddr in target.addresses:
        if not policy.allows(ipaddress.ip_address(str(sockaddr[0]).split("%")[0])):
            raise _private(target.host)
    return target


def _local_name(host: str) -> bool:
    """``localhost`` and the names under it: this machine whatever DNS says (RFC 6761)."""
    try:
        name = canonical_host(host)
    except BlockedURL:
        return False  # the guard says what is wrong with it
    return name == "localhost" or name.endswith(".localhost")


def _private(host: str | None) -> BlockedURL:
    return BlockedURL(
        f"The webhook_url points to a private or local network address ({host}), which this service does "
        "not call. Give a public http(s) address where your receiver listens."
    )


# --- signing -----------------------------------------------------------------------------------------


def webhook_secret(deployment_secret: bytes, job_id: str) -> str:
    """The job's signing secret (``whsec_`` and base64), handed to its submitter only.

    Args:
        deployment_secret: ``store.repo.secret(pool, SECRET_NAME)``, shared by every gateway.
        job_id: The job.

    Returns:
        The secret a receiver verifies the job's webhook with.
    """
    key = hmac.new(deployment_secret, b"webhook:" + job_id.encode(), hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(key).decode()


async def job_secret(pool: Any, job_id: str) -> str:
    """The job's signing secret, read from the deployment's (one query; cache the deployment's if hot)."""
    return webhook_secret(await repo.secret(pool, SECRET_NAME), job_id)


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header's value for one message.

    Args:
        secret: The job's ``whsec_…`` secret; the HMAC key is the base64 after the prefix.
        message_id: The ``webhook-id`` header.
        timestamp: The ``webhook-timestamp`` header (unix seconds).
        body: The exact bytes POSTed.
    """
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> bool:
    """What a receiver does: the signature is the job's, over this body, and recent.

    Args:
        secret: The job's ``webhook_secret`` from the submit's answer.
        headers: The request's headers (any case).
        body: The request's body, exactly as received (before any JSON parsing).
        now: The receiver's clock (unix seconds); defaults to now.

    Returns:
        True when one of the ``v1`` signatures matches and the timestamp is within 5 minutes.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        message_id, timestamp = lowered["webhook-id"], int(lowered["webhook-timestamp"])
        expected = sign(secret, message_id, timestamp, body)
    except (KeyError, ValueError, binascii.Error):
        return False
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_S:
        return False
    offered = lowered.get("webhook-signature", "").split()
    return any(hmac.compare_digest(expected.encode(), candidate.encode()) for candidate in offered)


def signed_headers(secret: str, message_id: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """Every header of one POST; the timestamp (and so the signature) is the attempt's own."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


# --- one attempt -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """How one attempt went.

    Attributes:
        status: The receiver's HTTP status, or None when there was no answer.
        error: Why the attempt failed, for the job's status (None on success and on a plain 5xx).
        final: No further attempt would help: a 410, or a URL that may not be called.
    """

    status: int | None = None
    error: str | None = None
    final: bool = False

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


async def post(url: str, body: bytes, headers: Mapping[str, str], *, allow_private: bool, timeout_s: float) -> Answer:
    """POST once, through the SSRF guard, within ``timeout_s`` in all (DNS, connect, send, answer).

    Args:
        url: The job's webhook URL.
        body: The event, as on NATS.
        headers: :func:`signed_headers`.
        allow_private: Let loopback and private addresses through.
        timeout_s: The whole attempt's deadline.

    Returns:
        The outcome; never raises for what the receiver or the network does.
    """
    try:
        async with asyncio.timeout(timeout_s):
            try:
                # Blocking lookup in a thread. Its answer only decides whether to try: the connection
                # below resolves again, and the guard vets the address that one dials.
                await asyncio.to_thread(_vetted, url, allow_private=allow_private)
            except BlockedURL as exc:
                return Answer(error=exc.reason, final=True)
            except UnreachableURL as exc:  # DNS down or the name gone for now: worth another try
                return Answer(error=exc.reason)
            return await _send(url, body, headers, policy=AddressPolicy(allow_private=allow_private))
    except TimeoutError:
        return Answer(error=f"No answer within {timeout_s:g} s.")


async def _send(url: str, body: bytes, headers: Mapping[str, str], *, policy: AddressPolicy) -> Answer:
    """The POST itself, every ``socket.connect()`` of this task vetted against ``policy``."""
    try:
        # The policy is set in this task's context only (and copied into the tasks the client
        # starts to connect), so nothing else the gateway does is vetted by it.
        with vetting_connections(policy):
            async with (
                httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=None) as client,
                client.stream("POST", url, content=body, headers=dict(headers)) as response,
            ):
                async for _ in response.aiter_raw(ANSWER_BYTES):  # the answer is not used: read a little, go
                    break
                return _judge(response)
    except httpx.InvalidURL as exc:  # passed the guard's parsing, not httpx's: no attempt will do better
        return Answer(error=f"The webhook_url cannot be used: {exc}."[:300], final=True)
    except (httpx.HTTPError, OSError) as exc:
        host = urlsplit(url).hostname
        if _refused(exc):  # the name now resolves to a private address (DNS rebinding, or a change)
            return Answer(error=_private(host).reason, final=True)
        return Answer(error=f"The connection to {host} failed ({type(exc).__name__}: {exc})."[:300])


def _judge(response: httpx.Response) -> Answer:
    status = response.status_code
    if 300 <= status < 400:
        where = response.headers.get("location", "")[:200]
        return Answer(status, f"The receiver answered with a redirect ({status} to {where!r}), which is not followed.")
    if status == 410:
        return Answer(status, "The receiver answered 410 Gone: no more attempts.", final=True)
    return Answer(status)


def _refused(exc: BaseException) -> bool:
    """Whether the guard refused a connection under a client error (httpx wraps httpcore, which wraps anyio's)."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, BlockedConnection):
            return True
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        pending.extend(e for e in (error.__cause__, error.__context__) if e is not None)
    return False


# --- the service -------------------------------------------------------------------------------------


def retry_delay(delays: Sequence[float], attempts: int) -> float:
    """The wait after the ``attempts``-th failed attempt: the schedule's, +/- 20 %."""
    base = delays[min(attempts, len(delays)) - 1]
    return base * random.uniform(1 - JITTER, 1 + JITTER)


class Notifier:
    """Sends each job's completion webhook; a service of every gateway process (``core.process.Service``).

    Args:
        nc: The process's NATS connection.
        pool: The asyncpg pool.
        consumer: ``Topology.webhooks``, shared by every gateway process.
        settings: Timeout, attempts, and whether private addresses may be called.
        secret: The deployment's signing secret (``repo.secret(pool, SECRET_NAME)``).
        delays: The waits between attempts (tests make them short).
        concurrency: Events handled at once by this process.
    """

    def __init__(
        self,
        nc: NATS,
        pool: Any,
        consumer: Consumer,
        settings: Settings,
        secret: bytes,
        *,
        delays: Sequence[float] = RETRY_DELAYS_S,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.nc = nc
        self.pool = pool
        self.consumer = consumer
        self.settings = settings
        self.secret = secret
        self.delays = delays
        self.concurrency = concurrency

    @classmethod
    async def open(cls, rt: Runtime) -> Notifier:
        """The notifier on a process's connections, with the deployment's signing secret."""
        return cls(rt.nc, rt.pool, rt.topology.webhooks, rt.settings, await repo.secret(rt.pool, SECRET_NAME))

    async def run(self, stop: asyncio.Event) -> None:
        """Send webhooks until ``stop`` is set; an attempt under way is finished first."""
        await consume(self.nc, self.consumer, handler=self.handle, stop=stop, concurrency=self.concurrency)

    async def close(self) -> None:
        """Nothing to release: the connections belong to the process."""

    async def handle(self, msg: Msg) -> None:
        """One event: skip it, or make one attempt at its job's webhook and ack, nak (retry) or ack (ended)."""
        try:
            head = _head_decoder.decode(msg.data)
        except msgspec.DecodeError:
            logger.warning("undecodable event skipped", extra={"subject": msg.subject})
            await msg.ack()
            return
        if head.type not in TERMINAL:
            await msg.ack()  # progress and lines: nothing to send
            return
        try:
            event = job_event_decoder.decode(msg.data)
        except msgspec.DecodeError:
            logger.warning("undecodable terminal event skipped", extra={"subject": msg.subject, "job_id": head.job_id})
            await msg.ack()
            return
        assert isinstance(event, Final | Failed | Cancelled)
        url = await store.url_of(self.pool, event.job_id)
        if url is None:
            await msg.ack()
            return
        kind = head.type
        claimed = await store.claim(self.pool, event.job_id, kind)
        if claimed is None or claimed.state != "pending":
            # Sent already (a redelivery, an ack that got lost), or another terminal event came first.
            await msg.ack()
            return
        async with heartbeat(msg, self.consumer.heartbeat_s):
            await self.attempt(msg, event.job_id, kind, url, attempts_before=claimed.attempts)

    async def attempt(self, msg: Msg, job_id: str, kind: str, url: str, *, attempts_before: int) -> None:
        """POST the event, store the outcome, then ack (ended) or nak with the next delay (retry)."""
        message_id = f"{job_id}.{kind}"
        headers = signed_headers(webhook_secret(self.secret, job_id), message_id, msg.data)
        answer = await post(
            url,
            msg.data,
            headers,
            allow_private=self.settings.allow_private_urls,
            timeout_s=self.settings.webhook_timeout_s,
        )
        state: store.DeliveryState
        if answer.ok:
            state = "delivered"
        elif answer.final or attempts_before + 1 >= self.settings.webhook_max_attempts:
            state = "failed"
        else:
            state = "pending"
        attempts = await store.record_attempt(
            self.pool, job_id, state=state, status=answer.status, error=None if answer.ok else answer.error
        )
        log = {"job_id": job_id, "host": urlsplit(url).hostname, "status": answer.status, "attempt": attempts}
        if attempts is None:  # ended meanwhile, by a redelivery of this event elsewhere
            await msg.ack()
        elif state == "pending":
            delay = retry_delay(self.delays, attempts)
            logger.info("webhook attempt failed; retrying", extra={**log, "error": answer.error, "retry_in_s": delay})
            await msg.nak(delay=delay)
        elif state == "failed":
            logger.warning("webhook given up", extra={**log, "error": answer.error})
            await msg.ack()
        else:
            logger.info("webhook delivered", extra=log)
            await msg.ack()

"""A Litestar ``Store`` on a NATS JetStream key/value bucket, so every gateway process counts the same requests.

Litestar's ``RateLimitMiddleware`` keeps each client's recent requests in a store. With this one the
history lives in a KV bucket that every gateway process reads and writes, and each value expires on
its own: it is written with a per-message TTL (the ``Nats-TTL`` header, nats-server 2.11+) and the
server removes it when that runs out. The bucket's max age (a day) is a backstop for values written
without a TTL.

The bucket is an ordinary KV bucket (stream ``KV_<bucket>``, subjects ``$KV.<bucket>.>``, one value
per key), so ``nats kv get`` reads it. Store keys such as ``RateLimitMiddleware::127.0.0.1`` hold
characters KV keys may not (``[-/_=.a-zA-Z0-9]`` only), so the key and each namespace level become
one subject token each: ``k`` and the base64url of the UTF-8 bytes, or ``h`` and the base64url of the
SHA-256 for a key over ``LONGEST_KEY_BYTES`` (those are not reversible). The letter keeps the empty
key a valid token and keeps hashed and plain tokens apart. Namespaces are leading tokens, so a
namespace's :meth:`NatsStore.delete_all` is one purge of ``<namespace>.>``, children included.

A ``get`` is one direct get (``allow_direct``: the stream answers it, not the JetStream API), a
``set`` one publish acknowledged by the stream. Every call has a deadline (``timeout``): with NATS
out of reach it raises ``TimeoutError`` (or nats-py's ``ConnectionClosedError``), which the gateway
answers with a 503, instead of holding the rate limiter's lock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import logging
import math
import re
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Self

import nats.errors
import nats.js.errors
from litestar.stores.base import NamespacedStore
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.kv import KV_DEL, KV_MARKER_REASON, KV_OP, KV_PURGE

from core.bus import TopologyError

logger = logging.getLogger(__name__)

DEFAULT_BUCKET = "scribe-rate-limits"
TIMEOUT_S = 1.0  # the rate limiter holds a process-wide lock across get and set: fail fast, not queue
BACKSTOP_S = 24 * 3600.0  # the bucket's max age: values written without a TTL go after a day
LONGEST_KEY_BYTES = 192  # longer keys are hashed: subjects travel in the protocol's 4 KiB control line

_TTL_HEADER = js_api.Header.MSG_TTL.value
_EXPECTED_SEQUENCE_HEADER = js_api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value
_STREAM_NAME_IN_USE = 10058  # "stream name already in use with a different configuration"
_WRONG_LAST_SEQUENCE = 10071
_BUCKET_NAME = re.compile(r"^[-_a-zA-Z0-9]+$")


def stream_config(bucket: str) -> js_api.StreamConfig:
    """The bucket's stream: a KV bucket as ``js.create_key_value`` makes it, with per-message TTLs.

    File storage, so the bucket (and the counts) outlive a nats-server restart; a memory bucket
    would vanish with it and every call would fail until something made it again. Writes reach
    the disk in the background, so a ``set`` costs about what it costs in memory.
    """
    return js_api.StreamConfig(
        name=f"KV_{bucket}",
        subjects=[f"$KV.{bucket}.>"],
        max_msgs_per_subject=1,  # history 1: a key holds its latest value only
        max_msgs=-1,
        max_consumers=-1,
        max_age=BACKSTOP_S,
        allow_msg_ttl=True,
        allow_direct=True,
        allow_rollup_hdrs=True,
        deny_delete=True,
        discard=js_api.DiscardPolicy.NEW,
        duplicate_window=120.0,
        storage=js_api.StorageType.FILE,
        num_replicas=1,
    )


class _Bucket:
    """The stream under a store and its namespaces; created or brought to :func:`stream_config` once."""

    def __init__(self, js: JetStreamContext, name: str, timeout: float) -> None:
        if not _BUCKET_NAME.match(name):
            raise ValueError(f"bucket name {name!r} may hold only letters, digits, '-' and '_'")
        self.js = js
        self.name = name
        self.stream = f"KV_{name}"
        self.timeout = timeout
        self.direct = False
        self.ready = False
        self._lock = asyncio.Lock()

    async def make_ready(self) -> None:
        """Create the stream, or update it to our definition; safe from many processes at once.

        Creating a stream with the same configuration as an existing one succeeds, so processes
        starting together all get the bucket; one left with other settings is updated.

        Raises:
            TopologyError: The server keeps a stream by that name it will not change to ours.
        """
        async with self._lock:
            if self.ready:
                return
            config = stream_config(self.name)
            try:
                info = await self.js.add_stream(config)
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _STREAM_NAME_IN_USE:
                    raise
                try:
                    info = await self.js.update_stream(config)
                except nats.js.errors.APIError as refused:
                    raise TopologyError(
                        f"stream {self.stream} exists with settings that cannot be changed to ours "
                        f"({refused.description}); remove it (nats stream rm {self.stream}) and start again"
                    ) from refused
            self.direct = bool(info.config.allow_direct)
            self.ready = True
            logger.info("key/value bucket ready", extra={"bucket": self.name, "direct": self.direct})


class NatsStore(NamespacedStore):
    """A Litestar store in a JetStream KV bucket, shared by every process on the same NATS.

    Values expire on the server (per-message TTL); ``expires_in`` is rounded up to whole seconds,
    the server's granularity. ``expires_in`` of ``None`` or ``0`` means no TTL, as in Litestar's
    ``MemoryStore``: the bucket's one-day max age still applies.
    """

    __slots__ = ("_bucket", "_prefix")

    def __init__(
        self,
        js: JetStreamContext,
        bucket: str = DEFAULT_BUCKET,
        namespace: str | None = None,
        *,
        timeout: float = TIMEOUT_S,
    ) -> None:
        """Make a store; the bucket is created on first use.

        Args:
            js: A JetStream context on the process's NATS connection.
            bucket: The KV bucket's name.
            namespace: A key prefix; :meth:`delete_all` then deletes only this namespace's values.
            timeout: Seconds each call may take, bucket creation included, before ``TimeoutError``.
        """
        self._bucket = _Bucket(js, bucket, timeout)
        self.namespace = namespace
        self._prefix = f"$KV.{bucket}." + ("" if namespace is None else f"{_token(namespace)}.")

    def with_namespace(self, namespace: str) -> Self:
        """A store on the same bucket whose keys live under ``namespace``, inside this store's own."""
        child = copy.copy(self)
        child.namespace = namespace if self.namespace is None else f"{self.namespace}_{namespace}"
        child._prefix = f"{self._prefix}{_token(namespace)}."
        return child

    async def set(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None) -> None:
        """Store ``value`` under ``key``; the server removes it ``expires_in`` seconds later."""
        data = value.encode() if isinstance(value, str) else value
        async with self._deadline():
            await self._bucket.js.publish(self._subject(key), data, msg_ttl=_whole_seconds(expires_in))

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        """The value under ``key``, or ``None`` when it is missing, expired or deleted.

        Args:
            key: The key.
            renew_for: If the value has a TTL, write it again to expire ``renew_for`` seconds from
                now (a second round trip). A value written by someone else in between is kept.
        """
        subject = self._subject(key)
        async with self._deadline():
            msg = await self._latest(subject)
            if msg is None:
                return None
            data = msg.data or b""
            if renew_for and _ttl_s(msg) is not None:
                await self._renew(subject, data, _whole_seconds(renew_for), msg.seq)
        return data

    async def get_revision(self, key: str) -> tuple[bytes | None, int]:
        """The value under ``key`` (``None`` when missing, expired or deleted) and the revision that
        :meth:`set_if` names to write it only if no one else has since (0: no message at all)."""
        subject = self._subject(key)
        async with self._deadline():
            try:
                msg = await self._bucket.js.get_msg(self._bucket.stream, subject=subject, direct=self._bucket.direct)
            except nats.js.errors.NotFoundError:
                return None, 0
        headers = msg.headers or {}
        if headers.get(KV_OP) in (KV_DEL, KV_PURGE) or KV_MARKER_REASON in headers:
            return None, msg.seq or 0
        return msg.data or b"", msg.seq or 0

    async def set_if(self, key: str, value: str | bytes, expires_in: int | timedelta | None, revision: int) -> bool:
        """Store ``value`` unless ``key`` was written since :meth:`get_revision` saw ``revision``:
        whether it was stored (a compare-and-set: read, decide, write, and try again on False)."""
        data = value.encode() if isinstance(value, str) else value
        async with self._deadline():
            try:
                await self._bucket.js.publish(
                    self._subject(key),
                    data,
                    headers={_EXPECTED_SEQUENCE_HEADER: str(revision)},
                    msg_ttl=_whole_seconds(expires_in),
                )
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _WRONG_LAST_SEQUENCE:
                    raise
                return False
        return True

    async def delete(self, key: str) -> None:
        """Remove ``key`` (a no-op when missing); no delete marker is left behind."""
        async with self._deadline():
            await self._bucket.js.purge_stream(self._bucket.stream, subject=self._subject(key))

    async def delete_all(self) -> None:
        """Remove every value in this namespace and its children, or in the whole bucket without one."""
        async with self._deadline():
            await self._bucket.js.purge_stream(self._bucket.stream, subject=f"{self._prefix}>")

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value now."""
        async with self._deadline():
            return await self._latest(self._subject(key)) is not None

    async def expires_in(self, key: str) -> int | None:
        """Seconds (rounded up) until ``key`` expires; ``None`` when it is missing or has no TTL.

        Read from the value's ``Nats-TTL`` header and the server's timestamp, so a client clock
        off from the server's shifts the answer by as much.
        """
        async with self._deadline():
            msg = await self._latest(self._subject(key))
        if msg is None or msg.time is None or (ttl := _ttl_s(msg)) is None:
            return None
        return min(ttl, max(0, math.ceil(ttl - (time.time() - msg.time.timestamp()))))

    def _subject(self, key: str) -> str:
        return self._prefix + _token(key)

    @contextlib.asynccontextmanager
    async def _deadline(self) -> AsyncIterator[None]:
        async with asyncio.timeout(self._bucket.timeout):
            if not self._bucket.ready:
                await self._bucket.make_ready()
            try:
                yield
            except (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError):
                # Nothing serves the bucket's subjects: its stream was removed (or a server's
                # store wiped). The next call makes it again.
                self._bucket.ready = False
                raise

    async def _latest(self, subject: str) -> js_api.RawStreamMsg | None:
        """The subject's message, or ``None`` when there is none or it is a delete or expiry marker."""
        try:
            msg = await self._bucket.js.get_msg(self._bucket.stream, subject=subject, direct=self._bucket.direct)
        except nats.js.errors.NotFoundError:
            return None
        headers = msg.headers or {}
        if headers.get(KV_OP) in (KV_DEL, KV_PURGE) or KV_MARKER_REASON in headers:
            return None
        return msg

    async def _renew(self, subject: str, data: bytes, ttl: int | None, seq: int | None) -> None:
        try:
            await self._bucket.js.publish(subject, data, headers={_EXPECTED_SEQUENCE_HEADER: str(seq)}, msg_ttl=ttl)
        except nats.js.errors.BadRequestError as exc:
            # Written again since we read it: the newer value and its own TTL stand.
            if exc.err_code != _WRONG_LAST_SEQUENCE:
                raise


def _token(text: str) -> str:
    """``text`` as one KV key token; see the module docstring."""
    raw = text.encode()
    if len(raw) > LONGEST_KEY_BYTES:
        return "h" + _base64url(hashlib.sha256(raw).digest())
    return "k" + _base64url(raw)


def _base64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _whole_seconds(duration: int | timedelta | None) -> int | None:
    """A TTL in whole seconds, rounded up; ``None`` for no TTL.

    Raises:
        ValueError: ``duration`` is negative.
    """
    if not duration:
        return None
    seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
    if seconds < 0:
        raise ValueError(f"a TTL cannot be negative: {duration!r}")
    return math.ceil(seconds)


def _ttl_s(msg: js_api.RawStreamMsg) -> int | None:
    """The message's TTL in seconds as this store writes it (a bare integer); ``None`` without one.

    The server's own markers carry Go durations (``1m0s``); :meth:`NatsStore._latest` drops those.
    """
    value = (msg.headers or {}).get(_TTL_HEADER)
    return int(value) if isinstance(value, str) and value.isdigit() else None

"""Request rates per API key and per client address, counted across every gateway process.

Litestar's own ``RateLimitMiddleware`` does the counting, in a fixed window per identifier, kept
in a Litestar ``Store`` on NATS JetStream KV (:class:`gateway.kvstore.NatsStore`) that every
gateway process shares. What it is given here is who is counted and at what rate:

- a request with an API key counts against the key, at its plan's ``requests_per_minute`` (or
  ``SCRIBE_RATE_LIMIT`` when the plan names none; the ``unlimited`` plan is not counted);
- a request without one (a share link's reader) counts against its client address at
  ``SCRIBE_RATE_LIMIT``, unless ``SCRIBE_RATE_LIMIT_ADDRESSES`` is off.

Over the rate, the answer is 429 ``rate_limited`` in the error shape, with ``Retry-After`` and the
``RateLimit-*`` headers; every counted answer carries the ``RateLimit-*`` headers. Only ``/v1``
is counted (the page and its files are not), and only with accounts (``SCRIBE_AUTH=keys``).

Each count is a compare-and-set on the shared store (:meth:`NatsStore.set_if`): two processes
counting one key at the same instant do not overwrite each other's count (Litestar's own
read-then-write would), so a burst spread over several processes is held to the limit too.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass
from typing import Any

from litestar.middleware.rate_limit import (
    DURATION_VALUES,
    CacheObject,
    DurationUnit,
    RateLimitConfig,
    RateLimitMiddleware,
)
from litestar.serialization import decode_json, encode_json
from litestar.types import Receive, Scope, Send

from core.settings import Settings
from gateway.accounts import ACCOUNT, scope_entries
from gateway.errors import ApiError
from gateway.kvstore import NatsStore
from store.accounts import Account

STORE = "rate_limit"
MAX_RETRIES = 8  # compare-and-set attempts before a request is let through uncounted by the others


class PlanRateLimitMiddleware(RateLimitMiddleware):
    """Litestar's rate limiter with the rate chosen per request: the key's plan, or the address's."""

    def __init__(self, app: Any, config: PlanRateLimitConfig) -> None:
        super().__init__(app, config)
        self.by_address = config.by_address
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def rate_for(self, scope: Scope) -> tuple[str, DurationUnit, int] | None:
        """Who the request is counted as and at what rate; None: not counted."""
        account: Account | None = scope_entries(scope).get(ACCOUNT)
        if account is not None:
            per_minute = account.plan.requests_per_minute
            if per_minute is not None:
                return f"key:{account.prefix}", "minute", per_minute
            if account.plan.name == "unlimited":
                return None
            return f"key:{account.prefix}", self.unit, self.max_requests
        if not self.by_address:
            return None
        client = scope.get("client")
        return f"address:{client[0] if client else 'unknown'}", self.unit, self.max_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rate = self.rate_for(scope) if scope["path"].startswith("/v1/") else None
        if rate is None:
            await self.app(scope, receive, send)
            return
        identifier, unit, limit = rate
        store = self.config.get_store_from_app(scope["litestar_app"])
        key = f"{type(self).__name__}::{identifier}"
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:  # one key's count at a time in this process; other keys go on
            history = await self._count(store, key, unit, limit, identifier)
        headers = self._headers(history, unit, limit)

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    *((k.lower().encode(), v.encode()) for k, v in headers.items()),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)

    async def _count(self, store: Any, key: str, unit: DurationUnit, limit: int, identifier: str) -> CacheObject:
        """Count this request in the window's history (a compare-and-set on the shared store, so
        two processes counting one key at once both count); the history with it.

        Raises:
            ApiError: 429 when the window is full (this request is not counted).
        """
        shared = isinstance(store, NatsStore)
        for _ in range(MAX_RETRIES):
            cached, revision = await store.get_revision(key) if shared else (await store.get(key), 0)
            history = _window(cached, unit)
            if len(history.history) >= limit:
                raise _refusal(self._headers(history, unit, limit), identifier)
            history.history = [int(time.time()), *history.history]
            expires = max(1, history.reset - int(time.time()))
            if not shared:
                await store.set(key, encode_json(history), expires_in=expires)
                return history
            if await store.set_if(key, encode_json(history), expires, revision):
                return history
        return history  # written by others every time: counted as the last read saw it

    def _headers(self, history: CacheObject, unit: DurationUnit, limit: int) -> dict[str, str]:
        remaining = max(0, limit - len(history.history))
        return {
            self.config.rate_limit_policy_header_key: f"{limit}; w={DURATION_VALUES[unit]}",
            self.config.rate_limit_limit_header_key: str(limit),
            self.config.rate_limit_remaining_header_key: str(remaining),
            self.config.rate_limit_reset_header_key: str(max(0, history.reset - int(time.time()))),
        }


def _window(cached: bytes | None, unit: DurationUnit) -> CacheObject:
    """The window's history as stored, or a new window when there is none or it has passed."""
    now = int(time.time())
    if cached:
        history = CacheObject(**decode_json(value=cached))
        if history.reset > now:
            return history
    return CacheObject(history=[], reset=now + DURATION_VALUES[unit])


def _refusal(headers: dict[str, str], identifier: str) -> ApiError:
    wait = headers["RateLimit-Reset"]
    limit = headers["RateLimit-Policy"]
    count, _, window = limit.partition("; w=")
    whose = "this API key" if identifier.startswith("key:") else "this address"
    return ApiError(
        429,
        "rate_limited",
        f"Too many requests from {whose}: the limit is {count} every {window} seconds. Try again in {wait} seconds.",
        headers={**headers, "Retry-After": wait},
    )


@dataclass
class PlanRateLimitConfig(RateLimitConfig):
    """Litestar's configuration, and whether requests without a key are counted per address."""

    by_address: bool = True


def config(settings: Settings) -> RateLimitConfig | None:
    """The rate limiter of this deployment, or None when nothing is counted (no accounts, or ``off``)."""
    rate = settings.rate()
    if settings.auth != "keys" or rate is None:
        return None
    return PlanRateLimitConfig(
        rate_limit=rate,
        middleware_class=PlanRateLimitMiddleware,
        store=STORE,
        by_address=settings.rate_limit_addresses,
    )

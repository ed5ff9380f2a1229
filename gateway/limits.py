"""What one client may hold at once: connections (HTTP and websocket alike) per address, and live
streams (websockets and server-sent event streams) per address and per API key.

The counts live in the gateway process (a connection belongs to one process); the caps are per
process. A client over a cap gets a 429 or a websocket closed with 1013 and a sentence, and the
log gets one line per burst of refusals, not one per refused socket. Addresses are the TCP
peer's: behind a reverse proxy every client shares the proxy's address, so cap there instead.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from core.settings import Settings
from gateway.errors import ApiError

logger = logging.getLogger(__name__)

BURST_S = 10.0  # refusals of one kind are summed up in one log line at most this often


class BurstLog:
    """Logs the first refusal of a kind at once, then at most one line per ``BURST_S`` with the count."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.pending: Counter[str] = Counter()
        self.last = 0.0

    def refused(self, address: str, limit: int) -> None:
        self.pending[address] += 1
        now = time.monotonic()
        if now - self.last < BURST_S:
            return
        self.last = now
        total = sum(self.pending.values())
        top, count = self.pending.most_common(1)[0]
        logger.warning(
            "%s refused: %d in the last %.0f s (most from %s: %d; the limit is %d per client)",
            self.what,
            total,
            BURST_S,
            top,
            count,
            limit,
            extra={"refused": total, "client": top, "limit": limit},
        )
        self.pending.clear()


class Limiter:
    """Open connections and websockets per client address, against the settings' caps."""

    def __init__(self, settings: Settings) -> None:
        self.max_connections = settings.gateway_max_connections_per_client
        self.max_streams = settings.max_streams
        self.connections: Counter[str] = Counter()
        self.streams: Counter[str] = Counter()  # per address, and per "key:<prefix>"
        self.held: dict[Any, str] = {}  # transport -> address, for the connections counted
        self._connection_log = BurstLog("connections over the per-client limit")
        self._stream_log = BurstLog("live streams over the per-client limit")

    def admit(self, transport: Any, address: str) -> bool:
        """Count a new connection from ``address``; False (not counted) when it is over the cap."""
        if self.connections[address] >= self.max_connections:
            self._connection_log.refused(address, self.max_connections)
            return False
        self.connections[address] += 1
        self.held[transport] = address
        return True

    def release(self, transport: Any) -> None:
        """Uncount a connection that closed (whichever protocol held it last; once)."""
        address = self.held.pop(transport, None)
        if address is None:
            return
        self.connections[address] -= 1
        if self.connections[address] <= 0:
            del self.connections[address]

    def open_stream(self, address: str, key: str | None = None) -> Stream | None:
        """Count a new live stream from ``address`` (and the API key named by its prefix, if any);
        None (not counted) when either is at the cap."""
        holders = [address] if key is None else [address, f"key:{key}"]
        for holder in holders:
            if self.streams[holder] >= self.max_streams:
                self._stream_log.refused(holder, self.max_streams)
                return None
        for holder in holders:
            self.streams[holder] += 1
        return Stream(self, holders)

    def stream_refusal(self, key: str | None = None) -> ApiError:
        whose = "This API key" if key is not None and self.streams[f"key:{key}"] >= self.max_streams else "This client"
        return ApiError(
            429,
            "too_many_streams",
            f"{whose} already holds {self.max_streams} live streams from this server, its limit. "
            "Close one, then try again.",
            headers={"Retry-After": "5"},
        )

    def connection_refusal(self) -> ApiError:
        return ApiError(
            429,
            "too_many_connections",
            f"This client already holds {self.max_connections} connections to this server, its limit. "
            "Close some (or reuse them), then try again.",
            headers={"Retry-After": "5"},
        )


class Stream:
    """A live stream counted by :meth:`Limiter.open_stream`; :meth:`close` uncounts it, once."""

    def __init__(self, limiter: Limiter, holders: list[str]) -> None:
        self.limiter = limiter
        self.holders = holders

    def close(self) -> None:
        holders, self.holders = self.holders, []
        for holder in holders:
            self.limiter.streams[holder] -= 1
            if self.limiter.streams[holder] <= 0:
                del self.limiter.streams[holder]


def client_address(connection: Any) -> str:
    """The peer's address of a request or websocket (``"unknown"`` when the server does not say)."""
    client = connection.scope.get("client")
    return str(client[0]) if client else "unknown"

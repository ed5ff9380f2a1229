"""What one client address may hold at once: connections (HTTP and websocket alike) and websockets.

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
        self.max_websockets = settings.gateway_max_websockets_per_client
        self.connections: Counter[str] = Counter()
        self.websockets: Counter[str] = Counter()
        self.held: dict[Any, str] = {}  # transport -> address, for the connections counted
        self._connection_log = BurstLog("connections over the per-client limit")
        self._websocket_log = BurstLog("websockets over the per-client limit")

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

    def open_websocket(self, address: str) -> bool:
        """Count a new websocket from ``address``; False (not counted) when it is over the cap."""
        if self.websockets[address] >= self.max_websockets:
            self._websocket_log.refused(address, self.max_websockets)
            return False
        self.websockets[address] += 1
        return True

    def close_websocket(self, address: str) -> None:
        self.websockets[address] -= 1
        if self.websockets[address] <= 0:
            del self.websockets[address]

    def connection_refusal(self) -> ApiError:
        return ApiError(
            429,
            "too_many_connections",
            f"This client already holds {self.max_connections} connections to this server, its limit. "
            "Close some (or reuse them), then try again.",
            headers={"Retry-After": "5"},
        )

    def websocket_refusal(self) -> ApiError:
        return ApiError(
            503,  # retryable: the same request works once the client holds fewer
            "too_many_connections",
            f"This client already holds {self.max_websockets} live streams from this server, its limit. "
            "Close one, then try again.",
        )


def client_address(connection: Any) -> str:
    """The peer's address of a request or websocket (``"unknown"`` when the server does not say)."""
    client = connection.scope.get("client")
    return str(client[0]) if client else "unknown"

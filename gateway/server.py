"""Serving the gateway: uvicorn with this service's limits, for ``python -m gateway``, ``scribe up``,
the tests and the benchmarks alike.

uvicorn bounds none of what a hostile client can hold, so its two protocols are extended here:

- **Connections per client address** (``SCRIBE_GATEWAY_MAX_CONNECTIONS_PER_CLIENT``): one over the
  cap is answered 429 at once and closed; websockets count as the connections they came from.
  Past the process's open-files budget every new connection is closed unanswered, so uploads,
  NATS and PostgreSQL keep the files they need.
- **Slow requests** (slowloris): the request head must arrive within
  ``SCRIBE_GATEWAY_HEADER_TIMEOUT_S``; a body gets ``SCRIBE_GATEWAY_BODY_TIMEOUT_S`` plus one
  second per ``SCRIBE_GATEWAY_BODY_MIN_RATE`` bytes received (as Apache's mod_reqtimeout does).
  Either answers 408 and closes.
- **Clients that stop reading**: a connection whose unsent output has not moved for
  ``SCRIBE_GATEWAY_SEND_TIMEOUT_S`` is aborted (nginx's ``send_timeout``); asyncio would otherwise
  keep it, and its buffer, until the peer reads. A websocket gets the chance to close as
  ``lagged`` first (:mod:`gateway.stream`): once a send to it was abandoned for that reason, what
  the application sends next (its last words) is written without waiting, and the connection is
  aborted if the close is not answered in time.

Signals are the caller's: :func:`serve` stops when its ``stop`` event is set, so ``scribe up``
shuts its services and embedded servers down after the gateway on SIGTERM as on Ctrl-C
(uvicorn's own handlers would re-raise SIGTERM and end the process before that cleanup).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from litestar import Litestar
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from core.settings import Settings
from gateway.limits import BurstLog, Limiter

logger = logging.getLogger(__name__)

FILES_RESERVED = 256  # open files kept back from connections: uploads, NATS, PostgreSQL, logs
REFUSAL_LINGER_S = 2.0  # how long a refused connection may read its answer before it is closed
# Live audio frames may be 64 KiB (streamer.live.MAX_FRAME_BYTES); up to twice that is read, so a frame a little
# over gets the service's own sentence (WS /v1/live), and a bigger message closes the connection (1009).
MAX_WEBSOCKET_MESSAGE = 128 * 1024


def raise_open_files_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; the limit now in force.

    Each connection is a file: under the common soft limit of 1,024 a few hundred websockets
    would leave none for uploads, NATS and PostgreSQL.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass(frozen=True)
class Guard:
    """The limits both protocols apply, and the per-client counts they share with the application."""

    limiter: Limiter
    max_open: int  # connections this process takes at all
    header_timeout_s: float
    body_timeout_s: float
    body_min_rate: float
    send_timeout_s: float
    overflow_log: BurstLog

    @classmethod
    def for_settings(cls, settings: Settings, limiter: Limiter) -> Guard:
        files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return cls(
            limiter=limiter,
            max_open=max(64, files - FILES_RESERVED) if files != resource.RLIM_INFINITY else 1 << 20,
            header_timeout_s=settings.gateway_header_timeout_s,
            body_timeout_s=settings.gateway_body_timeout_s,
            body_min_rate=float(settings.gateway_body_min_rate),
            send_timeout_s=settings.gateway_send_timeout_s,
            overflow_log=BurstLog("connections over the process's open-files budget"),
        )


def _raw_error(status: int, reason: str, code: str, message: str, extra: str = "") -> bytes:
    """A whole HTTP/1.1 error answer in the API's error shape, for moments before or outside a request."""
    body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"connection: close\r\n{extra}\r\n"
    )
    return head.encode() + body


_TIMEOUT_HEAD = _raw_error(
    408, "Request Timeout", "timeout", "The request's headers did not arrive in time; send them at once."
)
_TIMEOUT_BODY = _raw_error(
    408,
    "Request Timeout",
    "timeout",
    "The request's body arrived too slowly and was cut off; send it at a steady rate.",
)


class _SendWatch:
    """Aborts a transport whose unsent output has not moved for ``timeout`` seconds."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.timer: asyncio.TimerHandle | None = None

    def paused(self, transport: asyncio.BaseTransport) -> None:
        if self.timer is None:
            self.timer = self.loop.call_later(self.timeout, _abort, transport)

    def resumed(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _abort(transport: asyncio.BaseTransport) -> None:
    if not transport.is_closing() or isinstance(transport, asyncio.WriteTransport):
        transport.abort()  # type: ignore[attr-defined]


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 with per-client connection caps, request timeouts and a send timeout."""

    def __init__(self, *args: Any, guard: Guard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = guard
        self.address = "unknown"
        self.refusing = False
        self.head_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None
        self.body_started = 0.0
        self.body_bytes = 0
        self.send_watch = _SendWatch(self.loop, guard.send_timeout_s)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.address = self.client[0] if self.client else "unknown"
        if len(self.connections) > self.guard.max_open:
            self.guard.overflow_log.refused(self.address, self.guard.max_open)
            transport.abort()
            return
        if not self.guard.limiter.admit(transport, self.address):
            refusal = self.guard.limiter.connection_refusal()
            self.refusing = True
            transport.write(_raw_error(429, "Too Many Requests", refusal.code, refusal.message, "retry-after: 5\r\n"))
            # Half-close and read what the client still sends (closing over unread data resets the
            # connection before the client can read the answer), then go.
            if transport.can_write_eof():
                transport.write_eof()
            self.loop.call_later(REFUSAL_LINGER_S, transport.abort)
            return
        self.head_timer = self.loop.call_later(self.guard.header_timeout_s, self._timed_out, _TIMEOUT_HEAD)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        self.send_watch.resumed()
        self.guard.limiter.release(self.transport)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refusing:
            return
        if self.conn.their_state is h11.IDLE and self.head_timer is None:  # the next request on a kept connection
            self.head_timer = self.loop.call_later(self.guard.header_timeout_s, self._timed_out, _TIMEOUT_HEAD)
        elif self.conn.their_state is h11.SEND_BODY:
            self.body_bytes += len(data)
        super().data_received(data)
        state = self.conn.their_state
        if state is not h11.IDLE and self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
            if state is h11.SEND_BODY:
                self.body_started = time.monotonic()
                self.body_bytes = 0
                self._arm_body_timer()
        if state is not h11.SEND_BODY and self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None

    def _arm_body_timer(self) -> None:
        deadline = self.body_started + self.guard.body_timeout_s + self.body_bytes / self.guard.body_min_rate
        self.body_timer = self.loop.call_later(max(0.0, deadline - time.monotonic()), self._check_body)

    def _check_body(self) -> None:
        self.body_timer = None
        if self.conn.their_state is not h11.SEND_BODY or self.transport.is_closing():
            return
        deadline = self.body_started + self.guard.body_timeout_s + self.body_bytes / self.guard.body_min_rate
        if time.monotonic() < deadline:
            self._arm_body_timer()
            return
        self._timed_out(_TIMEOUT_BODY)

    def _timed_out(self, answer: bytes) -> None:
        """The client was too slow: answer 408 unless an answer has begun, tell the app it is gone, close."""
        self._cancel_timers()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            self.transport.write(answer)
        if cycle is not None:
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()
        self.loop.call_later(REFUSAL_LINGER_S, self.transport.abort)

    def _cancel_timers(self) -> None:
        for timer in (self.head_timer, self.body_timer):
            if timer is not None:
                timer.cancel()
        self.head_timer = self.body_timer = None

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._cancel_timers()  # the websocket protocol owns the connection (and its count) from here
        super().handle_websocket_upgrade(event)

    def pause_writing(self) -> None:
        super().pause_writing()
        self.send_watch.paused(self.transport)

    def resume_writing(self) -> None:
        super().resume_writing()
        self.send_watch.resumed()


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets with the connection count released on close, and a stalled reader dropped."""

    def __init__(self, *args: Any, guard: Guard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = guard
        self.stalled = False
        self.close_timeout = min(self.close_timeout, guard.send_timeout_s)  # a close unanswered this long is dropped
        # Twice the application's own limit: the application closes a stalled viewer as lagged first.
        self.send_watch = _SendWatch(self.loop, 2 * guard.send_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self.send_watch.resumed()
        self.guard.limiter.release(self.transport)
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self.send_watch.paused(self.transport)

    def resume_writing(self) -> None:
        super().resume_writing()
        self.send_watch.resumed()

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()  # writes a close frame and closes, which waits for the peer to read
        self.loop.call_later(self.close_timeout, _abort, self.transport)

    async def send(self, message: Any) -> None:
        if self.stalled and self.handshake_complete and not self.close_sent and not self.disconnected:
            self._write_now(message)
            return
        try:
            await super().send(message)
        except asyncio.CancelledError:
            if not self.writable.is_set():  # abandoned while the peer was not reading
                self.stalled = True
            raise
        if message["type"] == "websocket.close" and self.close_timer is not None:
            self.close_timer.cancel()  # the timer closes, which waits for the peer to read: abort instead
            self.close_timer = self.loop.call_later(self.close_timeout, _abort, self.transport)

    def _write_now(self, message: Any) -> None:
        """Write a message to a peer that is not reading, without waiting for it to read."""
        if message["type"] == "websocket.send":
            if message.get("bytes") is not None:
                self.conn.send_binary(message["bytes"])
            else:
                self.conn.send_text(str(message.get("text", "")).encode())
        elif message["type"] == "websocket.close":
            code, reason = message.get("code", 1000), message.get("reason", "") or ""
            self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
            self.conn.send_close(code, reason)
            self.close_sent = True
            self.close_timer = self.loop.call_later(self.close_timeout, _abort, self.transport)
        self.transport.write(b"".join(self.conn.data_to_send()))


class Server(uvicorn.Server):
    """uvicorn without its signal handlers: whoever runs it decides when it stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def config(app: Litestar, settings: Settings, *, host: str, port: int, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration of a gateway serving ``app`` on ``host:port``.

    ``app`` shares its per-client counts (``app.state.limiter``) with the protocols. ``overrides``
    are uvicorn settings (tests shorten the websocket ping interval with them).
    """
    guard = Guard.for_settings(settings, app.state.limiter)
    options: dict[str, Any] = dict(
        log_config=None,
        http=functools.partial(GuardedH11Protocol, guard=guard),
        ws=functools.partial(GuardedWebSocketProtocol, guard=guard),
        ws_max_size=MAX_WEBSOCKET_MESSAGE,
        proxy_headers=False,  # X-Forwarded-For from any client would otherwise name its address
        server_header=False,
        timeout_keep_alive=5,
    )
    return uvicorn.Config(app, host=host, port=port, **(options | overrides))


async def serve(
    app: Litestar,
    settings: Settings,
    *,
    host: str,
    port: int,
    stop: asyncio.Event,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Serve until ``stop`` is set, then finish the requests in hand and return.

    Args:
        app: The gateway (:func:`gateway.app.create_app`).
        settings: Its limits.
        host: The address to listen on.
        port: The port (0: any free one).
        stop: Set it to stop serving.
        on_started: Called once the socket listens.
    """
    server = Server(config(app, settings, host=host, port=port))
    serving = asyncio.create_task(server.serve())
    stopping = asyncio.create_task(stop.wait())
    while not server.started and not serving.done():  # noqa: ASYNC110 (uvicorn has no event for it)
        await asyncio.sleep(0.02)
    if server.started and on_started is not None:
        on_started()
    await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stopping.cancel()
    await serving

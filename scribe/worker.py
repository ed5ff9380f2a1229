"""The pull-consumer loop every service shares: fetch, handle, ack; drain on stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

logger = logging.getLogger(__name__)

Handler = Callable[[Msg], Awaitable[None]]


def backoff(attempt: int, *, base: float = 1.0, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter for the ``attempt``-th delivery (1-based)."""
    return random.uniform(0.5, 1.0) * min(cap, base * 2 ** max(0, attempt - 1))


@contextlib.asynccontextmanager
async def heartbeat(msg: Msg, every: float) -> AsyncIterator[None]:
    """Tell JetStream the message is still being worked on, so ``ack_wait`` does not expire."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(Exception):  # a lost heartbeat only risks a redelivery
                await msg.in_progress()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def consume(
    js: JetStreamContext,
    *,
    stream: str,
    durable: str,
    handler: Handler,
    stop: asyncio.Event,
    concurrency: int = 1,
    poll: float = 1.0,
) -> None:
    """Run ``concurrency`` fetch loops on a durable pull consumer until ``stop`` is set.

    Each loop finishes the message in hand before it returns, so setting ``stop`` and
    then draining the connection loses nothing. A handler that raises gets its message
    nak'ed with backoff; handlers ack, nak or term themselves otherwise.
    """
    sub = await js.pull_subscribe_bind(durable=durable, stream=stream)

    async def loop(worker: int) -> None:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(1, timeout=poll)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except nats.errors.ConnectionClosedError:
                return
            except Exception:  # reconnecting, slow consumer: wait and go on
                logger.warning("fetch failed", extra={"consumer": durable}, exc_info=True)
                await asyncio.sleep(poll)
                continue
            for msg in msgs:
                try:
                    await handler(msg)
                except Exception:
                    attempt = msg.metadata.num_delivered or 1
                    logger.exception("handler failed", extra={"consumer": durable, "delivery": attempt})
                    with contextlib.suppress(Exception):
                        await msg.nak(delay=backoff(attempt))

    try:
        await asyncio.gather(*(loop(i) for i in range(concurrency)))
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()

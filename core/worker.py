"""The pull-consumer loop every service shares: fetch, handle, ack; drain on stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import NotFoundError

from core.topology import Consumer

logger = logging.getLogger(__name__)

Handler = Callable[[Msg], Awaitable[None]]
Exhausted = Callable[[bytes, int], Awaitable[None]]  # (payload, deliveries)


def backoff(attempt: int, *, base: float = 1.0, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter for the ``attempt``-th delivery (1-based)."""
    return random.uniform(0.5, 1.0) * min(cap, base * 2 ** max(0, attempt - 1))


def jittered(seconds: float, *, spread: float = 1.0) -> float:
    """``seconds`` (a server's Retry-After) and up to half as long again, at least ``spread``, at random.

    Never less than what the server asked; callers told the same time do not all come back at once.
    """
    return seconds + random.uniform(0.0, max(spread, seconds / 2))


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
    nc: NATS,
    consumer: Consumer,
    *,
    handler: Handler,
    stop: asyncio.Event,
    concurrency: int = 1,
    poll: float = 1.0,
    on_exhausted: Exhausted | None = None,
) -> None:
    """Run ``concurrency`` fetch loops on ``consumer`` until ``stop`` is set.

    Each loop finishes the message in hand before it returns, so setting ``stop`` and
    then draining the connection loses nothing. A handler that raises gets its message
    nak'ed with backoff; handlers ack, nak or term themselves otherwise.

    ``on_exhausted`` gets the payload of a message JetStream stopped delivering after
    ``max_deliver`` attempts without an ack (a worker killed or hung on the last one), so
    its job can be failed instead of waiting forever.
    """
    js = nc.jetstream()
    stream, durable = consumer.stream.name, consumer.durable
    sub = await js.pull_subscribe_bind(durable=durable, stream=stream)
    watcher = await watch_exhausted(nc, stream=stream, durable=durable, handler=on_exhausted) if on_exhausted else None

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
        for subscription in (sub, watcher):
            if subscription is not None:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()


async def watch_exhausted(nc: NATS, *, stream: str, durable: str, handler: Exhausted) -> Subscription:
    """Subscribe to JetStream's max-deliveries advisory for one consumer (one handler per queue group)."""
    js = nc.jetstream()

    async def on_advisory(msg: Msg) -> None:
        advisory = json.loads(msg.data)
        seq = int(advisory["stream_seq"])
        try:
            stored = await js.get_msg(stream, seq)
        except NotFoundError:
            return  # acked or removed meanwhile
        # The advisory comes once: retry the handling (the database may be restarting).
        for attempt in range(1, 6):
            try:
                await handler(stored.data or b"", int(advisory.get("deliveries", 0)))
                await js.delete_msg(stream, seq)  # a work queue would otherwise keep it forever
                return
            except Exception:
                logger.exception("dead-letter handling failed", extra={"stream": stream, "stream_seq": seq})
                await asyncio.sleep(backoff(attempt))

    subject = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{durable}"
    return await nc.subscribe(subject, queue=f"{durable}-exhausted", cb=on_advisory)

"""Wiring: connections, topology and the services, for one process or for all of them at once.

Production runs one service per process (``python -m transcriber``); the CLI runs all of
them in its own process on the embedded stack. Same code, same subjects, only the
process layout differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from scribe import bus, logs
from scribe.embedded import infrastructure
from scribe.settings import Settings
from store.db import create_pool

logger = logging.getLogger(__name__)

SERVICES = ("streamer", "transcriber", "romanizer")


@dataclass
class Runtime:
    """Open connections shared by the services of one process."""

    settings: Settings
    nc: NATS
    js: JetStreamContext
    pool: asyncpg.Pool
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def start(self, names: Sequence[str]) -> None:
        """Start the named services as tasks; the ASR model loads before this returns."""
        # Loading the ASR model and the romanizer's dictionaries overlap.
        runners = await asyncio.gather(*(self._service(name) for name in names))
        for name, runner in zip(names, runners, strict=True):
            self.tasks.append(asyncio.create_task(runner(self.stop), name=name))

    async def _service(self, name: str) -> Callable[[asyncio.Event], Coroutine[Any, Any, None]]:
        if name == "streamer":
            from streamer.service import Streamer

            return Streamer(self.settings, self.nc, self.pool).run
        if name == "transcriber":
            from transcriber.backends import create_backend
            from transcriber.service import Transcriber

            backend = await asyncio.to_thread(create_backend, self.settings)
            self.closers.append(backend.close)
            return Transcriber(self.settings, self.nc, self.pool, backend).run
        if name == "romanizer":
            from romanizer.romanize import Romanizer
            from romanizer.service import RomanizerService

            return RomanizerService(self.nc, self.pool, await asyncio.to_thread(Romanizer)).run
        raise ValueError(f"unknown service {name!r}; choose from {', '.join(SERVICES)}")

    async def shutdown(self) -> None:
        """Let every service finish the message in hand, then drain the connection."""
        self.stop.set()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        for close in self.closers:
            with contextlib.suppress(Exception):
                await close()
        with contextlib.suppress(Exception):
            await self.nc.drain()
        await self.pool.close()


@contextlib.asynccontextmanager
async def runtime(settings: Settings, name: str = "scribe") -> AsyncIterator[Runtime]:
    """Connect to NATS and PostgreSQL (started here if not configured) and set up the topology."""
    async with infrastructure(settings) as settings:
        nc = await bus.connect(settings.nats_url, name=name)
        try:
            js = nc.jetstream()
            await bus.ensure_topology(js, bus.load_topology(settings))
            pool = await create_pool(settings.database_url)
        except BaseException:
            await nc.close()
            raise
        rt = Runtime(settings=settings, nc=nc, js=js, pool=pool)
        try:
            yield rt
        finally:
            await rt.shutdown()


async def serve(settings: Settings, names: Sequence[str]) -> None:
    """Run services until SIGTERM or SIGINT, then drain."""
    async with runtime(settings, name="-".join(names)) as rt:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, rt.stop.set)
        await rt.start(names)
        logger.info("services running", extra={"services": list(names)})
        await rt.stop.wait()
        logger.info("stopping: draining in-flight messages")


def main(names: Sequence[str]) -> None:
    """Entry point of ``python -m <service>``."""
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    asyncio.run(serve(settings, names))

"""Running services: one connection to NATS and one pool per process, any number of services on them.

Production runs one service per process (``python -m transcriber``, through :func:`main`);
``scribe`` runs all of them in its own process (``scribe.runtime``). Same code, same
subjects, only the process layout differs. The database pool comes from ``store``, which
this package may not import, so the caller passes the function that opens it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from core import bus, logs
from core.settings import Settings
from core.topology import Topology

logger = logging.getLogger(__name__)

OpenPool = Callable[[str], Awaitable[Any]]
"""Opens the database pool for a URL (``store.db.create_pool``)."""


class Service(Protocol):
    """What a process runs: a consumer loop that returns once ``stop`` is set and its messages are done."""

    async def run(self, stop: asyncio.Event) -> None: ...

    async def close(self) -> None: ...


@dataclass
class Runtime:
    """Open connections shared by the services of one process.

    Attributes:
        settings: The process's settings (with the URLs of the servers it uses).
        nc: The NATS connection.
        js: Its JetStream context.
        pool: The asyncpg pool.
        topology: The streams and consumers, as these settings define them.
    """

    settings: Settings
    nc: NATS
    js: JetStreamContext
    pool: Any
    topology: Topology
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    services: list[Service] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, factories: Mapping[str, Factory]) -> None:
        """Build the named services (concurrently: the ASR model and the romanizer load together) and run them.

        If one cannot be built, the others built with it are kept for ``shutdown`` to close,
        and the first error is raised.
        """
        built = await asyncio.gather(*(factory(self) for factory in factories.values()), return_exceptions=True)
        services = [service for service in built if not isinstance(service, BaseException)]
        self.services.extend(services)
        if failed := next((error for error in built if isinstance(error, BaseException)), None):
            raise failed
        for name, service in zip(factories, services, strict=True):
            self.tasks.append(asyncio.create_task(service.run(self.stop), name=name))

    async def shutdown(self) -> None:
        """Let every service finish the message in hand, then release what they hold."""
        self.stop.set()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        for service in self.services:
            with contextlib.suppress(Exception):
                await service.close()


Factory = Callable[[Runtime], Awaitable[Service]]
"""Builds a service on a process's connections (``Streamer.open``, ``Transcriber.open`` ...)."""


@contextlib.asynccontextmanager
async def connected(
    settings: Settings, name: str, open_pool: OpenPool, *, services: Collection[str] | None = None
) -> AsyncIterator[Runtime]:
    """Connect to NATS and PostgreSQL, bring the topology up to its definition, and clean up on exit.

    Args:
        settings: The servers and the limits.
        name: The connection's name, as NATS monitoring shows it.
        open_pool: Opens the database pool.
        services: The services this process will run: their consumers are brought to their
            definitions, the others only created if missing (``None``: all of them).

    Raises:
        core.bus.TopologyError: The server keeps a stream or consumer other than defined.
    """
    nc = await bus.connect(settings.nats_url, name=name)
    try:
        js = nc.jetstream()
        topology = Topology.from_settings(settings)
        await bus.ensure_topology(js, topology, owned=services)
        pool = await open_pool(settings.database_url)
    except BaseException:
        await nc.close()
        raise
    rt = Runtime(settings=settings, nc=nc, js=js, pool=pool, topology=topology)
    try:
        yield rt
    finally:
        try:
            await rt.shutdown()
            with contextlib.suppress(Exception):
                await nc.drain()
            await pool.close()
        except asyncio.CancelledError:
            # An abandoned run (``scribe transcribe`` stopped by a signal) cuts the drain short, and its
            # embedded servers stop next: the pool must not try to reconnect to them meanwhile.
            pool.terminate()
            raise


async def run_until_signalled(rt: Runtime, factories: Mapping[str, Factory]) -> None:
    """Run services until SIGTERM or SIGINT; the caller's ``connected`` then drains."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, rt.stop.set)
    await rt.start(factories)
    logger.info("services running", extra={"services": list(factories)})
    await rt.stop.wait()
    logger.info("stopping: draining in-flight messages")


def main(name: str, factory: Factory, open_pool: OpenPool) -> None:
    """Entry point of ``python -m <service>``: one service, against the servers named in the settings."""
    settings = Settings.for_program(f"python -m {name}")
    if not settings.nats_url or not settings.database_url:
        print(
            f"{name}: set SCRIBE_NATS_URL and SCRIBE_DATABASE_URL: the services of a deployment share one NATS "
            "and one PostgreSQL (`scribe transcribe` starts embedded ones for a single machine)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    logs.configure(settings.log_level, settings.log_format)

    async def serve() -> None:
        async with connected(settings, name, open_pool, services=[name]) as rt:
            await run_until_signalled(rt, {name: factory})

    asyncio.run(serve())

"""Every service in one process, on the embedded stack or on the servers the settings name.

``scribe transcribe`` and ``scribe streamer|transcriber|romanizer|all`` run here; production
runs one service per process (``python -m <service>``, :func:`core.process.main`) on the
same code and subjects.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from core.process import Factory, Runtime, connected, run_until_signalled
from core.settings import Settings
from romanizer.service import RomanizerService
from scribe.embedded import infrastructure
from store.db import create_pool
from streamer.service import Streamer
from transcriber.service import Transcriber

SERVICES: dict[str, Factory] = {
    "streamer": Streamer.open,
    "transcriber": Transcriber.open,
    "romanizer": RomanizerService.open,
}


def services(*names: str) -> dict[str, Factory]:
    """The factories of the named services (all of them when none is named).

    Raises:
        ValueError: An unknown name.
    """
    unknown = [name for name in names if name not in SERVICES]
    if unknown:
        raise ValueError(f"unknown service {unknown[0]!r}; choose from {', '.join(SERVICES)}")
    return {name: SERVICES[name] for name in names or SERVICES}


@contextlib.asynccontextmanager
async def runtime(
    settings: Settings, name: str = "scribe", *, names: Sequence[str] | None = None
) -> AsyncIterator[Runtime]:
    """Start what the settings do not name (embedded NATS, PostgreSQL), connect, and stop it all on exit.

    Args:
        settings: The servers and limits.
        name: The connection's name.
        names: The services this process will run (``None``: all of them).
    """
    async with (
        infrastructure(settings) as settings,
        connected(settings, name, create_pool, services=names) as rt,
    ):
        yield rt


async def serve(settings: Settings, names: Sequence[str]) -> None:
    """Run the named services until SIGTERM or SIGINT, then drain."""
    async with runtime(settings, name="-".join(names), names=names) as rt:
        await run_until_signalled(rt, services(*names))

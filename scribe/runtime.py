"""Every service in one process, on the embedded stack or on the servers the settings name.

``scribe transcribe`` and ``scribe streamer|transcriber|romanizer|all`` run here; production
runs one service per process (``python -m <service>``, :func:`core.process.main`) on the
same code and subjects.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
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
    settings: Settings, name: str = "scribe", *, names: Sequence[str] | None = None, one_shot: bool = False
) -> AsyncIterator[Runtime]:
    """Start what the settings do not name (embedded NATS, PostgreSQL), connect, and stop it all on exit.

    Args:
        settings: The servers and limits.
        name: The connection's name.
        names: The services this process will run (``None``: all of them).
        one_shot: The run's work is its own (``scribe transcribe``): an embedded NATS keeps it
            in a temporary folder instead of the data folder (:func:`scribe.embedded.infrastructure`).
    """
    async with (
        infrastructure(settings, one_shot=one_shot) as settings,
        connected(settings, name, create_pool, services=names) as rt,
    ):
        yield rt


async def serve(settings: Settings, names: Sequence[str]) -> None:
    """Run the named services until SIGTERM or SIGINT, then drain.

    A signal that comes while the servers and services start is kept until they have: the
    start then goes straight to the stop, so what was started is stopped (by default SIGTERM
    would end the process at once and leave the embedded PostgreSQL running).
    """
    early = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, early.set)
    async with runtime(settings, name="-".join(names), names=names) as rt:
        if early.is_set():
            return
        await run_until_signalled(rt, services(*names))  # takes the signals over, with no await before

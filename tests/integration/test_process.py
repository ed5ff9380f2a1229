"""Running services on a process's connections: what is built is closed, whatever fails."""

from __future__ import annotations

import asyncio

import pytest

from core.process import Runtime

pytestmark = pytest.mark.integration


class Recorder:
    """A service that records what happened to it."""

    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.log.append(f"{self.name} stopped")

    async def close(self) -> None:
        self.log.append(f"{self.name} closed")


async def test_a_service_that_cannot_be_built_leaves_none_of_the_others_open(rt: Runtime) -> None:
    log: list[str] = []

    async def good(_: Runtime) -> Recorder:
        return Recorder(log, "good")

    async def bad(_: Runtime) -> Recorder:
        raise RuntimeError("the model is missing")

    with pytest.raises(RuntimeError, match="the model is missing"):
        await rt.start({"good": good, "bad": bad})
    await rt.shutdown()
    assert log == ["good closed"]


async def test_services_stop_when_asked_then_close(rt: Runtime) -> None:
    log: list[str] = []

    async def make(_: Runtime) -> Recorder:
        return Recorder(log, "one")

    await rt.start({"one": make})
    await rt.shutdown()
    assert log == ["one stopped", "one closed"]

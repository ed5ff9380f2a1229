"""Helpers shared by the tests: run a job and keep its events, run services in their own processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.messages import Failed, Final, JobEvent, JobOptions, Partial, Segment
from core.process import Runtime
from scribe import client
from streamer.service import Streamer
from streamer.source import scheme_of


@dataclass
class Followed:
    """A job submitted and followed to its end: its id, every event, and the outcome."""

    job_id: str
    events: list[JobEvent]

    @property
    def outcome(self) -> Final | Failed:
        last = self.events[-1]
        assert isinstance(last, Final | Failed), last
        return last

    @property
    def lines(self) -> list[Segment]:
        """The transcript lines as they were streamed, in order."""
        return [segment for event in self.events if isinstance(event, Partial) for segment in event.segments]


async def run_job(rt: Runtime, source: str, *, options: JobOptions | None = None, after: int = -1) -> Followed:
    """Submit ``source`` through the client API and follow it to its end.

    A local path is let through by this process's streamer, as ``scribe transcribe`` does.
    """
    job_id = uuid.uuid4().hex
    if scheme_of(source) is None:
        for service in rt.services:
            if isinstance(service, Streamer):
                service.allow_local_file(job_id, source)
    await client.submit(rt.js, source, options=options, job_id=job_id)
    events = [event async for event in client.follow(rt.js, job_id, after=after)]
    return Followed(job_id, events)


def service_process(
    service: str, nats_url: str, database_url: str, data_dir: Path, **settings: str
) -> subprocess.Popen[bytes]:
    """``python -m <service>`` in its own process; its settings must match the test's (it updates its consumer)."""
    env = {
        **os.environ,
        "SCRIBE_NATS_URL": nats_url,
        "SCRIBE_DATABASE_URL": database_url,
        "SCRIBE_DATA_DIR": str(data_dir),
        "SCRIBE_ASR_THREADS": "1",
        "SCRIBE_MAX_IN_FLIGHT": "1",
        "HF_HUB_OFFLINE": "1",
        **{f"SCRIBE_{name.upper()}": value for name, value in settings.items()},
    }
    return subprocess.Popen([sys.executable, "-m", service], env=env, stderr=subprocess.DEVNULL)


async def kill_while_it_holds_a_chunk(rt: Runtime, victim: subprocess.Popen[bytes]) -> None:
    """Wait until the transcriber process holds a chunk (delivered, not acked), then kill it hard."""
    consumer = rt.topology.transcriber
    for _ in range(600):
        info = await rt.js.consumer_info(consumer.stream.name, consumer.durable)
        if info.num_ack_pending >= 1:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the transcriber never took a chunk")
    victim.send_signal(signal.SIGKILL)
    await asyncio.to_thread(victim.wait, 10)


def scribe_cli(
    *args: str, env: dict[str, str], timeout: float = 300, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m scribe ARGS`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "scribe", *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout
    )

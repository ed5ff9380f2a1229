"""The integrator examples end on every terminal event, follow a long backlog, and never spin.

They run as an integrator runs them (``python examples/…``) against a real gateway and NATS. The
websocket example reaches the gateway through a relay that counts its connections: a client that
reconnects to an ended job (the issue saw 617-1,702 connections in seconds) shows up there.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
import websockets

from core.messages import Cancelled, Failed, Revised
from tests.integration.test_gateway_stream import _final, _job, _partial, _publish, gateway

pytestmark = pytest.mark.integration


class Relay:
    """A TCP relay in front of the gateway that counts the connections made through it."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.connections = 0

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(1 << 16):
                sink.write(data)
                await sink.drain()
        sink.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        host, port = self.target.rsplit(":", 1)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))


@contextlib.asynccontextmanager
async def relayed(target: str) -> AsyncIterator[tuple[str, Relay]]:
    relay = Relay(target)
    server = await asyncio.start_server(relay._serve, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}", relay
    finally:
        server.close()


async def _start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def _finish(proc: asyncio.subprocess.Process, limit_s: float = 60) -> tuple[int, str, str]:
    """Its exit status and output; an example still running after ``limit_s`` is killed and fails the test."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _run(*args: str, limit_s: float = 60) -> tuple[int, str, str]:
    return await _finish(await _start(*args), limit_s)


@pytest.mark.parametrize("ending", ["cancelled", "failed"])
async def test_both_examples_stop_at_a_cancelled_or_failed_job_with_its_reason(
    ending, settings, nats_url, database_url, rt
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    job_id, token = await _job(rt)
    end = Cancelled(job_id=job_id) if ending == "cancelled" else Failed(job_id=job_id, reason="The file is damaged.")
    await _publish(rt, _partial(job_id, 0, 0, 1), end)
    async with gateway(cfg) as host, relayed(host) as (front, relay):
        ws_code, ws_out, ws_err = await _run("examples/ws_follow.py", f"http://{front}", job_id, token)
    nats_code, nats_out, _ = await _run("examples/nats_follow.py", nats_url, job_id)
    for code, out in ((ws_code, ws_out), (nats_code, nats_out)):
        assert code == 1 and [line.split()[0] for line in out.splitlines()] == ["0", "1", "--"], out
        assert f"-- {ending}: {end.reason}" in out
    assert relay.connections == 1, ws_err  # it did not reconnect to an ended job


@pytest.mark.parametrize(
    ("cap", "answer"),
    [("gateway_max_connections_per_client", b"HTTP 429"), ("max_streams", b"closed (4429")],
    ids=["429", "4429"],
)
async def test_the_websocket_example_stops_when_refused_and_retries_when_told_to(
    cap, answer, settings, nats_url, database_url, rt
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url, **{cap: 1})
    job_id, token = await _job(rt)
    await _publish(rt, _partial(job_id, 0, 0))
    async with gateway(cfg) as host, relayed(host) as (front, relay):
        code, out, _ = await _run("examples/ws_follow.py", f"http://{front}", job_id, "not-the-token")
        assert code == 1 and out.startswith("-- refused:") and relay.connections == 1, out

        # Another stream of this client holds its only connection (429) or stream (close 4429), then lets go.
        async with websockets.connect(f"ws://{host}/v1/jobs/{job_id}/stream?token={token}") as holder:
            await holder.recv()
            example = await _start("examples/ws_follow.py", f"http://{front}", job_id, token)
            assert example.stderr is not None
            retry = await asyncio.wait_for(example.stderr.readline(), 30)
        await _publish(rt, _final(job_id, 1))
        code, out, err = await _finish(example)
    assert answer in retry and b"resuming after line -1" in retry, (out, err)
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["0", "--"], out


async def test_the_websocket_example_follows_a_backlog_longer_than_one_message(
    settings, nats_url, database_url, rt
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    job_id, token = await _job(rt)
    count = 900  # 900 lines of 1,000 characters: about 3 MB, three times websockets' default message limit
    for start in range(0, count, 100):
        await _publish(rt, _partial(job_id, start // 100, *range(start, start + 100), text="長" * 1000))
    await _publish(rt, _final(job_id, count))
    async with gateway(cfg) as host, relayed(host) as (front, relay):
        code, out, err = await _run("examples/ws_follow.py", f"http://{front}", job_id, token)
    lines = out.splitlines()
    assert code == 0, err
    assert [int(line.split()[0]) for line in lines[:-1]] == list(range(count)) and lines[-1].startswith("-- done")
    assert relay.connections == 1, err


async def test_the_nats_example_shows_corrections_made_after_the_end_too(nats_url, rt) -> None:
    job_id, _ = await _job(rt)
    line = _partial(job_id, 0, 0).segments[0]
    fixed = msgspec.structs.replace(line, text="你哋好", jyutping="nei5 dei6 hou2", original_text="你好", revision=1)
    await _publish(rt, _partial(job_id, 0, 0, 1), _final(job_id, 2), Revised(job_id=job_id, segment=fixed))
    code, out, _ = await _run("examples/nats_follow.py", nats_url, job_id)
    assert code == 0 and out.splitlines()[2:] == [
        "line 0 corrected: 你哋好  (nei5 dei6 hou2)",
        "-- done: 2 lines, 9.0 s",
    ]


async def test_the_nats_example_says_so_when_the_bus_holds_nothing_of_the_job(nats_url, rt) -> None:
    code, out, _ = await _run("examples/nats_follow.py", nats_url, uuid.uuid4().hex, limit_s=30)
    assert code == 1 and "no events for job" in out

"""The live transcript over a websocket and SSE, from a real gateway on a port (uvicorn) to real
clients (``websockets``, raw HTTP), with events published on real NATS JetStream."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from core import bus
from core.messages import Final, JobEvent, JobOptions, Partial, Progress, Segment, Usage
from core.process import Runtime
from core.settings import Settings
from gateway import server as gateway_server
from gateway.access import TOKEN_SECRET, job_token
from gateway.app import create_app
from scribe.runtime import SERVICES, runtime
from store import repo
from tests.helpers import run_job, scribe_cli
from tests.paths import AUDIO

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def gateway(settings: Settings, port: int | None = None) -> AsyncIterator[str]:
    """A real gateway process's server on a port (a free one by default), in this event loop; yields host:port."""
    port = port or _free_port()
    server = gateway_server.Server(gateway_server.config(create_app(settings), settings, host="127.0.0.1", port=port))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def _line(seq: int, text: str = "你好") -> Segment:
    return Segment(seq=seq, start=float(seq), end=seq + 0.9, text=text, jyutping="nei5 hou2", yale="néih hóu", words=[])


async def _job(rt: Runtime) -> tuple[str, str]:
    job_id = uuid.uuid4().hex
    await repo.create_job(rt.pool, job_id, "https://example.com/a.mp3", user_id=None, options=JobOptions())
    return job_id, job_token(await repo.secret(rt.pool, TOKEN_SECRET), job_id)


async def _publish(rt: Runtime, *events: JobEvent) -> None:
    for event in events:
        await bus.publish_event(rt.js, event)


def _partial(job_id: str, chunk: int, *seqs: int, text: str = "你好") -> Partial:
    return Partial(job_id=job_id, chunk_seq=chunk, segments=[_line(s, text) for s in seqs], chunks_done=chunk + 1)


def _final(job_id: str, count: int) -> Final:
    return Final(job_id=job_id, duration=9.0, segment_count=count, usage=Usage("local", "whisper-base", 9.0, 0.0))


async def _read_all(ws: Any) -> tuple[list[dict[str, Any]], int | None]:
    """Every message until the server closes, and the close code."""
    received = []
    try:
        async for message in ws:
            received.append(json.loads(message))
    except ConnectionClosed:
        pass
    return received, ws.close_code


def _lines(envelopes: list[dict[str, Any]]) -> list[int]:
    return [s["seq"] for e in envelopes if e["type"] in ("snapshot", "segments") for s in e["segments"]]


async def test_late_joiners_get_a_snapshot_then_live_lines_and_resume_without_gaps_or_repeats(
    settings, nats_url, database_url, rt
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    job_id, token = await _job(rt)
    progress = Progress(job_id=job_id, chunks_published=2, seconds_decoded=5.0, duration=9.0)
    await _publish(rt, progress, _partial(job_id, 0, 0, 1, 2))
    async with gateway(cfg) as host:
        url = f"ws://{host}/v1/jobs/{job_id}/stream"
        async with websockets.connect(f"{url}?token={token}") as live:
            snapshot = json.loads(await live.recv())
            assert snapshot["type"] == "snapshot" and snapshot["v"] == 1 and snapshot["job_id"] == job_id
            assert [s["seq"] for s in snapshot["segments"]] == [0, 1, 2] and snapshot["next_line"] == 3
            assert snapshot["status"] == "running" and snapshot["progress"]["seconds_decoded"] == 5.0
            await _publish(rt, _partial(job_id, 1, 3, 4), _final(job_id, 5))
            rest, code = await _read_all(live)
        assert [e["type"] for e in rest] == ["segments", "final"] and code == 1000
        assert _lines([snapshot, *rest]) == [0, 1, 2, 3, 4]
        assert [e["seq"] for e in rest] == [3, 4]  # the job's 3rd and 4th events

        # A viewer that saw lines up to 2 resumes: lines 3 and 4 once, then the end; the token as subprotocol.
        async with websockets.connect(
            f"{url}?after=2", subprotocols=[websockets.Subprotocol(f"token.{token}")]
        ) as resumed:
            assert resumed.subprotocol == f"token.{token}"
            again, code = await _read_all(resumed)
        assert [e["type"] for e in again] == ["snapshot", "final"] and _lines(again) == [3, 4] and code == 1000

        # SSE: event ids are line numbers, Last-Event-ID resumes after one.
        async with httpx.AsyncClient(base_url=f"http://{host}") as client:
            sse = await client.get(f"/v1/jobs/{job_id}/events", params={"token": token}, headers={"Last-Event-ID": "3"})
        events = [json.loads(line[6:]) for line in sse.text.splitlines() if line.startswith("data: ")]
        ids = [line[4:] for line in sse.text.splitlines() if line.startswith("id: ")]
        assert [e["type"] for e in events] == ["snapshot", "final"] and _lines(events) == [4] and ids == ["4", "4"]


async def test_bad_token_unknown_job_and_bad_after_are_refused_with_close_codes(
    settings, nats_url, database_url, rt
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    job_id, token = await _job(rt)
    unknown = uuid.uuid4().hex
    unknown_token = job_token(await repo.secret(rt.pool, TOKEN_SECRET), unknown)
    cases = {
        f"/v1/jobs/{job_id}/stream?token=wrong": ("unauthorized", 4401),
        f"/v1/jobs/{job_id}/stream": ("unauthorized", 4401),
        f"/v1/jobs/{unknown}/stream?token={unknown_token}": ("not_found", 4404),
        f"/v1/jobs/{job_id}/stream?token={token}&after=x": ("bad_request", 4400),
    }
    async with gateway(cfg) as host:
        for path, (code, close) in cases.items():
            async with websockets.connect(f"ws://{host}{path}") as ws:
                received, closed_with = await _read_all(ws)
            assert [(e["type"], e["code"], e["retryable"]) for e in received] == [("error", code, False)], path
            assert closed_with == close, path
        async with httpx.AsyncClient(base_url=f"http://{host}") as client:
            refused = await client.get(f"/v1/jobs/{job_id}/events")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"


async def test_a_slow_viewer_is_closed_as_lagged_while_a_normal_one_gets_everything(
    settings, nats_url, database_url, rt
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url, stream_queue_size=4)
    job_id, token = await _job(rt)
    big = "長" * 20_000  # 60 kB a line
    count = 150  # 9 MB: more than the kernel buffers a viewer that does not read can hide
    async with gateway(cfg) as host:
        path = f"/v1/jobs/{job_id}/stream?token={token}"
        slow = await asyncio.to_thread(_stalled_viewer, host, path)  # handshakes, then reads nothing
        try:
            async with websockets.connect(f"ws://{host}{path}", max_size=None, compression=None) as normal:
                await normal.recv()
                reader = asyncio.create_task(_read_all(normal))
                for seq in range(count):
                    await _publish(rt, _partial(job_id, seq, seq, text=big))
                await _publish(rt, _final(job_id, count))
                got, code = await asyncio.wait_for(reader, timeout=60)
            late = await asyncio.to_thread(_drain, slow)
        finally:
            slow.close()
    assert _lines(got) == list(range(count)) and got[-1]["type"] == "final" and code == 1000
    assert b'"type":"lagged"' in late and b'"type":"final"' not in late
    assert (4408).to_bytes(2, "big") + b"lagged" in late  # the close frame: code 4408, reason "lagged"


def _stalled_viewer(host: str, path: str) -> socket.socket:
    """A websocket client that completes the handshake and then stops reading, with a small buffer."""
    address, port = host.rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16_384)
    sock.connect((address, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def _drain(sock: socket.socket) -> bytes:
    """Everything the server sent until it closed the connection."""
    sock.settimeout(30)
    data = bytearray()
    while chunk := sock.recv(1 << 20):
        data += chunk
        if len(data) > 50_000_000:
            break
    return bytes(data)


@contextlib.asynccontextmanager
async def gateway_process(settings: Settings) -> AsyncIterator[str]:
    """``python -m gateway`` as its own OS process on a free port; yields host:port once it answers."""
    port = _free_port()
    env = {
        **os.environ,
        "SCRIBE_NATS_URL": settings.nats_url or "",
        "SCRIBE_DATABASE_URL": settings.database_url or "",
        "SCRIBE_GATEWAY_PORT": str(port),
        "SCRIBE_STREAM_HEARTBEAT_S": str(settings.stream_heartbeat_s),
        "SCRIBE_DATA_DIR": str(settings.data_dir),
    }
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", env=env)
    host = f"127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http, asyncio.timeout(30):
            while True:
                assert proc.returncode is None, f"the gateway exited with {proc.returncode}"
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"http://{host}/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield host
    finally:
        proc.terminate()
        await proc.wait()


async def test_two_gateway_processes_serve_one_job_identically_and_a_quiet_stream_gets_heartbeats(
    settings, nats_url, database_url, rt
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url, stream_heartbeat_s=0.2)
    job_id, token = await _job(rt)
    path = f"/v1/jobs/{job_id}/stream?token={token}"
    async with gateway_process(cfg) as first, gateway_process(cfg) as second:
        async with websockets.connect(f"ws://{first}{path}") as a, websockets.connect(f"ws://{second}{path}") as b:
            opening = [json.loads(await a.recv()), json.loads(await b.recv())]
            beats = [json.loads(await a.recv()), json.loads(await b.recv())]  # nothing happens for 0.2 s
            await _publish(rt, _partial(job_id, 0, 0, 1), _partial(job_id, 1, 2), _final(job_id, 3))
            (got_a, code_a), (got_b, code_b) = await asyncio.gather(_read_all(a), _read_all(b))
    assert opening[0] == opening[1] and opening[0]["type"] == "snapshot" and opening[0]["segments"] == []
    assert [beat["type"] for beat in beats] == ["heartbeat", "heartbeat"] and beats[0]["last_line"] == -1
    assert beats[0]["progress"] == {"seconds_decoded": 0.0, "duration": None}
    live_a = [e for e in got_a if e["type"] != "heartbeat"]
    live_b = [e for e in got_b if e["type"] != "heartbeat"]
    assert live_a == live_b and _lines(live_a) == [0, 1, 2] and live_a[-1]["type"] == "final"
    assert code_a == code_b == 1000


@pytest.mark.slow
async def test_the_command_line_as_a_client_of_a_gateway_writes_what_the_embedded_run_writes(
    settings, nats_url, database_url, data_dir, tmp_path
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url, chunk_min_s=8.0, chunk_max_s=16.0)
    clip = AUDIO / "sherpa_yue-4.wav"
    async with runtime(cfg) as services, gateway(cfg) as host:
        await services.start(SERVICES)
        here = await run_job(services, str(clip))
        out = tmp_path / "remote.json"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SCRIBE_")},
            "SCRIBE_DATA_DIR": str(data_dir),
        }
        args = ("transcribe", str(clip), "--server", f"http://{host}", "-f", "json", "-o", str(out))
        done = await asyncio.to_thread(scribe_cli, *args, env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    remote = json.loads(out.read_text(encoding="utf-8"))
    assert [s["text"] for s in remote["segments"]] == [line.text for line in here.lines]
    assert remote["segments"] and remote["partial"] is False
    assert "Traceback" not in done.stderr and "wrote" in done.stderr


async def test_the_examples_follow_a_job_over_nats_and_resume_over_the_websocket(
    settings, nats_url, database_url, rt
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    job_id, token = await _job(rt)
    port = _free_port()
    ws_example = await asyncio.create_subprocess_exec(
        sys.executable,
        "examples/ws_follow.py",
        f"http://127.0.0.1:{port}",
        job_id,
        token,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with gateway(cfg, port):
        await _publish(rt, _partial(job_id, 0, 0, 1))
        first = [await asyncio.wait_for(ws_example.stdout.readline(), 30) for _ in range(2)]  # type: ignore[union-attr]
    # The gateway went away mid-job; a new one comes up on the same address and the job goes on.
    await _publish(rt, _partial(job_id, 1, 2), _final(job_id, 3))
    async with gateway(cfg, port):
        rest, errors = await asyncio.wait_for(ws_example.communicate(), 60)
    assert ws_example.returncode == 0, errors
    lines = [line.split()[0] for line in [*(b.decode() for b in first), *rest.decode().splitlines()]]
    assert lines == ["0", "1", "2", "--"] and b"resuming after line 1" in errors

    nats_example = await asyncio.create_subprocess_exec(
        sys.executable, "examples/nats_follow.py", nats_url, job_id, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(nats_example.communicate(), 60)
    assert nats_example.returncode == 0
    assert [line.split()[0] for line in out.decode().splitlines()] == ["0", "1", "2", "--"]

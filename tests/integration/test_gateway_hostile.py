"""The gateway against a hostile stranger: retry keys, purge, foreign hosts and origins, odd tokens,
connections and slow clients, bodies, and the simple bad input that used to answer 500.

Real gateways (uvicorn with the gateway's own protocols, on ports) and real clients (raw sockets,
httpx, websockets) on real NATS JetStream and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import nats.js.errors
import pytest
import websockets
from litestar import Litestar
from litestar.testing import AsyncTestClient
from websockets.exceptions import ConnectionClosed, InvalidStatus

from core import bus, subjects, uploads
from core.messages import Final, JobOptions, Partial, Segment, Usage
from core.process import Runtime
from core.settings import Settings
from core.topology import AUDIO_BUCKET, EVENTS
from gateway import server as gateway_server
from gateway.access import TOKEN_SECRET, job_token
from gateway.app import create_app
from scribe.embedded import EmbeddedNats
from store import repo

pytestmark = pytest.mark.integration

BASE_URL = "http://127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(settings: Settings, **overrides: Any) -> AsyncIterator[tuple[str, Litestar]]:
    """A gateway on a free port with its own protocols; yields ``host:port`` and the app."""
    port = _free_port()
    app = create_app(settings)
    server = gateway_server.Server(gateway_server.config(app, settings, host="127.0.0.1", port=port, **overrides))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        assert not task.done(), "the gateway did not start"
        await asyncio.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await task


def _line(seq: int, text: str = "你好") -> Segment:
    return Segment(seq=seq, start=float(seq), end=seq + 0.9, text=text, jyutping="nei5 hou2", yale="néih hóu", words=[])


async def _finished_job(rt: Runtime, lines: int = 3) -> tuple[str, str]:
    """A done job with lines in the store and its events on the bus; its id and token."""
    job_id = uuid.uuid4().hex
    await repo.create_job(rt.pool, job_id, "https://example.com/a.mp3", user_id=None, options=JobOptions())
    segments = [_line(n) for n in range(lines)]
    await repo.insert_segments(rt.pool, job_id, segments)
    await repo.set_input_ended(rt.pool, job_id, total_chunks=1, duration=float(lines))
    await repo.advance(rt.pool, job_id, next_chunk=1, next_segment=lines)
    await repo.finish_job(rt.pool, job_id)
    await repo.mark_published(rt.pool, job_id, 1)  # its Partial goes out below
    usage = Usage("local", "whisper-base", float(lines), 0.0)
    await bus.publish_event(rt.js, Partial(job_id=job_id, chunk_seq=0, segments=segments, chunks_done=1))
    await bus.publish_event(rt.js, Final(job_id=job_id, duration=float(lines), segment_count=lines, usage=usage))
    return job_id, job_token(await repo.secret(rt.pool, TOKEN_SECRET), job_id)


def _error(response: Any) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return dict(body["error"])


async def _ws_messages(ws: Any) -> tuple[list[dict[str, Any]], int | None]:
    received = []
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            received.append(json.loads(message))
    return received, ws.close_code


# --- 1. A retry key discloses nothing -------------------------------------------------------------


async def test_an_idempotency_key_is_bound_to_the_request_it_was_first_used_for(settings, nats_url, database_url):
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    async with AsyncTestClient(app=create_app(cfg), base_url=BASE_URL) as client:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        link = {"url": "http://127.0.0.1:9/talk.mp3", "romanization": "yale"}
        first = await client.post("/v1/jobs", json=link, headers=key)
        assert first.status_code == 202, first.text
        # Someone with only the key gets no job and no token.
        empty = await client.post("/v1/jobs", content=b"", headers={**key, "content-type": "application/json"})
        bare = await client.post("/v1/jobs", headers=key)
        other = await client.post("/v1/jobs", json={**link, "url": "http://127.0.0.1:9/other.mp3"}, headers=key)
        options = await client.post("/v1/jobs", json={**link, "romanization": "both"}, headers=key)
        for refused in (empty, bare, other, options):
            assert refused.status_code in (400, 409, 415), refused.text
            assert first.json()["token"] not in refused.text and first.json()["job_id"] not in refused.text
        assert other.status_code == 409 and _error(other)["code"] == "idempotency_key_reused"
        assert "different request" in _error(other)["message"]
        # The same request again is the same job.
        again = await client.post("/v1/jobs", json=link, headers=key)
        assert again.status_code == 202 and again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        # A file under a key: the same bytes are the same job, other bytes a conflict.
        file_key = {"Idempotency-Key": uuid.uuid4().hex}
        up = await client.post("/v1/jobs", files={"file": ("a.ogg", b"OggS" + bytes(500))}, headers=file_key)
        same = await client.post("/v1/jobs", files={"file": ("b.ogg", b"OggS" + bytes(500))}, headers=file_key)
        changed = await client.post("/v1/jobs", files={"file": ("a.ogg", b"OggS" + bytes(501))}, headers=file_key)
        assert up.status_code == same.status_code == 202 and up.json()["job_id"] == same.json()["job_id"]
        assert changed.status_code == 409
        # Keys are bounded: 255 characters are fine, 256 or a space a 400 (never a 500).
        fine = await client.post("/v1/jobs", json=link, headers={"Idempotency-Key": "k" * 255})
        long = await client.post("/v1/jobs", json=link, headers={"Idempotency-Key": "k" * 2601})
        spaced = await client.post("/v1/jobs", json=link, headers={"Idempotency-Key": "a key"})
    assert fine.status_code == 202
    assert long.status_code == spaced.status_code == 400 and "255" in _error(long)["message"]


# --- 2. Purge purges everywhere ---------------------------------------------------------------------


async def test_a_purged_job_is_gone_from_the_bus_the_stores_and_every_gateways_cache(
    settings, nats_url, database_url, rt, tmp_path: Path
):
    job_id, token = await _finished_job(rt)
    await uploads.put(rt.js, b"OggS" + bytes(4000), bucket=AUDIO_BUCKET, name=job_id)
    first = settings.with_(nats_url=nats_url, database_url=database_url, data_dir=tmp_path / "first")
    second = settings.with_(nats_url=nats_url, database_url=database_url, data_dir=tmp_path / "second")
    auth = {"Authorization": f"Bearer {token}"}
    async with serving(first) as (host_a, _), serving(second) as (host_b, _):
        async with httpx.AsyncClient(base_url=f"http://{host_b}", headers=auth) as b:
            assert (await b.get(f"/v1/jobs/{job_id}/audio")).status_code == 200
            cached = tmp_path / "second" / "gateway-audio" / f"{job_id}.ogg"
            assert cached.exists()
            async with httpx.AsyncClient(base_url=f"http://{host_a}", headers=auth) as a:
                purged = await a.delete(f"/v1/jobs/{job_id}", params={"purge": "true"})
            assert purged.status_code == 200 and purged.json()["purged"] is True
            async with asyncio.timeout(10):  # the other gateway heard it
                while cached.exists():  # noqa: ASYNC110 (polling state the server keeps)
                    await asyncio.sleep(0.05)
            sse = await b.get(f"/v1/jobs/{job_id}/events")
            audio = await b.get(f"/v1/jobs/{job_id}/audio")
            transcript = await b.get(f"/v1/jobs/{job_id}/transcript")
        async with websockets.connect(f"ws://{host_b}/v1/jobs/{job_id}/stream?token={token}") as ws:
            got, code = await _ws_messages(ws)
    assert sse.status_code == audio.status_code == transcript.status_code == 410
    assert _error(sse)["code"] == "purged"
    assert [(m["type"], m["code"], m["retryable"]) for m in got] == [("error", "purged", False)] and code == 4410
    info = await rt.js.stream_info(EVENTS.name, subjects_filter=subjects.events(job_id))
    assert not (info.state.subjects or {}).get(subjects.events(job_id)), "the events still replay every line"
    store = await rt.js.object_store(AUDIO_BUCKET)
    with pytest.raises(nats.js.errors.NotFoundError):
        await store.get_info(job_id)
    assert await rt.pool.fetchval("SELECT count(*) FROM segments WHERE job_id = $1", job_id) == 0

    # A gateway that was down during the purge drops its copy when it starts.
    stale = tmp_path / "third" / "gateway-audio"
    stale.mkdir(parents=True)
    (stale / f"{job_id}.ogg").write_bytes(b"OggS")
    async with serving(settings.with_(nats_url=nats_url, database_url=database_url, data_dir=tmp_path / "third")):
        assert not (stale / f"{job_id}.ogg").exists()


# --- 3. Foreign hosts and origins -------------------------------------------------------------------


async def test_foreign_host_names_and_origins_are_refused_and_listed_origins_allowed(
    settings, nats_url, database_url, pool, rt
):
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    link = {"url": "http://127.0.0.1:9/a.mp3"}
    jobs_before = await pool.fetchval("SELECT count(*) FROM jobs")
    async with AsyncTestClient(app=create_app(cfg), base_url=BASE_URL) as client:
        rebound = await client.get("/v1/jobs", headers={"Host": "evil.example:8000"})
        assert rebound.status_code == 400 and _error(rebound)["code"] == "bad_host"
        evil = {"Origin": "https://evil.example"}
        posted = await client.post("/v1/jobs", json=link, headers=evil)
        upload = await client.post("/v1/jobs", files={"file": ("a.ogg", b"OggS")}, headers=evil)
        sandboxed = await client.post("/v1/jobs", json=link, headers={"Origin": "null"})
        job_id, token = await _finished_job(rt)
        deleted = await client.delete(f"/v1/jobs/{job_id}", params={"token": token, "purge": "true"}, headers=evil)
        for refused in (posted, upload, sandboxed, deleted):
            assert refused.status_code == 403 and _error(refused)["code"] == "cross_origin", refused.text
        assert await pool.fetchval("SELECT count(*) FROM jobs") == jobs_before + 1  # only _finished_job's
        assert (await client.get(f"/v1/jobs/{job_id}", params={"token": token})).json()["purged"] is False
        own = await client.post("/v1/jobs", json=link, headers={"Origin": "http://127.0.0.1"})
        assert own.status_code == 202
        assert (await client.get("/v1/jobs", headers={"Host": "localhost:8000"})).status_code == 200
    listed = cfg.with_(cors_origins=("https://app.example",), gateway_allowed_hosts=("scribe.example",))
    async with AsyncTestClient(app=create_app(listed), base_url="http://scribe.example") as client:
        preflight = await client.options(
            "/v1/jobs",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,idempotency-key",
            },
        )
        allowed = await client.post("/v1/jobs", json=link, headers={"Origin": "https://app.example"})
        still_evil = await client.post("/v1/jobs", json=link, headers={"Origin": "https://evil.example"})
        unlisted = await client.get("/healthz", headers={"Host": "localhost"})
    assert preflight.status_code in (200, 204)
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert allowed.status_code == 202 and allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert still_evil.status_code == 403 and unlisted.status_code == 400
    async with serving(cfg) as (host, _):
        with pytest.raises(InvalidStatus) as refused_ws:
            await websockets.connect(
                f"ws://{host}/v1/jobs/{job_id}/stream?token={token}", origin="https://evil.example"
            )  # type: ignore[arg-type]
        async with websockets.connect(
            f"ws://{host}/v1/jobs/{job_id}/stream?token={token}",
            origin=websockets.Origin(f"http://{host}"),
        ) as own_ws:
            assert json.loads(await own_ws.recv())["type"] == "snapshot"
    assert refused_ws.value.response.status_code == 403


# --- 4. Tokens --------------------------------------------------------------------------------------


async def test_a_token_that_is_not_ascii_is_just_a_wrong_token(settings, nats_url, database_url, rt):
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    job_id, token = await _finished_job(rt)
    async with serving(cfg) as (host, _):
        async with httpx.AsyncClient(base_url=f"http://{host}") as client:
            query = await client.get(f"/v1/jobs/{job_id}", params={"token": "令牌" * 16})
            header = await client.get(
                f"/v1/jobs/{job_id}", headers={"Authorization": "Bearer caf\xc3\xa9".encode("latin-1")}
            )
            encoded = await client.get(f"/v1/jobs/{job_id}?to%6Ben={token}")  # the decoded name counts
        async with websockets.connect(f"ws://{host}/v1/jobs/{job_id}/stream?token=%E4%BB%A4%E7%89%8C") as ws:
            got, code = await _ws_messages(ws)
    for refused in (query, header):
        assert refused.status_code == 401 and _error(refused)["code"] == "unauthorized"
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert encoded.status_code == 200
    assert [(m["type"], m["code"]) for m in got] == [("error", "unauthorized")] and code == 4401


# --- 5. Connections and slow clients ----------------------------------------------------------------


def _connect(host: str, source: str = "127.0.0.1") -> socket.socket:
    address, port = host.rsplit(":", 1)
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(15)
    sock.connect((address, int(port)))
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = bytearray()
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):  # noqa: ASYNC110 (polling state the server keeps)
            data += chunk
    return bytes(data)


async def test_slow_headers_and_bodies_are_cut_off_with_a_408(settings, nats_url, database_url):
    cfg = settings.with_(
        nats_url=nats_url,
        database_url=database_url,
        gateway_header_timeout_s=1.0,
        gateway_body_timeout_s=1.0,
        gateway_body_min_rate=1000,
    )
    async with serving(cfg) as (host, _):

        def trickle(request: bytes) -> bytes:
            sock = _connect(host)
            with sock:
                for byte in request:  # a byte every 0.2 s: 5 bytes a second
                    try:
                        sock.sendall(bytes([byte]))
                    except OSError:
                        break
                    time.sleep(0.2)
                return _read_all(sock)

        head = await asyncio.to_thread(trickle, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        body = b'{"url": "http://127.0.0.1:9/a.mp3"}'
        slow_body = await asyncio.to_thread(
            lambda: _slow_body(host, body),
        )
        idle = await asyncio.to_thread(lambda: _read_all(_connect(host)))  # connects, sends nothing
    for answer in (head, slow_body, idle):
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
        assert b'"code":"timeout"' in answer


def _slow_body(host: str, body: bytes) -> bytes:
    sock = _connect(host)
    with sock:
        sock.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.2)
        return _read_all(sock)


async def test_one_client_cannot_hold_every_connection_and_is_told_so_once_per_burst(
    settings, nats_url, database_url, rt, caplog
):
    cfg = settings.with_(
        nats_url=nats_url,
        database_url=database_url,
        gateway_max_connections_per_client=5,
        max_streams=2,
    )
    job_id, token = await _finished_job(rt)
    caplog.set_level(logging.WARNING, logger="gateway.limits")
    async with serving(cfg) as (host, app):
        held = [await asyncio.to_thread(_connect, host) for _ in range(5)]
        refused = []
        for _ in range(20):
            sock = await asyncio.to_thread(_connect, host)
            refused.append(await asyncio.to_thread(_read_all, sock))
            sock.close()
        # Another client is served all along.
        async with httpx.AsyncClient(
            base_url=f"http://{host}", transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        ) as other:
            assert (await other.get("/healthz")).text == "ok"
        for sock in held:
            sock.close()
        async with asyncio.timeout(5):  # the count comes back down as they close
            while app.state.limiter.connections.get("127.0.0.1", 0) > 0:  # noqa: ASYNC110 (polling state the server keeps)
                await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://{host}") as client:
            assert (await client.get("/healthz")).text == "ok"
        # Websockets: two live streams, the third is told to try later (4429) with a sentence.
        url = f"ws://{host}/v1/jobs/{job_id}/stream?token={token}"
        async with websockets.connect(url) as one, websockets.connect(url) as two:
            del one, two
            async with websockets.connect(url) as third:
                got, code = await _ws_messages(third)
    assert all(answer.startswith(b"HTTP/1.1 429 ") for answer in refused), refused[0][:80]
    assert b"too_many_connections" in refused[0] and b"retry-after: 5" in refused[0]
    assert [(m["type"], m["code"], m["retryable"]) for m in got] == [("error", "too_many_streams", True)]
    assert code == 4429
    lines = [r for r in caplog.records if r.name == "gateway.limits"]
    assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines]  # a line per burst, not per socket


def test_the_gateway_raises_its_open_files_limit_at_start(nats_url, database_url, data_dir):
    import resource

    port = _free_port()
    env = {
        **os.environ,
        "SCRIBE_NATS_URL": nats_url,
        "SCRIBE_DATABASE_URL": database_url,
        "SCRIBE_GATEWAY_PORT": str(port),
        "SCRIBE_DATA_DIR": str(data_dir),
    }
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    soft = min(256, hard)

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    proc = subprocess.Popen([sys.executable, "-m", "gateway"], env=env, preexec_fn=low_limit)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # noqa: ASYNC110 (polling state the server keeps)
            assert proc.poll() is None, "the gateway exited"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            time.sleep(0.1)
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
    finally:
        proc.terminate()
        proc.wait(10)
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    assert line.split()[3] == str(hard), line


# --- 6. Bodies --------------------------------------------------------------------------------------


async def test_only_an_upload_may_be_large(settings, nats_url, database_url, rt):
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    job_id, token = await _finished_job(rt)
    async with serving(cfg) as (host, _), httpx.AsyncClient(base_url=f"http://{host}") as client:
        padded = {"url": "http://127.0.0.1:9/a.mp3", "pad": "x" * 20_000}
        big_json = await client.post("/v1/jobs", json=padded)
        declared = await asyncio.to_thread(
            _raw,
            host,
            b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 500000000\r\nConnection: close\r\n\r\n{",
        )
        plain = await client.post("/v1/jobs", content=b"url=x", headers={"content-type": "text/plain"})
        missing = await client.post("/v1/jobs", content=b"{}")
        healthy = await client.get("/healthz")
    assert big_json.status_code == 413 and "16,384" in _error(big_json)["message"]
    assert declared.startswith(b"HTTP/1.1 413 ")  # refused from the header, before any body is read
    assert plain.status_code == missing.status_code == 415
    assert healthy.text == "ok"


def _raw(host: str, request: bytes) -> bytes:
    sock = _connect(host)
    with sock:
        sock.sendall(request)
        return _read_all(sock)


# --- 7. What used to answer 500 ---------------------------------------------------------------------


async def test_simple_bad_input_gets_a_4xx_in_the_error_shape_never_a_500(settings, nats_url, database_url, rt, caplog):
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    job_id, token = await _finished_job(rt)
    await uploads.put(rt.js, b"OggS" + bytes(4000), bucket=AUDIO_BUCKET, name=job_id)
    boundary = "b0undary"

    def form(field_headers: str, value: bytes) -> bytes:
        return (
            f'--{boundary}\r\nContent-Disposition: form-data; name="romanization"\r\n{field_headers}\r\n'.encode()
            + value
            + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.ogg"\r\n'
            f"Content-Type: audio/ogg\r\n\r\nOggS\r\n--{boundary}--\r\n".encode()
        )

    multipart = {"content-type": f"multipart/form-data; boundary={boundary}"}
    caplog.set_level(logging.ERROR)
    async with serving(cfg) as (host, _), httpx.AsyncClient(base_url=f"http://{host}") as client:
        answers = {
            "invalid utf-8 field": await client.post("/v1/jobs", content=form("", b"\xff\xfe\xfa"), headers=multipart),
            "unknown charset": await client.post(
                "/v1/jobs", content=form("Content-Type: text/plain; charset=x-klingon\r\n", b"both"), headers=multipart
            ),
            "nul in a static path": await client.get("/static/viewer.js%00.png"),
            "traversal": await client.get("/static/..%2F..%2Fapp.py"),
            "5,000-digit range": await client.get(
                f"/v1/jobs/{job_id}/audio", params={"token": token}, headers={"Range": "bytes=" + "9" * 5000 + "-"}
            ),
            "long key": await client.post(
                "/v1/jobs", json={"url": "http://127.0.0.1:9/a.mp3"}, headers={"Idempotency-Key": "k" * 2601}
            ),
            "huge after": await client.get(f"/v1/jobs/{job_id}/events", params={"token": token, "after": "9" * 5000}),
            "bad cursor": await client.get("/v1/jobs", params={"cursor": "%%%"}),
            "bad limit": await client.get("/v1/jobs", params={"limit": "many"}),
            "bad format": await client.get(f"/v1/jobs/{job_id}/transcript", params={"token": token, "format": "pdf"}),
        }
    for name, answer in answers.items():
        assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text)
        error = _error(answer)
        assert "<" not in error["message"] and "ParamType" not in error["message"], (name, error)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a traceback was logged"
    assert "format" in _error(answers["bad format"])["message"]


async def test_the_message_bus_down_answers_503_with_retry_after(settings, database_url, rt, tmp_path: Path):
    nats = EmbeddedNats(tmp_path / "jetstream")
    url = nats.start()
    cfg = settings.with_(nats_url=url, database_url=database_url)
    job_id, token = await _finished_job(rt)
    try:
        async with AsyncTestClient(app=create_app(cfg), base_url=BASE_URL) as client:
            nats.stop()
            app_nc = client.app.state.rt.nc  # type: ignore[attr-defined]
            async with asyncio.timeout(10):
                while app_nc.is_connected:  # noqa: ASYNC110 (polling state the server keeps)
                    await asyncio.sleep(0.05)
            submit = await client.post("/v1/jobs", json={"url": "http://127.0.0.1:9/a.mp3"})
            events = await client.get(f"/v1/jobs/{job_id}/events", params={"token": token})
            ready = await client.get("/readyz")
    finally:
        nats.stop()
    for answer in (submit, events, ready):
        assert answer.status_code == 503 and answer.headers["retry-after"].isdigit(), answer.text
    assert _error(submit)["code"] == "unavailable" and "try again" in _error(submit)["message"]


# --- 8. Websockets that talk, and viewers that stop reading ----------------------------------------


async def test_a_websocket_client_that_talks_is_read_and_its_pongs_keep_it_open(settings, nats_url, database_url, rt):
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    job_id = uuid.uuid4().hex
    await repo.create_job(rt.pool, job_id, "https://example.com/a.mp3", user_id=None, options=JobOptions())
    token = job_token(await repo.secret(rt.pool, TOKEN_SECRET), job_id)
    async with serving(cfg, ws_ping_interval=0.3, ws_ping_timeout=0.6) as (host, _):
        async with websockets.connect(f"ws://{host}/v1/jobs/{job_id}/stream?token={token}") as ws:
            assert json.loads(await ws.recv())["type"] == "snapshot"
            for n in range(5):  # a chatty client; the server discards what it sends
                await ws.send(f"hello {n}")
            await asyncio.sleep(2.5)  # several server pings, each answered by the client library
            await ws.send("still here")
            await bus.publish_event(rt.js, Partial(job_id=job_id, chunk_seq=0, segments=[_line(0)], chunks_done=1))
            live = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert ws.close_code is None
    assert live["type"] == "segments" and [s["seq"] for s in live["segments"]] == [0]


async def test_a_viewer_that_stops_reading_is_closed_as_lagged_and_then_dropped(settings, nats_url, database_url, rt):
    cfg = settings.with_(nats_url=nats_url, database_url=database_url, gateway_send_timeout_s=1.0)
    job_id = uuid.uuid4().hex
    await repo.create_job(rt.pool, job_id, "https://example.com/a.mp3", user_id=None, options=JobOptions())
    token = job_token(await repo.secret(rt.pool, TOKEN_SECRET), job_id)
    big = "長" * 20_000  # 60 kB a line: a few fill every buffer between a stalled client and the server
    async with serving(cfg) as (host, app):
        path = f"/v1/jobs/{job_id}/stream?token={token}"
        pauser = await asyncio.to_thread(_stalled_viewer, host, path, "127.0.0.3")  # reads again later
        gone = await asyncio.to_thread(_stalled_viewer, host, path, "127.0.0.4")  # never reads again
        for seq in range(150):  # 9 MB: more than the kernel buffers for a client that does not read
            await bus.publish_event(
                rt.js, Partial(job_id=job_id, chunk_seq=seq, segments=[_line(seq, big)], chunks_done=seq + 1)
            )
        async with asyncio.timeout(30):  # given up on: its stream has ended (the close is written)
            while "127.0.0.3" in app.state.limiter.streams:  # noqa: ASYNC110 (polling state the server keeps)
                await asyncio.sleep(0.05)
        late = await asyncio.to_thread(_read_all, pauser)  # reading again: it gets what it missed, then why
        async with asyncio.timeout(30):  # dropped: its connection is no longer counted
            while "127.0.0.4" in app.state.limiter.connections:  # noqa: ASYNC110 (polling state the server keeps)
                await asyncio.sleep(0.1)
        pauser.close()
        gone.close()
    assert b'"type":"lagged"' in late
    assert (4408).to_bytes(2, "big") + b"lagged" in late  # the close frame
    lagged = json.loads(late[late.index(b'{"type":"lagged"') :].split(b"}")[0] + b"}")
    assert lagged["last_line"] >= -1 and "reconnect with after=" in lagged["message"]


def _stalled_viewer(host: str, path: str, source: str) -> socket.socket:
    """A websocket client that completes the handshake and then reads nothing, with a small buffer."""
    address, port = host.rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16_384)
    sock.bind((source, 0))
    sock.settimeout(30)
    sock.connect((address, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:  # noqa: ASYNC110 (polling state the server keeps)
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock

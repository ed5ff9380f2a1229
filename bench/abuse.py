"""The gateway under attack, before and after issue 15, in one run: what a hostile client can hold.

Each attack runs against a real ``python -m gateway`` process of this checkout ("after") and of
the commit before the issue ("before", checked out into a git worktree and run with the same
Python), on one embedded NATS and PostgreSQL. For each it prints what the gateway held (open
files), its memory (peak and after), ``/healthz`` latency seen by another client address
(127.0.0.2: Linux routes all of 127/8 to loopback), whether that client's upload still works,
and what the gateway wrote to its log.

    .venv/bin/python -m bench.abuse                     # everything, full size (about 15 minutes)
    .venv/bin/python -m bench.abuse --quick             # small sizes, a few minutes
    .venv/bin/python -m bench.abuse --only websockets,slowloris --sides after

Attacks (full sizes, as the issue measured them):
  halfopen    1,030 HTTP connections from one address that send nothing, held 20 s
  websockets  1,000 websockets from one address on one job, the gateway's soft open-files limit 1,024
  slowloris   200 request heads and 50 bodies sent at one byte a second, for 40 s
  bigjson     a 476 MB JSON body, then three at once
  talker      a websocket client that sends one message, then only answers pings, for 60 s
  stalled     a viewer that stops reading while 150 lines of 60 kB go by, watched for 60 s
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import websockets

from bench.gateway_load import new_job, raise_open_files, servers, stop
from bench.measure import worktree
from core import bus
from core.messages import Partial, Segment
from core.process import Runtime, connected
from core.settings import Settings
from scribe.embedded import free_port, infrastructure
from store.db import create_pool

REPO = Path(__file__).resolve().parent.parent
BEFORE_COMMIT = "8e538ee"  # the last commit before issue 15
OTHER = "127.0.0.2"  # the innocent client
ATTACKER = "127.0.0.1"
ATTACKS = ("halfopen", "websockets", "slowloris", "bigjson", "talker", "stalled")


@dataclass
class Sizes:
    """How big each attack is (each is also a flag: ``--hold-s 5``); the defaults are the issue's."""

    halfopen: int = 1030  # half-open connections
    hold_s: float = 20.0  # how long they are held
    websockets: int = 1000
    slow_heads: int = 200  # request heads sent a byte a second
    slow_bodies: int = 50  # JSON bodies sent a byte a second
    slow_s: float = 40.0  # how long the slow clients keep at it
    json_mb: int = 476  # the size of each huge JSON body
    watch_s: float = 60.0  # how long the talking and the stalled websocket are watched

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            halfopen=300,
            hold_s=8.0,
            websockets=300,
            slow_heads=50,
            slow_bodies=20,
            slow_s=15.0,
            json_mb=60,
            watch_s=45.0,
        )


@dataclass
class Gateway:
    """One ``python -m gateway`` process and what it writes."""

    side: str
    proc: subprocess.Popen[bytes]
    host: str
    log: Path

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.proc.pid)

    def files(self) -> tuple[int, int]:
        """Its open files, and how many of them are sockets (connections, the listener, NATS, PostgreSQL)."""
        folder = f"/proc/{self.proc.pid}/fd"
        try:
            names = os.listdir(folder)
        except OSError:
            return -1, -1
        sockets = 0
        for name in names:
            with contextlib.suppress(OSError):
                sockets += os.readlink(f"{folder}/{name}").startswith("socket:")
        return len(names), sockets

    def rss_mb(self) -> float:
        try:
            return float(self.ps.memory_info().rss) / 1e6
        except psutil.Error:
            return -1.0

    def peak_rss_mb(self) -> float:
        """The kernel's high-water mark of its resident memory (VmHWM): no spike between samples is missed."""
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
        return -1.0

    def log_size(self) -> tuple[int, int, int]:
        """Lines, lines at WARNING or above, bytes; the other client's requests (the probe) are not counted."""
        data = self.log.read_bytes() if self.log.exists() else b""
        lines = [line for line in data.splitlines() if f"{OTHER}:".encode() not in line]
        loud = sum(1 for line in lines if b'"level": "warning"' in line or b'"level": "error"' in line)
        return len(lines), loud, sum(len(line) + 1 for line in lines)


@dataclass
class Watch:
    """What the gateway did while an attack ran: sampled every 0.1 s."""

    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    peak_files: tuple[int, int] = (0, 0)
    end_files: tuple[int, int] = (0, 0)


async def watching(gateway: Gateway) -> AsyncIterator[Watch]:
    """Probe ``/healthz`` from the other address and sample the gateway until the caller is done."""
    watch = Watch()
    done = asyncio.Event()

    async def probe() -> None:
        transport = httpx.AsyncHTTPTransport(local_address=OTHER)
        async with httpx.AsyncClient(base_url=f"http://{gateway.host}", transport=transport, timeout=5) as client:
            while not done.is_set():
                started = time.perf_counter()
                try:
                    response = await client.get("/healthz")
                    if response.status_code == 200:
                        watch.latencies.append(time.perf_counter() - started)
                    else:
                        watch.failures += 1
                except httpx.HTTPError:
                    watch.failures += 1
                files = gateway.files()
                watch.peak_files = (max(watch.peak_files[0], files[0]), max(watch.peak_files[1], files[1]))
                await asyncio.sleep(0.1)

    task = asyncio.create_task(probe())
    try:
        yield watch
    finally:
        watch.end_files = gateway.files()  # the attack is over; its clients may still be connected
        done.set()
        await task


watch_context = contextlib.asynccontextmanager(watching)


async def upload_from_other(gateway: Gateway, after_s: float = 0.0) -> str:
    """A small upload from the innocent client (``after_s`` from now): its status, or what went wrong."""
    await asyncio.sleep(after_s)
    transport = httpx.AsyncHTTPTransport(local_address=OTHER)
    async with httpx.AsyncClient(base_url=f"http://{gateway.host}", transport=transport, timeout=15) as client:
        try:
            response = await client.post("/v1/jobs", files={"file": ("a.ogg", b"OggS" + bytes(2000), "audio/ogg")})
            return f"{response.status_code}" + ("" if response.status_code == 202 else f" {response.text[:80]}")
        except httpx.HTTPError as exc:
            return f"failed: {type(exc).__name__}"


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


AFTER_S = 3.0  # how long after the attacker left the gateway's files are counted again


async def report(
    gateway: Gateway, watch: Watch, log_before: tuple[int, int, int], upload: str, **extra: str
) -> dict[str, str]:
    """The figures every attack prints (the attack's own ones in ``extra``)."""
    await asyncio.sleep(AFTER_S)
    lines, loud, size = (now - then for now, then in zip(gateway.log_size(), log_before, strict=True))
    peak, end, after = watch.peak_files, watch.end_files, gateway.files()
    ms = [value * 1000 for value in watch.latencies]
    healthz = f"{_quantile(ms, 0.5):.0f} / {_quantile(ms, 0.99):.0f} / {max(ms, default=float('nan')):.0f}"
    return {
        **extra,
        f"gateway sockets peak / end / {AFTER_S:.0f} s later": f"{peak[1]} / {end[1]} / {after[1]}",
        "gateway open files peak / end": f"{peak[0]} / {end[0]}",
        "gateway RSS peak / after MB": f"{gateway.peak_rss_mb():.0f} / {gateway.rss_mb():.0f}",
        "other client's /healthz p50/p99/max ms": healthz,
        "other client's /healthz failed": str(watch.failures),
        "other client's upload": upload,
        "log lines but the probe's, WARNING+ (bytes)": f"{lines}, {loud} ({size:,})",
    }


# --- the attacks ----------------------------------------------------------------------------


def _connect(host: str, source: str = ATTACKER, receive_buffer: int | None = None) -> socket.socket:
    address, port = host.rsplit(":", 1)
    sock = socket.socket()
    if receive_buffer is not None:  # before connecting: the window offered in the handshake must fit in it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect((address, int(port)))
    return sock


async def halfopen(gateway: Gateway, rt: Runtime, sizes: Sizes) -> dict[str, str]:
    log_before = gateway.log_size()
    held: list[socket.socket] = []
    refused = 0
    async with watch_context(gateway) as watch:
        for _ in range(sizes.halfopen):
            try:
                held.append(await asyncio.to_thread(_connect, gateway.host))
            except OSError:
                refused += 1
        await asyncio.sleep(sizes.hold_s / 2)
        upload = await upload_from_other(gateway)
        await asyncio.sleep(sizes.hold_s / 2)
        open_after = sum(1 for sock in held if _still_open(sock))
    for sock in held:
        sock.close()
    return await report(
        gateway,
        watch,
        log_before,
        upload,
        **{"attacker's connections": f"{len(held)} made, {refused} refused at connect, {open_after} open at the end"},
    )


def _answered(sock: socket.socket) -> bool:
    """Whether the server has sent something (or closed) without waiting for it."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
        return True
    except BlockingIOError:
        return False
    finally:
        sock.settimeout(120)


def _still_open(sock: socket.socket) -> bool:
    """Whether the server has not closed the connection (nothing to read means open)."""
    sock.setblocking(False)
    try:
        data = sock.recv(16, socket.MSG_PEEK)
        return bool(data) and not data.startswith(b"HTTP/1.1 4")
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


async def many_websockets(gateway: Gateway, rt: Runtime, sizes: Sizes) -> dict[str, str]:
    job_id, token = await new_job(rt)
    log_before = gateway.log_size()
    url = f"ws://{gateway.host}/v1/jobs/{job_id}/stream?token={token}"
    sockets: list[Any] = []
    outcomes: dict[str, int] = {}
    async with watch_context(gateway) as watch:
        for _ in range(sizes.websockets):
            try:
                ws = await websockets.connect(url, open_timeout=10)
                sockets.append(ws)
                first = await asyncio.wait_for(ws.recv(), 10)
                kind = "snapshot" if '"snapshot"' in str(first) else "refused (error, close)"
            except Exception as exc:  # noqa: BLE001 (the kind of failure is the figure)
                kind = f"failed ({type(exc).__name__})"
            outcomes[kind] = outcomes.get(kind, 0) + 1
        upload = await upload_from_other(gateway)
        await asyncio.sleep(2)
    for ws in sockets:
        with contextlib.suppress(Exception):
            await ws.close()
    return await report(
        gateway,
        watch,
        log_before,
        upload,
        **{"attacker's websockets": ", ".join(f"{n} {k}" for k, n in outcomes.items())},
    )


async def slowloris(gateway: Gateway, rt: Runtime, sizes: Sizes) -> dict[str, str]:
    log_before = gateway.log_size()
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow" + b"o" * 200 + b"\r\n\r\n"
    body = b'{"url": "http://127.0.0.1:9/' + b"a" * 400 + b'.mp3"}'
    body_head = (
        b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    cut: dict[str, list[float]] = {"heads": [], "bodies": []}  # seconds after the start, when the gateway let go
    answers: dict[str, Counter[str]] = {"heads": Counter(), "bodies": Counter()}
    started = time.monotonic()
    address, port = gateway.host.rsplit(":", 1)

    async def trickle(kind: str, first: bytes, rest: bytes) -> None:
        try:
            reader, writer = await asyncio.open_connection(address, int(port), local_addr=(ATTACKER, 0))
        except OSError:
            answers[kind]["refused at connect"] += 1
            return
        try:
            writer.write(first)
            for byte in rest:  # one byte a second, until the server answers or closes
                if time.monotonic() - started > sizes.slow_s:
                    answers[kind]["still open at the end"] += 1
                    return
                writer.write(bytes([byte]))
                try:
                    answer = await asyncio.wait_for(reader.read(256), 1.0)
                except TimeoutError:
                    continue
                answers[kind][answer[:12].decode(errors="replace") or "closed"] += 1
                cut[kind].append(time.monotonic() - started)
                return
            answers[kind]["sent it all"] += 1
        except OSError:
            answers[kind]["reset"] += 1
            cut[kind].append(time.monotonic() - started)
        finally:
            writer.close()

    async with watch_context(gateway) as watch:
        uploading = asyncio.create_task(upload_from_other(gateway, after_s=sizes.slow_s / 2))
        await asyncio.gather(
            *(trickle("heads", b"", head) for _ in range(sizes.slow_heads)),
            *(trickle("bodies", body_head, body) for _ in range(sizes.slow_bodies)),
        )
        upload = await uploading
    figures = {}
    for kind, times in cut.items():
        got = ", ".join(f"{n}x {what!r}" for what, n in sorted(answers[kind].items()))
        figures[f"slow {kind}: what they got"] = got
        figures[f"slow {kind}: let go after (s) p50/max"] = (
            f"{_quantile(times, 0.5):.1f} / {max(times):.1f}" if times else "never"
        )
    return await report(gateway, watch, log_before, upload, **figures)


async def big_json(gateway: Gateway, rt: Runtime, sizes: Sizes) -> dict[str, str]:
    log_before = gateway.log_size()
    size = sizes.json_mb * 1_000_000

    def send_one() -> str:
        try:
            sock = _connect(gateway.host)
        except OSError:
            return "refused at connect"
        with sock:
            sock.settimeout(120)
            sock.sendall(
                b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {size}\r\n\r\n".encode()
            )
            piece = b'{"url": "' + b"a" * (1_000_000 - 9)  # a megabyte at a time: never the whole body in memory
            sent = 0
            try:
                while sent < size and not _answered(sock):  # a client stops sending once it is answered
                    chunk = piece[: min(len(piece), size - sent)]
                    sock.sendall(chunk)
                    sent += len(chunk)
                answer = sock.recv(200)
            except OSError as exc:
                return f"{type(exc).__name__} after {sent / 1e6:.0f} MB sent"
            sock.settimeout(2)
            closed = False
            with contextlib.suppress(OSError):
                closed = sock.recv(1 << 16) == b""
            return f"{answer[:12].decode(errors='replace')} after {sent / 1e6:.0f} MB sent" + (
                ", then closed" if closed else ""
            )

    async with watch_context(gateway) as watch:
        one = await asyncio.to_thread(send_one)
        upload, *three = await asyncio.gather(
            upload_from_other(gateway, after_s=1.0), *(asyncio.to_thread(send_one) for _ in range(3))
        )
    return await report(gateway, watch, log_before, upload, **{"one body": one, "three at once": "; ".join(three)})


async def talker(gateway: Gateway, rt: Runtime, sizes: Sizes) -> dict[str, str]:
    job_id, token = await new_job(rt)
    log_before = gateway.log_size()
    started = time.monotonic()
    url = f"ws://{gateway.host}/v1/jobs/{job_id}/stream?token={token}"
    async with watch_context(gateway) as watch:
        uploading = asyncio.create_task(upload_from_other(gateway, after_s=sizes.watch_s / 2))
        # It sends no pings of its own: it only answers the server's (the library does that while reading).
        async with websockets.connect(url, ping_interval=None) as ws:
            await ws.recv()
            await ws.send("hello")
            with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
                async with asyncio.timeout(sizes.watch_s):
                    async for _ in ws:  # heartbeats; the library answers the server's pings
                        pass
            outcome = (
                f"still open after {sizes.watch_s:.0f} s"
                if ws.close_code is None
                else f"closed after {time.monotonic() - started:.0f} s with {ws.close_code} {ws.close_reason!r}"
            )
        upload = await uploading
    return await report(gateway, watch, log_before, upload, **{"client that talked": outcome})


def _stalled_viewer(host: str, path: str, source: str) -> socket.socket:
    """A websocket opened by hand that then reads nothing (a small receive buffer, so the gateway notices soon)."""
    sock = _connect(host, source, receive_buffer=16_384)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    return sock


def _read_rest(sock: socket.socket) -> str:
    """Read what the gateway sends until it closes or is quiet for 5 s: how the stream ended, as a figure."""
    sock.settimeout(5)
    data = bytearray()
    ended = "still open (quiet 5 s)"
    try:
        while chunk := sock.recv(1 << 20):
            data += chunk
        ended = "then closed"
    except TimeoutError:
        pass
    except OSError as exc:
        ended = f"then {type(exc).__name__}"
    finally:
        sock.close()
    frames = list(_frames(bytes(data)))
    messages = sum(1 for opcode, _ in frames if opcode == 0x1)
    lagged = any(opcode == 0x1 and b'"type":"lagged"' in payload for opcode, payload in frames)
    closes = [int.from_bytes(payload[:2], "big") for opcode, payload in frames if opcode == 0x8]
    told = ("lagged, " if lagged else "") + (f"close {closes[0]}" if closes else "no close frame")
    return f"{messages} messages, {len(data) / 1e6:.1f} MB ({told}), {ended}"


async def stalled(gateway: Gateway, rt: Runtime, sizes: Sizes) -> dict[str, str]:
    """Two viewers stop reading while the lines go by: one never reads again, one reads again at 2/3 of the watch."""
    job_id, token = await new_job(rt)
    log_before = gateway.log_size()
    path = f"/v1/jobs/{job_id}/stream?token={token}"
    never = await asyncio.to_thread(_stalled_viewer, gateway.host, path, "127.0.0.3")
    later = await asyncio.to_thread(_stalled_viewer, gateway.host, path, "127.0.0.4")
    big = "長" * 20_000
    async with watch_context(gateway) as watch:
        for seq in range(150):
            line = Segment(seq=seq, start=float(seq), end=seq + 0.9, text=big, jyutping="", yale="", words=[])
            await bus.publish_event(rt.js, Partial(job_id=job_id, chunk_seq=seq, segments=[line], chunks_done=seq + 1))
        upload = await upload_from_other(gateway, after_s=sizes.watch_s / 2)
        await asyncio.sleep(sizes.watch_s / 6)
        reading = asyncio.create_task(asyncio.to_thread(_read_rest, later))
        await asyncio.sleep(sizes.watch_s / 3)
        held = [c for c in gateway.ps.net_connections() if c.raddr and c.raddr.ip == "127.0.0.3"]
        unsent = sum(_unsent(c) for c in held)
        then_read = await asyncio.to_thread(_read_rest, never)
        reader_got = await reading
    return await report(
        gateway,
        watch,
        log_before,
        upload,
        **{
            f"never-reading viewer after {sizes.watch_s:.0f} s": (
                f"open, {unsent / 1e6:.1f} MB unsent" if held else "gone"
            ),
            "what it reads then": then_read,
            f"viewer reading again at {sizes.watch_s * 2 / 3:.0f} s gets": reader_got,
        },
    )


def _unsent(connection: Any) -> int:
    """Bytes in a socket's send queue (from /proc/net/tcp, by both its ports: the local one is the listener's)."""
    ports = (connection.laddr.port, connection.raddr.port)
    with contextlib.suppress(OSError):
        for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = row.split()
            if (int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)) == ports:
                return int(fields[4].split(":")[0], 16)
    return 0


def _frames(data: bytes) -> Iterator[tuple[int, bytes]]:
    """The opcode and payload of each (unmasked, uncompressed) websocket frame a server sent."""
    at = 0
    while at + 2 <= len(data):
        opcode, length, at = data[at] & 0x0F, data[at + 1] & 0x7F, at + 2
        if length in (126, 127):
            width = 2 if length == 126 else 8
            length, at = int.from_bytes(data[at : at + width], "big"), at + width
        yield opcode, data[at : at + length]
        at += length


RUNNERS: dict[str, Callable[[Gateway, Runtime, Sizes], Coroutine[Any, Any, dict[str, str]]]] = {
    "halfopen": halfopen,
    "websockets": many_websockets,
    "slowloris": slowloris,
    "bigjson": big_json,
    "talker": talker,
    "stalled": stalled,
}


# --- the two gateways -------------------------------------------------------------------------


async def start_gateway(side: str, code: Path, settings: Settings, tmp: Path, attack: str) -> Gateway:
    port = free_port()
    log = tmp / f"gateway-{side}-{attack}.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(code),
        "SCRIBE_NATS_URL": settings.nats_url,
        "SCRIBE_DATABASE_URL": settings.database_url,
        "SCRIBE_GATEWAY_PORT": str(port),
        "SCRIBE_DATA_DIR": str(tmp / f"data-{side}"),
        "SCRIBE_ALLOW_PRIVATE_URLS": "true",
        "SCRIBE_LOG_FORMAT": "json",
    }
    limit = 1024 if attack == "websockets" else None

    def lower_limit() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: ASYNC220 (starting it is instant; its output goes to a file)
            [sys.executable, "-m", "gateway"],
            env=env,
            cwd=code,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lower_limit,
            start_new_session=True,
        )
    host = f"127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=2) as client:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError(f"the {side} gateway exited: see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"http://{host}/readyz")).status_code == 200:
                    return Gateway(side, proc, host, log)
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the {side} gateway did not become ready")


DESCRIPTIONS = {
    "halfopen": "HTTP connections from one address that send nothing",
    "websockets": "websockets from one address on one job, the gateway's soft open-files limit 1,024",
    "slowloris": "request heads and bodies sent at one byte a second",
    "bigjson": "a huge JSON body, then three at once",
    "talker": "a websocket client that sends one message, then only answers pings",
    "stalled": "a viewer that stops reading while 150 lines of 60 kB go by",
}


def print_table(attack: str, results: dict[str, dict[str, str]]) -> None:
    print(f"\n{attack}: {DESCRIPTIONS[attack]}")
    sides = list(results)
    rows = list(next(iter(results.values())))
    width = max(len(r) for r in rows) + 2
    for row in rows:
        cells = " | ".join(f"{side}: {results[side].get(row, '-')}" for side in sides)
        print(f"  {row:<{width}} {cells}")


async def run(args: argparse.Namespace) -> None:
    sizes = Sizes.quick() if args.quick else Sizes()
    for name in vars(sizes):
        if getattr(args, name) is not None:
            setattr(sizes, name, getattr(args, name))
    attacks = [a for a in (args.only.split(",") if args.only else ATTACKS)]
    raise_open_files(sizes.halfopen + sizes.websockets + 4096)
    print(f"bench/abuse.py: {' '.join(sys.argv)}")
    print(f"machine: {os.cpu_count()} cores; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"before: commit {BEFORE_COMMIT} (the code before issue 15); after: this checkout")
    with (
        tempfile.TemporaryDirectory(prefix="scribe-abuse-") as folder,
        worktree(BEFORE_COMMIT, "scribe-abuse-before-") as old_code,
    ):
        tmp = Path(folder)
        codes = {"before": old_code, "after": REPO}
        async with (
            infrastructure(Settings(data_dir=tmp)) as settings,
            connected(settings, "bench-abuse", create_pool, services=[]) as rt,
        ):
            print(f"servers: NATS {settings.nats_url}, PostgreSQL in {tmp}; watched: {', '.join(servers(tmp))}")
            for attack in attacks:
                results: dict[str, dict[str, str]] = {}
                for side in args.sides.split(","):
                    gateway = await start_gateway(side, codes[side], settings, tmp, attack)
                    try:
                        results[side] = await RUNNERS[attack](gateway, rt, sizes)
                    except Exception as exc:  # noqa: BLE001 (a crash under attack is a result)
                        results[side] = {"outcome": f"the attack failed: {type(exc).__name__}: {exc}"[:200]}
                    finally:
                        await asyncio.to_thread(stop, gateway.proc)
                print_table(attack, results)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Attack the gateway before and after issue 15; print what it held.")
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--only", help=f"a comma-separated subset of: {', '.join(ATTACKS)}")
    parser.add_argument("--sides", default="before,after", help="before,after (default), or one of them")
    for name, value in vars(Sizes()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), metavar="N", help=f"default {value}")
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()

"""The embedded servers and the schema: started from the wheels, cleaned up, migrated once."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import pytest

from core import bus
from core.settings import Settings
from core.topology import Topology
from scribe import embedded
from scribe.embedded import EmbeddedError, EmbeddedNats, lock_store, remove_orphan_stores, temporary_store
from store.db import migrate, migrations

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_embedded_nats_dies_with_a_killed_parent(tmp_path: Path) -> None:
    code = (
        "import sys, time, pathlib\n"
        "from scribe.embedded import EmbeddedNats\n"
        "s = EmbeddedNats(pathlib.Path(sys.argv[1])); s.start()\n"
        "print(s._process.pid, flush=True); time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "nats-server outlived the process that started it"


async def test_topology_is_created_idempotently(nats_url: str) -> None:
    nc = await bus.connect(nats_url, name="test")
    try:
        js = nc.jetstream()
        topology = Topology.from_settings(Settings(max_deliver=7, ack_wait_s=12))
        await bus.ensure_topology(js, topology)
        await bus.ensure_topology(js, topology)  # a second process starting up
        names = {s.config.name for s in await js.streams_info()}
        assert {"SCRIBE_JOBS", "SCRIBE_CHUNKS", "SCRIBE_SEGMENTS", "SCRIBE_EVENTS"} <= names
        info = await js.consumer_info("SCRIBE_CHUNKS", "transcriber")
        assert info.config.max_deliver == 7 and info.config.ack_wait == 12
        # A transcriber started with other limits brings its consumer to its own definition
        # (4.1 s does not survive the nanosecond round trip exactly: it must still be accepted) ...
        transcriber = Topology.from_settings(Settings(max_deliver=4, ack_wait_s=4.1))
        await bus.ensure_topology(js, transcriber, owned=["transcriber"])
        info = await js.consumer_info("SCRIBE_CHUNKS", "transcriber")
        assert info.config.max_deliver == 4 and info.config.ack_wait == pytest.approx(4.1)
        # ... and a streamer started without them leaves the transcribers' consumer alone.
        await bus.ensure_topology(js, Topology.from_settings(Settings()), owned=["streamer"])
        info = await js.consumer_info("SCRIBE_CHUNKS", "transcriber")
        assert info.config.max_deliver == 4 and info.config.ack_wait == pytest.approx(4.1)
    finally:
        await nc.close()


async def test_a_consumer_the_server_will_not_change_stops_the_start(nats_url: str) -> None:
    nc = await bus.connect(nats_url, name="test")
    try:
        js = nc.jetstream()
        topology = Topology.from_settings(Settings())
        await bus.ensure_topology(js, topology)
        # Someone made the durable a push consumer: a pull consumer cannot be made of it.
        streamer = topology.streamer
        await js.delete_consumer(streamer.stream.name, streamer.durable)
        await js.add_consumer(streamer.stream.name, durable_name=streamer.durable, deliver_subject="elsewhere")
        with pytest.raises(bus.TopologyError, match="consumer streamer on SCRIBE_JOBS"):
            await bus.ensure_topology(js, topology)
    finally:
        await nc.close()


def test_embedded_nats_refuses_to_start_without_its_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded.importlib.resources, "files", lambda package: tmp_path)
    server = EmbeddedNats(tmp_path / "jetstream")
    with pytest.raises(EmbeddedError, match="nats-server.conf is missing"):
        server.spawn()
    assert server._process is None


async def test_migrations_apply_once(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn)  # the session pool may have applied them already
        assert await migrate(conn) == []
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
        assert versions == [v for v, _, _ in migrations()]
    finally:
        await conn.close()


async def test_infrastructure_starts_both_servers_and_stops_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import socket
    import tempfile

    import nats

    from scribe.embedded import infrastructure

    top = Path(tempfile.mkdtemp(prefix="scribe-test-infra-"))  # reachable by the postgres user
    data_dir = top / "cache" / "cantonesescribe"  # as on a new machine: not there yet
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    try:
        async with infrastructure(Settings(data_dir=data_dir)) as running:
            nc = await nats.connect(running.nats_url)
            assert nc.max_payload == 8 * 1024 * 1024  # our server config, not the 1 MB default
            await nc.close()
            conn = await asyncpg.connect(running.database_url)
            assert await conn.fetchval("SELECT 1") == 1
            await conn.close()
        port = int(running.nats_url.rsplit(":", 1)[1])
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
        assert not (data_dir / "postgres" / "postmaster.pid").exists()
        assert (data_dir / "nats" / "jetstream").is_dir(), "JetStream is kept in the data folder"
        os.close(lock_store(data_dir / "nats", wait_s=0))  # and its lock was released
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_a_nats_data_folder_in_use_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "nats"
    held = lock_store(store)
    try:
        with pytest.raises(EmbeddedError) as refused:
            lock_store(store, wait_s=0)
        assert str(refused.value) == (
            f"another scribe (pid {os.getpid()}) is using {store}; stop it or set SCRIBE_DATA_DIR to another folder"
        )
    finally:
        os.close(held)
    os.close(lock_store(store, wait_s=0))


def test_a_nats_data_folder_still_held_after_its_scribe_died_is_refused_after_waiting(tmp_path: Path) -> None:
    """The lock outlives a killed scribe while its server (which inherits it) runs: wait, then say so."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store = tmp_path / "nats"
    store.mkdir()
    server_side = os.open(store / "scribe.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(server_side, fcntl.LOCK_EX)
    os.write(server_side, gone.stdout.encode())
    try:
        with pytest.raises(
            EmbeddedError, match=rf"a nats-server left by a scribe that is gone \(pid {int(gone.stdout)}\)"
        ):
            lock_store(store, wait_s=0.2)
    finally:
        os.close(server_side)
    os.close(lock_store(store, wait_s=0))


def test_the_nats_folders_of_killed_one_shot_runs_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    running, running_lock = temporary_store()
    killed, killed_lock = temporary_store()
    os.close(killed_lock)  # as when its process died
    unknown = tmp_path / "scribe-nats-unknown"  # no lock file: not known to be ours, or not locked yet
    unknown.mkdir()
    try:
        remove_orphan_stores()
        assert running.is_dir() and unknown.is_dir()
        assert not killed.exists()
    finally:
        os.close(running_lock)


def test_the_wheel_carries_the_nats_server_configuration(tmp_path: Path) -> None:
    """An installed wheel finds the configuration the embedded launcher needs (a copy, not the checkout's link)."""
    import shutil
    import zipfile

    from tests.paths import REPO

    source = tmp_path / "source"  # the tracked files, as a clean checkout has them; the build writes here
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name, follow_symlinks=False)
    assert (source / "scribe" / "nats-server.conf").is_symlink()
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("cantonesescribe-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        conf = archive.read("scribe/nats-server.conf")
        names = set(archive.namelist())
    assert conf == (REPO / "nats" / "nats-server.conf").read_bytes()
    assert b"max_payload: 8MB" in conf
    assert "core/topology.py" in names and not any(name.startswith("nats/") for name in names)

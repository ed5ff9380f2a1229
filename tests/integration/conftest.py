"""Fixtures shared by the integration tests of live sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.process import Runtime
from core.settings import Settings
from scribe.runtime import SERVICES, runtime
from tests.integration.test_gateway_stream import gateway


@dataclass
class Stack:
    """A gateway (``host``) and every service on one NATS and PostgreSQL, shared by a module's tests."""

    host: str
    settings: Settings
    rt: Runtime


@pytest.fixture(scope="module")
async def stack(data_dir: Path, database_url: str, module_nats: str) -> AsyncIterator[Stack]:
    cfg = Settings(data_dir=data_dir, allow_private_urls=True, log_level="INFO").with_(
        nats_url=module_nats, database_url=database_url, live_claim_s=10.0
    )
    async with runtime(cfg) as services, gateway(cfg) as host:
        await services.start(SERVICES)
        yield Stack(host, cfg, services)

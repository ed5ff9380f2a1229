"""The rate-limit store on NATS JetStream KV (``gateway.kvstore.NatsStore``), and Litestar's own
``RateLimitMiddleware`` on it across two apps.

Real nats-server (one per test, from the wheel); each test has its own bucket, so tests pointed at
one server by ``SCRIBE_TEST_NATS_URL`` do not see each other's values. Expiry is the server's: a test
waits (with a deadline) for the server to drop a value, it does not check a clock itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
import pytest
from litestar import Litestar, get
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext

from core import bus
from gateway.kvstore import NatsStore, stream_config
from scribe.embedded import EmbeddedNats

pytestmark = pytest.mark.integration

LIMITER_KEY = "RateLimitMiddleware::testclient"  # what the middleware stores for AsyncTestClient's requests


def kv_key(key: str) -> str:
    """The bucket's key for a store key without a namespace, as the module documents it (for ``nats kv get``)."""
    return "k" + base64.urlsafe_b64encode(key.encode()).rstrip(b"=").decode()


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[JetStreamContext]:
    """A connection of its own, as another gateway process would have."""
    nc = await nats.connect(url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    async with connected(nats_url) as js:
        yield js


@pytest.fixture
async def bucket(js: JetStreamContext) -> AsyncIterator[str]:
    name = f"test-limits-{uuid.uuid4().hex[:12]}"
    yield name
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_stream(f"KV_{name}")


@pytest.fixture
def store(js: JetStreamContext, bucket: str) -> NatsStore:
    return NatsStore(js, bucket)


async def test_a_value_comes_back_as_bytes(store: NatsStore) -> None:
    assert await store.get("missing") is None
    await store.set("text", "粵語", expires_in=60)
    await store.set("bytes", b"\x00\xff", expires_in=timedelta(minutes=1))
    await store.set("empty", b"")
    assert await store.get("text") == "粵語".encode()
    assert await store.get("bytes") == b"\x00\xff"
    assert await store.get("empty") == b""
    await store.set("text", "again")
    assert await store.get("text") == b"again"


async def test_the_server_drops_a_value_when_its_ttl_runs_out_unless_renewed(
    store: NatsStore, js: JetStreamContext, bucket: str
) -> None:
    await store.set("short", "v", expires_in=1)
    await store.set("renewed", "v", expires_in=1)
    assert await store.get("renewed", renew_for=60) == b"v"
    assert await store.get("short") == b"v"

    async def gone() -> None:
        while await store.get("short") is not None:  # noqa: ASYNC110 (expiry without markers sends no event)
            await asyncio.sleep(0.05)

    await asyncio.wait_for(gone(), timeout=3.0)
    # Gone from the stream itself, not hidden by the client: only the renewed value is left.
    assert (await js.stream_info(f"KV_{bucket}")).state.messages == 1
    assert await store.get("renewed") == b"v"


async def test_two_connections_share_values_as_two_gateway_processes_would(nats_url: str, bucket: str) -> None:
    async with connected(nats_url) as js_a, connected(nats_url) as js_b:
        a, b = NatsStore(js_a, bucket), NatsStore(js_b, bucket)
        # Both create the bucket at once, as processes starting together do.
        assert await asyncio.gather(a.exists(LIMITER_KEY), b.exists(LIMITER_KEY)) == [False, False]
        await a.set(LIMITER_KEY, b'{"history":[1]}', expires_in=60)
        assert await b.get(LIMITER_KEY) == b'{"history":[1]}'
        await b.set(LIMITER_KEY, b'{"history":[2,1]}', expires_in=60)
        assert await a.get(LIMITER_KEY) == b'{"history":[2,1]}'
        await b.delete(LIMITER_KEY)
        assert await a.get(LIMITER_KEY) is None


async def test_any_string_is_a_key_and_keys_never_collide(store: NatsStore, js: JetStreamContext, bucket: str) -> None:
    keys = [
        "RateLimitMiddleware::127.0.0.1",
        "RateLimitMiddleware::key:abc::static",
        "RateLimitMiddleware::2001:db8::1::mount",
        "粵語 用戶::ngo5",
        "",
        " ",
        "a.b",
        "a_b",
        "*",
        ">",
        "x" * 5000,  # hashed
        "x" * 4999 + "y",
    ]
    for number, key in enumerate(keys):
        await store.set(key, str(number), expires_in=60)
    assert [await store.get(key) for key in keys] == [str(number).encode() for number in range(len(keys))]
    # Each is one valid key in an ordinary KV bucket, as nats-py (and the nats CLI) read it.
    assert len(await (await js.key_value(bucket)).keys()) == len(keys)


async def test_delete_exists_and_expires_in(store: NatsStore, js: JetStreamContext, bucket: str) -> None:
    await store.set("ttl", "v", expires_in=60)
    await store.set("rounded", "v", expires_in=timedelta(seconds=1.2))
    await store.set("forever", "v")
    assert await store.exists("ttl") and await store.exists("forever")
    assert not await store.exists("missing")
    assert await store.expires_in("ttl") in (59, 60)
    assert await store.expires_in("forever") is None
    assert await store.expires_in("missing") is None
    assert await store.expires_in("rounded") in (1, 2)
    # The server keeps whole seconds: 1.2 s is written as 2.
    stream = f"KV_{bucket}"
    subjects = (await js.stream_info(stream, subjects_filter=">")).state.subjects or {}
    written = [(await js.get_msg(stream, subject=subject, direct=True)).headers or {} for subject in subjects]
    assert sorted(headers.get("Nats-TTL", "none") for headers in written) == ["2", "60", "none"]

    await store.delete("ttl")
    await store.delete("missing")
    assert await store.get("ttl") is None
    assert not await store.exists("ttl")
    assert await store.expires_in("ttl") is None
    # No delete marker is left behind.
    assert (await js.stream_info(f"KV_{bucket}")).state.messages == 2


async def test_renew_for_sets_a_new_ttl_only_on_values_that_have_one(store: NatsStore) -> None:
    await store.set("k", "v", expires_in=5)
    assert await store.get("k", renew_for=timedelta(minutes=2)) == b"v"
    assert await store.expires_in("k") in (119, 120)
    await store.set("forever", "v")
    assert await store.get("forever", renew_for=60) == b"v"
    assert await store.expires_in("forever") is None


async def test_namespaces_are_isolated_and_delete_all_reaches_children(
    store: NatsStore, js: JetStreamContext, bucket: str
) -> None:
    a = store.with_namespace("a")
    stores = {"root": store, "a": a, "a_b": a.with_namespace("b"), "c": store.with_namespace("c")}
    for name, each in stores.items():
        await each.set(LIMITER_KEY, name, expires_in=60)
    assert {name: await each.get(LIMITER_KEY) for name, each in stores.items()} == {
        name: name.encode() for name in stores
    }
    assert await NatsStore(js, bucket, namespace="a").get(LIMITER_KEY) == b"a"
    assert stores["a_b"].namespace == "a_b"

    await a.delete_all()
    assert {name: await each.get(LIMITER_KEY) for name, each in stores.items()} == {
        "root": b"root",
        "a": None,
        "a_b": None,
        "c": b"c",
    }
    await store.delete_all()
    assert [await each.get(LIMITER_KEY) for each in stores.values()] == [None] * 4


async def test_delete_purge_and_expiry_markers_read_as_missing(
    store: NatsStore, js: JetStreamContext, bucket: str
) -> None:
    await store.set(LIMITER_KEY, "v", expires_in=60)
    kv = await js.key_value(bucket)
    assert (await kv.get(kv_key(LIMITER_KEY))).value == b"v"
    await kv.delete(kv_key(LIMITER_KEY))  # as `nats kv del` does: a marker stays in the key's place
    assert await store.get(LIMITER_KEY) is None and not await store.exists(LIMITER_KEY)
    await store.set(LIMITER_KEY, "v", expires_in=60)
    await kv.purge(kv_key(LIMITER_KEY))
    assert await store.get(LIMITER_KEY) is None and await store.expires_in(LIMITER_KEY) is None

    # A bucket someone changed to leave a marker where a value expired.
    config = stream_config(bucket)
    config.subject_delete_marker_ttl = 60.0
    await js.update_stream(config)
    await store.set("expiring", "v", expires_in=1)

    async def marked() -> None:
        subject = f"$KV.{bucket}.{kv_key('expiring')}"
        while not await is_marker(subject):  # noqa: ASYNC110 (polling state the server keeps)
            await asyncio.sleep(0.05)

    async def is_marker(subject: str) -> bool:
        msg = await js.get_msg(f"KV_{bucket}", subject=subject, direct=True)
        return "Nats-Marker-Reason" in (msg.headers or {})

    await asyncio.wait_for(marked(), timeout=3.0)
    assert await store.get("expiring") is None and not await store.exists("expiring")


async def test_a_removed_bucket_is_made_again_on_the_next_call(
    store: NatsStore, js: JetStreamContext, bucket: str
) -> None:
    await store.set("k", "v", expires_in=60)
    await js.delete_stream(f"KV_{bucket}")
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await store.set("k", "v", expires_in=60)
    await store.set("k", "again", expires_in=60)
    assert await store.get("k") == b"again"


async def test_calls_fail_within_the_timeout_when_nats_is_out_of_reach(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "jetstream")
    nc = await bus.connect(server.start(), "test")  # reconnects forever, as the gateway's does
    try:
        store = NatsStore(nc.jetstream(), timeout=0.5)
        await store.set(LIMITER_KEY, "v", expires_in=60)
        server.stop()
        for call in (store.get, store.exists):
            started = time.monotonic()
            with pytest.raises((TimeoutError, nats.errors.ConnectionClosedError)):
                await call(LIMITER_KEY)
            assert time.monotonic() - started < 1.0
        started = time.monotonic()
        with pytest.raises((TimeoutError, nats.errors.ConnectionClosedError)):
            await store.set(LIMITER_KEY, "v", expires_in=60)
        assert time.monotonic() - started < 1.0
    finally:
        server.stop()
        with contextlib.suppress(ConnectionError):  # nats-py flushes to the dead socket on close
            await nc.close()


def limited_app(nats_url: str, bucket: str) -> Litestar:
    """A gateway process in small: three requests a minute per client, counted in the bucket.

    The connection opens in the lifespan, on the loop that serves the requests (AsyncTestClient
    runs the app on its own loop in a thread, and a NATS connection belongs to its loop), so the
    store is registered there rather than passed as ``stores=``.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        nc = await nats.connect(nats_url)
        app.stores.register("rate_limit", NatsStore(nc.jetstream(), bucket))
        try:
            yield
        finally:
            await nc.close()

    @get("/ping", sync_to_thread=False)
    def ping() -> str:
        return "pong"

    limit = RateLimitConfig(rate_limit=("minute", 3))
    return Litestar([ping], lifespan=[lifespan], middleware=[limit.middleware])


async def test_litestar_rate_limit_counts_across_two_apps(nats_url: str, store: NatsStore, bucket: str) -> None:
    async with (
        AsyncTestClient(app=limited_app(nats_url, bucket)) as a,
        AsyncTestClient(app=limited_app(nats_url, bucket)) as b,
    ):
        answers = [await client.get("/ping") for client in (a, b, a, b)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert [answer.headers["RateLimit-Remaining"] for answer in answers] == ["2", "1", "0", "0"]
    refused = answers[-1]
    assert refused.headers["RateLimit-Limit"] == "3"
    assert refused.headers["RateLimit-Policy"] == "3; w=60"
    assert 0 < int(refused.headers["RateLimit-Reset"]) <= 60
    # The history the two apps shared, under the middleware's own key, expiring with its window.
    held = await store.get(LIMITER_KEY)
    assert held is not None and len(json.loads(held)["history"]) == 3
    assert await store.expires_in(LIMITER_KEY) in (59, 60)

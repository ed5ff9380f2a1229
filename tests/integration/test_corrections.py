"""Correcting a line: ``PATCH /v1/jobs/{id}/lines/{seq}`` against a real gateway, NATS JetStream and
PostgreSQL, with real websocket, SSE and NATS clients following the job."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
import websockets
from litestar.testing import AsyncTestClient
from nats.aio.msg import Msg
from nats.js import api as js_api

from core import bus, subjects
from core.messages import (
    JobEvent,
    JobOptions,
    Partial,
    RawSegment,
    RawWord,
    Revised,
    Segment,
    job_event_decoder,
)
from core.process import Runtime
from gateway.access import TOKEN_SECRET, job_token
from gateway.app import create_app
from romanizer.romanize import Romanizer
from romanizer.service import romanize_chunk
from store import repo
from tests.integration.test_gateway_stream import _final, _publish, gateway

pytestmark = pytest.mark.integration

HEARD = "以下白其他市航"  # what the speech model wrote
MEANT = "以下係其他事項"  # what was said: "the following are other matters"
BASE_URL = "http://127.0.0.1"


@pytest.fixture(scope="module")
def romanizer() -> Romanizer:
    return Romanizer()


async def _running_job(rt: Runtime, romanizer: Romanizer, *, title: str | None = "council meeting") -> tuple[str, str]:
    """A running job whose first chunk's two lines are stored and announced, as the romanizer leaves
    them; its id and token. Line 0 is ``HEARD``, its characters timed."""
    job_id = uuid.uuid4().hex
    await repo.create_job(rt.pool, job_id, "https://example.com/v.mp4", user_id=None, options=JobOptions(), title=title)
    words = [RawWord(text=c, start=1.0 + i * 0.25, end=1.25 + i * 0.25, probability=0.5) for i, c in enumerate(HEARD)]
    raw = [RawSegment(start=1.0, end=3.0, text=HEARD, words=words), RawSegment(start=4.0, end=5.0, text="你好。")]
    lines = romanize_chunk(romanizer, raw, chunk_seq=0, first_seq=0, previous=[])
    assert [line.text for line in lines] == [HEARD, "你好。"]
    await repo.mark_running(rt.pool, job_id)
    await repo.insert_segments(rt.pool, job_id, lines)
    await repo.advance(rt.pool, job_id, next_chunk=1, next_segment=2)
    await bus.publish_event(rt.js, Partial(job_id=job_id, chunk_seq=0, segments=lines, chunks_done=1))
    await repo.mark_published(rt.pool, job_id, 1)
    return job_id, job_token(await repo.secret(rt.pool, TOKEN_SECRET), job_id)


@contextlib.asynccontextmanager
async def _bus_events(rt: Runtime, job_id: str) -> AsyncIterator[asyncio.Queue[JobEvent]]:
    """The job's events as an integrator's NATS subscription receives them, from the first."""
    queue: asyncio.Queue[JobEvent] = asyncio.Queue()

    async def received(msg: Msg) -> None:
        await queue.put(job_event_decoder.decode(msg.data))

    sub = await rt.js.subscribe(
        subjects.events(job_id), cb=received, ordered_consumer=True, deliver_policy=js_api.DeliverPolicy.ALL
    )
    try:
        yield queue
    finally:
        await sub.unsubscribe()


async def _next_of(queue: asyncio.Queue[JobEvent], kind: type) -> Any:
    while not isinstance(event := await asyncio.wait_for(queue.get(), 10), kind):
        pass
    return event


async def _sse_until_revised(http: httpx.AsyncClient, job_id: str, opened: asyncio.Event) -> list[dict[str, Any]]:
    """An SSE viewer's messages up to its first ``revised``."""
    got: list[dict[str, Any]] = []
    async with http.stream("GET", f"/v1/jobs/{job_id}/events") as answer:
        async for text in answer.aiter_lines():
            if text.startswith("data: "):
                got.append(json.loads(text[6:]))
                opened.set()
                if got[-1]["type"] == "revised":
                    return got
    return got


async def _recv(ws: Any) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), 10)))


async def test_a_correction_is_stored_beside_the_original_streamed_announced_and_downloaded(
    settings, nats_url, database_url, rt, romanizer
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    job_id, token = await _running_job(rt, romanizer)
    heard = await repo.segment(rt.pool, job_id, 0)
    assert heard is not None
    auth = {"Authorization": f"Bearer {token}"}
    async with (
        _bus_events(rt, job_id) as on_the_bus,
        gateway(cfg) as host,
        httpx.AsyncClient(base_url=f"http://{host}", headers=auth, timeout=10) as http,
    ):
        stream = f"ws://{host}/v1/jobs/{job_id}/stream?token={token}"
        async with websockets.connect(stream) as first, websockets.connect(stream) as second:
            for viewer in (first, second):
                snapshot = await _recv(viewer)
                assert [line["text"] for line in snapshot["segments"]] == [HEARD, "你好。"]
            sse_open = asyncio.Event()
            sse = asyncio.create_task(_sse_until_revised(http, job_id, sse_open))
            await asyncio.wait_for(sse_open.wait(), 10)

            answer = await http.patch(f"/v1/jobs/{job_id}/lines/0", json={"text": MEANT, "revision": 0})
            assert answer.status_code == 200, answer.text
            line = answer.json()
            assert (line["text"], line["original_text"], line["revision"]) == (MEANT, HEARD, 1)
            assert "hai6" in line["jyutping"].split() and len(line["chars"]) == len(MEANT)
            assert (line["seq"], line["start"], line["end"]) == (0, heard.start, heard.end)
            times = {c["char"]: (c["start"], c["end"], c["confidence"]) for c in line["chars"]}
            old = {c.char: (c.start, c.end, c.confidence) for c in heard.chars}
            assert all(times[c] == old[c] and old[c][0] is not None for c in "以下其他")  # kept
            assert all(times[c] == (None, None, None) for c in "係事項")  # a person, not the model, typed these

            # Both websocket viewers and the SSE viewer get the line as a `revised` message.
            for viewer in (first, second):
                revised = await _recv(viewer)
                assert revised["type"] == "revised" and revised["segment"] == line and revised["seq"] == 2
            sse_got = await asyncio.wait_for(sse, 10)
            assert [m["type"] for m in sse_got] == ["snapshot", "revised"] and sse_got[-1]["segment"] == line

            # An integrator on NATS gets the Revised event.
            event = await _next_of(on_the_bus, Revised)
            assert event.job_id == job_id and event.segment == msgspec.convert(line, Segment)

            # A stale revision is refused and changes nothing; the same text again changes nothing.
            stale = await http.patch(f"/v1/jobs/{job_id}/lines/0", json={"text": "以下係其他事情", "revision": 0})
            assert stale.status_code == 409 and stale.json()["error"]["code"] == "line_changed", stale.text
            assert "another window" in stale.json()["error"]["message"]
            again = await http.patch(f"/v1/jobs/{job_id}/lines/0", json={"text": MEANT, "revision": 0})
            assert again.status_code == 200 and again.json() == line

        # The store keeps both; a reconnecting viewer's snapshot has the corrected line, and one that
        # resumes after it gets the correction as a `revised` message.
        stored = await repo.segment(rt.pool, job_id, 0)
        assert stored is not None and (stored.text, stored.original_text, stored.revision) == (MEANT, HEARD, 1)
        async with websockets.connect(stream) as late:
            assert [s["text"] for s in (await _recv(late))["segments"]] == [MEANT, "你好。"]
        async with websockets.connect(f"{stream}&after=1") as resumed:
            assert (await _recv(resumed))["segments"] == []
            assert (await _recv(resumed))["segment"] == line

        # Downloads carry the corrected text, in the reading asked for.
        srt = await http.get(f"/v1/jobs/{job_id}/transcript", params={"format": "srt", "romanization": "jyutping"})
        assert srt.status_code == 200 and MEANT in srt.text and HEARD not in srt.text
        assert "ji5 haa6 hai6" in srt.text
        txt = await http.get(f"/v1/jobs/{job_id}/transcript", params={"format": "txt", "romanization": "yale_numeric"})
        assert MEANT in txt.text and "yi5 ha6 hai6" in txt.text and HEARD not in txt.text
        document = (await http.get(f"/v1/jobs/{job_id}/transcript")).json()
        assert document["segments"][0]["original_text"] == HEARD and "original_text" not in document["segments"][1]


async def test_a_finished_jobs_viewer_that_follows_revisions_gets_later_corrections(
    settings, nats_url, database_url, rt, romanizer
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url, stream_heartbeat_s=0.5)
    job_id, token = await _running_job(rt, romanizer)
    await _publish(rt, _final(job_id, 2))
    async with gateway(cfg) as host:
        stream = f"ws://{host}/v1/jobs/{job_id}/stream?token={token}"
        async with websockets.connect(stream) as plain, websockets.connect(f"{stream}&follow=revisions") as follower:
            for viewer in (plain, follower):
                assert (await _recv(viewer))["type"] == "snapshot" and (await _recv(viewer))["type"] == "final"
            await asyncio.wait_for(plain.wait_closed(), 10)  # the end, as before
            assert plain.close_code == 1000
            assert (await _recv(follower))["type"] == "heartbeat"  # still open after the end

            async with httpx.AsyncClient(base_url=f"http://{host}", timeout=10) as http:
                answer = await http.patch(
                    f"/v1/jobs/{job_id}/lines/1",
                    json={"text": "你好嗎？"},
                    headers={"Authorization": f"Bearer {token}"},
                )
            assert answer.status_code == 200, answer.text
            while (message := await _recv(follower))["type"] == "heartbeat":
                pass
            assert message["type"] == "revised" and message["segment"] == answer.json()


async def test_refusals_say_what_happened_and_what_to_do(settings, nats_url, database_url, rt, romanizer) -> None:
    app = create_app(settings.with_(nats_url=nats_url, database_url=database_url))
    job_id, token = await _running_job(rt, romanizer)
    # A line stored but not yet announced (its chunk's Partial is not on the bus) cannot be corrected yet.
    late = Segment(seq=2, chunk_seq=1, start=6.0, end=7.0, text="好", jyutping="hou2", yale="hóu", words=[])
    await repo.insert_segments(rt.pool, job_id, [late])
    line = f"/v1/jobs/{job_id}/lines/0"
    async with AsyncTestClient(app=app, base_url=BASE_URL) as client:
        auth = {"Authorization": f"Bearer {token}"}
        bodies = {
            "empty": {"text": ""},
            "only spaces": {"text": "   "},
            "only controls": {"text": "\x00\x01"},
            "two lines": {"text": "以下係\n其他事項"},
            "too long": {"text": "長" * 201},
            "no text": {"revision": 0},
            "negative revision": {"text": MEANT, "revision": -1},
            "unknown field": {"text": MEANT, "speaker": 1},
        }
        for name, body in bodies.items():
            refused = await client.patch(line, json=body, headers=auth)
            assert refused.status_code == 400, (name, refused.text)
        too_long = await client.patch(line, json=bodies["too long"], headers=auth)
        assert "at most 200" in too_long.json()["error"]["message"]
        assert (await client.patch(line, json={"text": "長" * 200}, headers=auth)).status_code == 200  # the limit

        missing = await client.patch(line, json={"text": MEANT})
        wrong = await client.patch(line, json={"text": MEANT}, params={"token": token[:-1]})
        for answer, opening in ((missing, "This link has no key"), (wrong, "This link's key is wrong or incomplete")):
            assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"
            message = answer.json()["error"]["message"]
            assert message.startswith(f"{opening}: open the link you were given") and "Bearer" in message
        assert (
            (await client.get(f"/v1/jobs/{job_id}", params={"token": "x"}))
            .json()["error"]["message"]
            .startswith("This link's key is wrong")
        )

        for seq in (2, 99):
            gone = await client.patch(f"/v1/jobs/{job_id}/lines/{seq}", json={"text": MEANT}, headers=auth)
            assert gone.status_code == 404 and gone.json()["error"]["code"] == "no_such_line", gone.text
        unknown = uuid.uuid4().hex
        unknown_token = job_token(await repo.secret(rt.pool, TOKEN_SECRET), unknown)
        nobody = await client.patch(
            f"/v1/jobs/{unknown}/lines/0", json={"text": MEANT}, params={"token": unknown_token}
        )
        assert nobody.status_code == 404 and nobody.json()["error"]["message"].startswith("There is no transcript")

        running = await client.delete(f"/v1/jobs/{job_id}", params={"purge": "true"}, headers=auth)
        assert running.status_code == 409 and running.json()["error"]["message"].startswith("This transcript is still")
        assert (await client.delete(f"/v1/jobs/{job_id}", headers=auth)).status_code == 200  # cancelled
        ended = await client.delete(f"/v1/jobs/{job_id}", headers=auth)
        assert ended.status_code == 409 and "nothing to stop" in ended.json()["error"]["message"]
        assert (await client.delete(f"/v1/jobs/{job_id}", params={"purge": "true"}, headers=auth)).status_code == 200
        purged = await client.patch(line, json={"text": MEANT}, headers=auth)
        assert purged.status_code == 410 and purged.json()["error"]["code"] == "purged"

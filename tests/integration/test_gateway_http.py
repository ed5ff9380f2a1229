"""HTTP as clients assume it, and streams that end: what curl, browsers and HTTP libraries expect of
the gateway's headers and status codes, and of its event stream after a job's end.

A real gateway on a port (the gateway's own protocols) and httpx, on real NATS and PostgreSQL.
"""

from __future__ import annotations

import gzip
import json
import uuid
from typing import Any

import brotli
import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from core import bus, uploads
from core.messages import Final, JobOptions, Partial, Segment, Usage
from core.process import Runtime
from core.topology import AUDIO_BUCKET
from gateway.access import TOKEN_SECRET, job_token
from gateway.stream import PAGE_LINES
from store import repo
from tests.integration.test_gateway_hostile import _finished_job, serving

pytestmark = pytest.mark.integration

AUDIO_BYTES = bytes(range(256)) * 40  # 10,240 bytes; the range tests never decode it


def _error(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return dict(body["error"])


async def test_headers_and_status_codes_are_what_http_clients_expect(settings, nats_url, database_url, rt) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    job_id, token = await _finished_job(rt, lines=2)
    await uploads.put(rt.js, AUDIO_BYTES, bucket=AUDIO_BUCKET, name=job_id)
    auth = {"Authorization": f"Bearer {token}"}
    async with serving(cfg) as (host, _), httpx.AsyncClient(base_url=f"http://{host}") as client:
        submitted = await client.post("/v1/jobs", json={"url": "http://127.0.0.1:9/a.mp3"})
        heads = {path: await client.head(path, headers=auth) for path in (f"/v1/jobs/{job_id}", "/healthz", "/v1/jobs")}
        get_status = await client.get(f"/v1/jobs/{job_id}", headers=auth)
        wrong_method = await client.put(f"/v1/jobs/{job_id}", headers=auth)
        no_token = await client.get(f"/v1/jobs/{job_id}")
        srt = await client.get(f"/v1/jobs/{job_id}/transcript", params={"format": "srt"}, headers=auth)
        txt = await client.get(f"/v1/jobs/{job_id}/transcript", params={"format": "txt"}, headers=auth)
        etag = srt.headers["etag"]
        unchanged = await client.get(
            f"/v1/jobs/{job_id}/transcript", params={"format": "srt"}, headers={**auth, "If-None-Match": etag}
        )
        bad_format = await client.get(f"/v1/jobs/{job_id}/transcript", params={"format": "pdf"}, headers=auth)
        audio = await client.get(f"/v1/jobs/{job_id}/audio", headers=auth)
        audio_etag = audio.headers["etag"]
        ranged = await client.get(
            f"/v1/jobs/{job_id}/audio", headers={**auth, "Range": "bytes=10-19", "If-Range": audio_etag}
        )
        stale = await client.get(
            f"/v1/jobs/{job_id}/audio", headers={**auth, "Range": "bytes=10-19", "If-Range": '"other"'}
        )
        past = await client.get(f"/v1/jobs/{job_id}/audio", headers={**auth, "Range": "bytes=99999-"})
        audio_head = await client.head(f"/v1/jobs/{job_id}/audio", headers=auth)
    assert submitted.status_code == 202
    assert submitted.headers["location"] == f"/v1/jobs/{submitted.json()['job_id']}"
    for path, head in heads.items():
        assert head.status_code == 200 and head.content == b"", path
    assert heads[f"/v1/jobs/{job_id}"].headers["content-length"] == get_status.headers["content-length"]
    assert wrong_method.status_code == 405 and set(wrong_method.headers["allow"].split(", ")) >= {
        "GET",
        "HEAD",
        "DELETE",
    }
    assert _error(wrong_method)["code"] == "method_not_allowed"
    assert no_token.status_code == 401 and no_token.headers["www-authenticate"].startswith("Bearer")
    assert srt.headers["content-disposition"] == (  # no title: the job's id names the file, with its reading
        f'attachment; filename="{job_id} (jyutping and yale).srt"; '
        f"filename*=UTF-8''{job_id}%20%28jyutping%20and%20yale%29.srt"
    )
    for answer in (srt, txt):
        assert answer.headers["content-type"].count("charset") == 1, answer.headers["content-type"]
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == etag
    assert bad_format.status_code == 400
    message = _error(bad_format)["message"]
    assert "format" in message and "ParamType" not in message and "<" not in message
    assert audio.status_code == 200 and audio.content == AUDIO_BYTES and audio.headers["accept-ranges"] == "bytes"
    assert f'filename="{job_id}.ogg"' in audio.headers["content-disposition"]
    assert ranged.status_code == 206 and ranged.content == AUDIO_BYTES[10:20]
    assert ranged.headers["content-range"] == f"bytes 10-19/{len(AUDIO_BYTES)}"
    assert stale.status_code == 200 and stale.content == AUDIO_BYTES  # If-Range for other audio: the whole file
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(AUDIO_BYTES)}"
    assert _error(past)["code"] == "range_not_satisfiable"
    assert audio_head.status_code == 200 and audio_head.content == b""
    assert audio_head.headers["content-length"] == str(len(AUDIO_BYTES))


async def test_json_and_text_are_compressed_and_audio_and_streams_are_not(settings, nats_url, database_url, rt) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    job_id, token = await _finished_job(rt, lines=60)
    await uploads.put(rt.js, AUDIO_BYTES, bucket=AUDIO_BUCKET, name=job_id)
    params = {"token": token}
    async with serving(cfg) as (host, _), httpx.AsyncClient(base_url=f"http://{host}") as client:
        plain = await client.get(
            f"/v1/jobs/{job_id}/transcript", params=params, headers={"Accept-Encoding": "identity"}
        )
        raw: dict[str, tuple[str, bytes]] = {}
        for encoding in ("br", "gzip"):
            request = client.build_request(
                "GET", f"/v1/jobs/{job_id}/transcript", params=params, headers={"Accept-Encoding": encoding}
            )
            response = await client.send(request, stream=True)
            raw[encoding] = (
                response.headers.get("content-encoding", ""),
                b"".join([b async for b in response.aiter_raw()]),
            )
            await response.aclose()
        audio = await client.get(f"/v1/jobs/{job_id}/audio", params=params, headers={"Accept-Encoding": "br, gzip"})
        events = await client.get(f"/v1/jobs/{job_id}/events", params=params, headers={"Accept-Encoding": "br, gzip"})
    assert "content-encoding" not in plain.headers
    assert raw["br"][0] == "br" and raw["gzip"][0] == "gzip"
    for name, decompress in (("br", brotli.decompress), ("gzip", gzip.decompress)):
        body = raw[name][1]
        assert len(body) < len(plain.content) / 3 and json.loads(decompress(body)) == plain.json(), name
    assert "content-encoding" not in audio.headers and "content-encoding" not in events.headers


def _line(seq: int) -> Segment:
    return Segment(seq=seq, start=float(seq), end=seq + 0.9, text=f"第{seq}句", jyutping="dai6", yale="daih", words=[])


def _sse(text: str) -> list[dict[str, Any]]:
    """Each SSE message as its fields (event, id, retry, data as JSON)."""
    messages = []
    for block in text.replace("\r\n", "\n").strip().split("\n\n"):
        fields: dict[str, Any] = {}
        for row in block.splitlines():
            name, _, value = row.partition(": ")
            fields[name] = json.loads(value) if name == "data" else value
        messages.append(fields)
    return messages


async def _long_job(rt: Runtime, lines: int) -> tuple[str, str]:
    job_id = uuid.uuid4().hex
    await repo.create_job(rt.pool, job_id, "https://example.com/a.mp3", user_id=None, options=JobOptions())
    for start in range(0, lines, 50):
        chunk = [_line(n) for n in range(start, min(lines, start + 50))]
        await bus.publish_event(
            rt.js, Partial(job_id=job_id, chunk_seq=start // 50, segments=chunk, chunks_done=start // 50 + 1)
        )
    await repo.set_input_ended(rt.pool, job_id, total_chunks=lines // 50 + 1, duration=float(lines))
    await repo.advance(rt.pool, job_id, next_chunk=lines // 50 + 1, next_segment=lines)
    await repo.finish_job(rt.pool, job_id)
    final = Final(job_id=job_id, duration=float(lines), segment_count=lines, usage=Usage("local", "w", 1.0, 0.0))
    await bus.publish_event(rt.js, final)
    return job_id, job_token(await repo.secret(rt.pool, TOKEN_SECRET), job_id)


async def test_an_event_stream_ends_for_good_and_a_long_backlog_comes_in_pages(settings, nats_url, database_url, rt):
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    count = PAGE_LINES * 2 + 30
    job_id, token = await _long_job(rt, count)
    path = f"/v1/jobs/{job_id}/events"
    async with serving(cfg) as (host, _), httpx.AsyncClient(base_url=f"http://{host}", timeout=30) as client:
        first = await client.get(path, params={"token": token})
        reconnect = await client.get(path, params={"token": token}, headers={"Last-Event-ID": str(count - 1)})
        behind = await client.get(path, params={"token": token}, headers={"Last-Event-ID": str(count - 5)})
        async with websockets.connect(f"ws://{host}/v1/jobs/{job_id}/stream?token={token}") as ws:
            over_ws = []
            with pytest.raises(ConnectionClosed):
                while True:
                    over_ws.append(json.loads(await ws.recv()))
    messages = _sse(first.text)
    assert messages[0]["event"] == "snapshot" and messages[0]["retry"].isdigit()
    assert messages[0]["data"]["more_lines"] is True and len(messages[0]["data"]["segments"]) == PAGE_LINES
    assert messages[0]["id"] == str(PAGE_LINES - 1)  # the last line it carries, not -1
    pages = [m for m in messages if m["event"] in ("snapshot", "segments")]
    assert [m["data"]["more_lines"] for m in pages] == [True, True, False]
    lines = [line["seq"] for m in pages for line in m["data"]["segments"]]
    assert lines == list(range(count)) and messages[-1]["event"] == "final" and messages[-1]["id"] == str(count - 1)
    assert reconnect.status_code == 204 and reconnect.content == b""  # an EventSource stops here
    assert [line["seq"] for line in _sse(behind.text)[0]["data"]["segments"]] == list(range(count - 4, count))
    ws_lines = [line["seq"] for m in over_ws if m["type"] in ("snapshot", "segments") for line in m["segments"]]
    assert ws_lines == list(range(count)) and over_ws[-1]["type"] == "final"
    assert all(len(m.get("segments", [])) <= PAGE_LINES for m in over_ws)


async def test_audio_that_is_gone_says_so_and_audio_not_yet_stored_says_wait(settings, nats_url, database_url, rt):
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    ended, ended_token = await _finished_job(rt)  # done, but its audio is no longer in the bucket
    running = uuid.uuid4().hex
    await repo.create_job(rt.pool, running, "https://example.com/a.mp3", user_id=None, options=JobOptions())
    running_token = job_token(await repo.secret(rt.pool, TOKEN_SECRET), running)
    async with serving(cfg) as (host, _), httpx.AsyncClient(base_url=f"http://{host}") as client:
        gone = await client.get(f"/v1/jobs/{ended}/audio", params={"token": ended_token})
        later = await client.get(f"/v1/jobs/{running}/audio", params={"token": running_token})
    assert gone.status_code == 410 and _error(gone)["code"] == "audio_gone"
    assert "kept for 7 days" in _error(gone)["message"] and "transcript is still available" in _error(gone)["message"]
    assert later.status_code == 404 and _error(later)["code"] == "audio_not_ready"

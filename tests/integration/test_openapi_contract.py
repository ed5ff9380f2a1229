"""The API's documents tell the truth: OpenAPI's facts, the AsyncAPI document of the live stream, and
schemathesis (a client nobody here wrote) run against the live OpenAPI document with a real job and
its token, every check on, so a handler that drifts from its schema fails CI."""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from core import uploads
from core.topology import AUDIO_BUCKET
from scribe.runtime import runtime, services
from tests.integration.test_gateway_hostile import _finished_job, serving

pytestmark = pytest.mark.integration

SCHEMATHESIS_CONFIG = """
[parameters]
"path.job_id" = "{job_id}"
"query.purge" = false  # purging the job would make every later case a 410
# A line of the job. Without it, schemathesis 4.32 counted a PATCH whose job_id it had replaced by the one above
# as a schema-violating request (job_id "larger than maxLength") that was accepted.
"path.seq" = 0

[[operations]]
include-path = "/v1/jobs"
include-method = "POST"
# A link is accepted only if it resolves to a public address: most schema-valid links get a 400.
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 409]

[[operations]]
include-path = "/v1/jobs/{{job_id}}/audio"
# A range that starts past the end is schema-valid and answers 416, as HTTP says.
checks.positive_data_acceptance.expected-statuses = ["2xx", 416]

[[operations]]
include-path = "/v1/jobs/{{job_id}}/lines/{{seq}}"
# A line number past the job's lines is 404; a text that normalises to nothing (control characters) or
# to more than a line holds, or has a line break, is 400; a revision other than the line's is 409.
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 404, 409]

[[operations]]
include-path = "/v1/audio/transcriptions"
# Only real audio with a model id from /v1/models is accepted; generated files are not media.
checks.positive_data_acceptance.expected-statuses = ["2xx", 400]
"""


def _resolve(document: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


async def test_the_openapi_document_describes_what_the_gateway_does(settings, nats_url, database_url) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    async with serving(cfg) as (host, _), httpx.AsyncClient(base_url=f"http://{host}") as client:
        document = (await client.get("/schema/openapi.json")).json()
        asyncapi = (await client.get("/schema/asyncapi.json")).json()
    assert document["info"]["title"] == "CantoneseScribe" and document["info"]["version"] != "1.0.0"
    schemes = document["components"]["securitySchemes"]
    assert schemes["jobToken"] == {**schemes["jobToken"], "type": "http", "scheme": "bearer"}
    assert (schemes["jobTokenQuery"]["type"], schemes["jobTokenQuery"]["in"]) == ("apiKey", "query")
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "http", "scheme": "bearer"}
    parameters: set[str] = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            parameters |= {p["name"] for p in operation.get("parameters", [])}
            if path.startswith("/v1/jobs/{job_id}"):
                schemes = [{"apiKey": []}, {"jobToken": []}, {"jobTokenQuery": []}]
                assert operation["security"] == schemes, (method, path)
            elif path.startswith("/v1/"):  # with accounts a key; without, nothing
                assert operation["security"] == [{"apiKey": []}, {}], (method, path)
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
    assert {"Idempotency-Key", "Range", "If-Range", "If-None-Match", "Last-Event-ID", "after", "cursor"} <= parameters
    transcript = document["paths"]["/v1/jobs/{job_id}/transcript"]["get"]
    enums = {p["name"]: p["schema"].get("enum") for p in transcript["parameters"]}
    assert enums["format"] == ["json", "srt", "vtt", "txt", "csv"] and enums["romanization"] == [
        "jyutping",
        "yale",
        "yale_numeric",
        "both",
        "none",
    ]
    assert {"application/json", "application/x-subrip", "text/vtt"} <= set(transcript["responses"]["200"]["content"])
    audio = document["paths"]["/v1/jobs/{job_id}/audio"]["get"]["responses"]
    assert audio["206"]["content"]["audio/ogg"]["schema"]["format"] == "binary" and "416" in audio
    events = document["paths"]["/v1/jobs/{job_id}/events"]["get"]["responses"]
    assert "text/event-stream" in events["200"]["content"] and "204" in events
    submit = document["paths"]["/v1/jobs"]["post"]
    assert set(submit["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert {"202", "409", "413", "415", "503"} <= set(submit["responses"])
    assert _resolve(document, submit["responses"]["202"]["content"]["application/json"]["schema"])["required"]
    assert "/v1/audio/transcriptions" in document["paths"] and "/v1/models" in document["paths"]

    assert asyncapi["asyncapi"] == "3.0.0"
    messages = asyncapi["components"]["messages"]
    kinds = {message["name"] for name, message in messages.items() if name.startswith("stream_")}
    assert kinds == {
        *("snapshot", "progress", "segments", "revised", "final", "failed", "cancelled"),
        *("heartbeat", "lagged", "error"),
        *("interim", "lagging"),  # a live session's, to every viewer
    }
    assert {"bus_revised", "stream_revised"} <= set(messages)
    correct = document["paths"]["/v1/jobs/{job_id}/lines/{seq}"]["patch"]
    answer = correct["responses"]["200"]["content"]["application/json"]["schema"]
    assert _resolve(document, answer)["title"] == "Segment"
    assert {"400", "401", "404", "409", "410"} <= set(correct["responses"])
    for name, message in messages.items():
        if name in ("live_audio", "live_control"):  # what a live client sends
            continue
        payload = _resolve(asyncapi, message["payload"])
        assert payload["type"] == "object" and payload["properties"]["type"]["enum"] == [message["name"]]
    assert asyncapi["channels"]["stream"]["address"] == "/v1/jobs/{job_id}/stream"
    live = asyncapi["channels"]["live"]
    assert live["address"] == "/v1/live" and {"live_session", "live_audio", "live_control", "stream_interim"} <= set(
        live["messages"]
    )
    control = _resolve(asyncapi, messages["live_control"]["payload"])
    assert control["properties"]["type"]["enum"] == ["close_stream", "keep_alive"]
    assert live["bindings"]["ws"]["query"]["properties"]["encoding"]["enum"] == ["linear16", "webm", "ogg"]


async def test_schemathesis_finds_nothing_against_the_live_document(
    settings, nats_url, database_url, rt, tmp_path: Path
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    job_id, token = await _finished_job(rt, lines=2)
    await uploads.put(rt.js, b"OggS" + bytes(3000), bucket=AUDIO_BUCKET, name=job_id)
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG.format(job_id=job_id), encoding="utf-8")
    # The streamer too: a schema-valid transcription request (a model id the API names, a generated file)
    # is a job, which the streamer refuses as not media, so the endpoint answers 400 instead of waiting.
    async with runtime(cfg, names=["streamer"]) as services_rt, serving(cfg) as (host, _):
        await services_rt.start(services("streamer"))
        command = [
            *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run"),
            f"http://{host}/schema/openapi.json",
            *("--checks", "all", "--max-examples", "15", "--seed", "1", "--no-color"),
            *("--phases", "examples,coverage,fuzzing", "--generation-database", "none"),
            *("-H", f"Authorization: Bearer {token}", "--workers", "1"),
        ]
        run = functools.partial(
            subprocess.run, capture_output=True, text=True, timeout=300, cwd=tmp_path
        )  # its cache too
        done = await asyncio.to_thread(run, command)
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert " passed" in done.stdout and "failed" not in done.stdout.split("SUMMARY")[-1], report

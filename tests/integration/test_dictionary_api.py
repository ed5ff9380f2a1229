"""``GET /v1/dictionary``: a tapped word's card over HTTP, on the real gateway (real NATS and PostgreSQL),
with no token; what it cannot answer in the error shape."""

from __future__ import annotations

import asyncio

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from tests.integration.test_gateway_hostile import BASE_URL, _error

pytestmark = pytest.mark.integration

CACHED = "public, max-age=86400"


async def test_a_word_answers_its_entries_to_anyone_cacheably(settings, nats_url, database_url) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    async with AsyncTestClient(app=create_app(cfg), base_url=BASE_URL) as client:
        # The first lookups wait together for one load of the dictionary.
        bank, simplified = await asyncio.gather(
            client.get("/v1/dictionary", params={"q": "銀行"}), client.get("/v1/dictionary", params={"q": " 银行 "})
        )
        parts = await client.get("/v1/dictionary", params={"q": "大樽頸"})
        head = await client.head("/v1/dictionary", params={"q": "樽頸"})
    assert bank.status_code == 200, bank.text
    assert bank.headers["cache-control"] == CACHED
    body = bank.json()
    assert body["query"] == "銀行" and body["message"] is None
    first = body["entries"][0]
    assert set(first) == {"traditional", "simplified", "jyutping", "yale", "definitions", "source"}
    assert (first["traditional"], first["jyutping"], first["yale"]) == ("銀行", "ngan4 hong4", "ngàhn hòhng")
    assert "bank" in first["definitions"] and first["source"] == "CC-CEDICT"
    assert simplified.status_code == 200 and simplified.json()["query"] == "银行"
    assert simplified.json()["entries"] == body["entries"]
    answer = parts.json()
    assert parts.status_code == 200 and "「大」、「樽頸」" in answer["message"]
    assert [entry["traditional"] for entry in answer["entries"][:2]] == ["大", "樽頸"]
    assert len(answer["entries"]) <= 8
    assert head.status_code == 200 and head.content == b"" and head.headers["cache-control"] == CACHED


async def test_what_it_cannot_answer_is_a_4xx_in_the_error_shape(settings, nats_url, database_url) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    async with AsyncTestClient(app=create_app(cfg), base_url=BASE_URL) as client:
        nonsense = await client.get("/v1/dictionary", params={"q": "qqzx"})
        refused = {
            "missing": await client.get("/v1/dictionary"),
            "empty": await client.get("/v1/dictionary", params={"q": ""}),
            "spaces": await client.get("/v1/dictionary", params={"q": "   "}),
            "too long": await client.get("/v1/dictionary", params={"q": "銀" * 17}),
        }
    assert nonsense.status_code == 404 and nonsense.headers["cache-control"] == CACHED
    error = _error(nonsense)
    assert error["code"] == "no_entry" and error["message"].startswith("No dictionary entry for 「qqzx」")
    for name, answer in refused.items():
        assert answer.status_code == 400, (name, answer.status_code, answer.text)
        assert _error(answer)["message"], name

"""``GET /v1/dictionary?q=…``: what a word tapped in the transcript means.

Answers the entries of :class:`romanizer.dictionary.Dictionary` (CC-Canto and CC-CEDICT, CC BY-SA):
the word's own, or its parts' when it has none. The data is public, so no job's token is needed
(with accounts an API key is, as for every ``/v1`` endpoint) and answers may be cached by anyone
for a day. The dictionary is loaded in a thread on the first
lookup (a quarter of a second, about 20 MB) and kept on ``app.state`` for the process's life.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from litestar import HttpMethod, Response, route
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.params import QueryParameter

from gateway.errors import ApiError, ErrorBody
from gateway.openapi import API_KEY, error_responses
from gateway.schemas import DictionaryAnswer, DictionaryEntry
from romanizer.dictionary import MAX_QUERY, Dictionary, Lookup

CACHE_HEADERS = {"Cache-Control": "public, max-age=86400"}
# Something besides the spaces str.strip() removes. Not ``\S``: the document's regexes are
# ECMAScript's, whose spaces are not Python's (U+001C-U+001F, U+FEFF); this class means one thing to both.
_NOT_ONLY_SPACES = "[^" + "".join(f"\\u{code:04x}" for code in range(0x3001) if chr(code).isspace()) + "]"
_NO_ENTRY = ResponseSpec(
    data_container=ErrorBody,
    description="Neither the word nor any of its characters is in the dictionary (code `no_entry`).",
    generate_examples=False,
)


class Shelf:
    """The dictionary, loaded once, on first use, in a thread (the event loop keeps serving)."""

    def __init__(self) -> None:
        self._dictionary: Dictionary | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Dictionary:
        """The loaded dictionary; the first callers wait for one load."""
        if self._dictionary is None:
            async with self._lock:
                if self._dictionary is None:
                    self._dictionary = await asyncio.to_thread(Dictionary.load)
        return self._dictionary


@route(
    "/v1/dictionary",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    responses=dict(sorted({**error_responses(401), 404: _NO_ENTRY}.items())),
    security=API_KEY,
    summary="A word's meaning",
)
async def dictionary_lookup(
    state: State,
    q: Annotated[
        str,
        QueryParameter(
            description=f"A word or short phrase (1-{MAX_QUERY} characters), Traditional or Simplified.",
            min_length=1,
            max_length=MAX_QUERY,
            pattern=_NOT_ONLY_SPACES,
        ),
    ],
) -> Response[DictionaryAnswer]:
    """A word's Jyutping, Yale and English definitions, from CC-Canto and CC-CEDICT; no job's token needed
    (with accounts, an API key)."""
    query = q.strip()
    if not query or len(query) > MAX_QUERY:
        raise ApiError(400, "bad_request", f"q must be a word of 1 to {MAX_QUERY} characters.")
    shelf: Shelf = state.setdefault("dictionary", Shelf())
    found = (await shelf.get()).lookup(query)
    if not found.entries:
        raise ApiError(
            404,
            "no_entry",
            f"No dictionary entry for 「{query}」, nor for any of its characters. "
            "Check how it is written, or look up a shorter part of it.",
            headers=CACHE_HEADERS,
        )
    return Response(_answer(found), headers=CACHE_HEADERS)


def _answer(found: Lookup) -> DictionaryAnswer:
    """The answer's body; ``message`` says when the entries are only the word's parts."""
    message = None
    if not found.whole:
        message = (
            f"「{found.query}」 is not in the dictionary as one word; "
            f"here are its parts: {'、'.join(f'「{part}」' for part in found.parts)}."
        )
    entries = [
        DictionaryEntry(
            traditional=entry.traditional,
            simplified=entry.simplified,
            jyutping=entry.jyutping,
            yale=entry.yale,
            definitions=list(entry.definitions),
            source=entry.source,
        )
        for entry in found.entries
    ]
    return DictionaryAnswer(query=found.query, entries=entries, message=message)

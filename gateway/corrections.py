"""``PATCH /v1/jobs/{job_id}/lines/{seq}``: the job's owner corrects a line.

The corrected text is read by the one romanizer front end (:func:`romanizer.revise.revise`, on a
:class:`~romanizer.romanize.Romanizer` this process loads on first use), stored in place of the
line beside what the speech model wrote, and announced as a ``Revised`` event on
``scribe.events.<job>``, the one way a line changes after it is sent: the stream forwards it to
every viewer, and a viewer that connects later reads the corrected line from the store.

The line is changed in a transaction holding the job's row lock, as the romanizer stores lines, and
the event goes out after the commit (nobody sees a correction that is then rolled back). Its message
id names the job, the line and the revision, so a repeat is dropped by JetStream: a request repeated
after a 503 (stored, not yet announced) announces it without changing the line again.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
from litestar import Request, patch
from litestar.datastructures import State
from litestar.params import JSONBody, PathParameter

from core import bus
from core.messages import Revised, Segment
from core.process import Runtime
from gateway.access import authorize, purged
from gateway.errors import ApiError
from gateway.jobs import JobId
from gateway.openapi import JOB_TOKEN, error_responses
from romanizer.revise import revise
from romanizer.romanize import Romanizer
from store import repo

MAX_LINE_TEXT = 200  # characters of a corrected line, once normalised
_MAX_BODY_TEXT = 1000  # characters as sent: spaces and script are normalised before the line's limit

LineNumber = Annotated[
    int, PathParameter(description="The line's number, its `seq` (from 0).", ge=0, le=2**31 - 1)  # an int4 column
]


class LineCorrection(msgspec.Struct, forbid_unknown_fields=True):
    """``PATCH /v1/jobs/{job_id}/lines/{seq}``: the line's new text.

    ``revision``, when given, is the line's revision as the client last saw it: if the line has been
    corrected since (in another window), the answer is 409 ``line_changed`` and nothing changes.
    """

    text: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=_MAX_BODY_TEXT,
            description="The corrected line: one line, 1-200 characters once normalised (Hong Kong Traditional "
            "characters, single spaces, Chinese punctuation after Chinese characters).",
        ),
    ]
    revision: Annotated[int, msgspec.Meta(ge=0, description="The line's `revision` as last seen.")] | None = None


class LazyRomanizer:
    """This process's one romanizer, loaded in a thread (about half a second) on first use and kept."""

    def __init__(self) -> None:
        self._romanizer: Romanizer | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Romanizer:
        if self._romanizer is None:
            async with self._lock:
                if self._romanizer is None:
                    self._romanizer = await asyncio.to_thread(Romanizer)
        return self._romanizer


def checked_text(romanizer: Romanizer, text: str) -> str:
    """The corrected line normalised as the pipeline normalises what the ASR wrote.

    Raises:
        ApiError: 400 for a line break, an empty line or one over :data:`MAX_LINE_TEXT` characters.
    """
    if len(text.strip().splitlines()) > 1:
        raise ApiError(
            400,
            "bad_text",
            "The correction has a line break: it replaces one line, so write it on one line. "
            "(text must not contain newlines.)",
        )
    normal = romanizer.normalise(text)
    if not normal:
        raise ApiError(
            400,
            "bad_text",
            "The correction is empty: type what is said in this line. (text has no characters once spaces and "
            "control characters are removed.)",
        )
    if len(normal) > MAX_LINE_TEXT:
        raise ApiError(
            400,
            "bad_text",
            f"The correction is too long for one line ({len(normal)} characters; at most {MAX_LINE_TEXT}): "
            "correct only the words of this line.",
        )
    return normal


def _shown(job: repo.JobRow, line: Segment) -> bool:
    """Whether the line has been sent: its chunk's ``Partial`` is on the bus, or none ever will be.

    A line stored but not yet announced stays as the romanizer wrote it, so no ``Partial`` with
    its old text can follow its ``Revised``.
    """
    return line.chunk_seq < job.published_chunks or job.status == "cancelled"


@patch(
    "/v1/jobs/{job_id:str}/lines/{seq:int}",
    security=JOB_TOKEN,
    responses=error_responses(401, 403, 404, 409, 410, 503),
    summary="Correct a line",
)
async def correct_line(
    request: Request[Any, Any, Any], state: State, job_id: JobId, seq: LineNumber, data: JSONBody[LineCorrection]
) -> Segment:
    """Replace a line's text: its readings are worked out again, characters left as they were keep
    their times, ``original_text`` keeps what the speech model wrote and ``revision`` counts the
    corrections. Every viewer of the job gets the line as a ``revised`` message.

    The same text again changes nothing (a repeated request answers with the line as it is).
    """
    rt: Runtime = state.rt
    job = await authorize(request, job_id, change=True)
    if job.purged_at is not None:
        raise purged()
    romanizer = await state.romanizer.get()
    text = checked_text(romanizer, data.text)
    async with rt.pool.acquire() as conn, conn.transaction():
        locked = await repo.get_job(conn, job_id, for_update=True)
        if locked is None or locked.purged_at is not None:
            raise purged()
        line = await repo.segment(conn, job_id, seq)
        if line is None or not _shown(locked, line):
            raise ApiError(
                404,
                "no_such_line",
                f"Line {seq} is not in this transcript (yet): a line can be corrected once it has been shown. "
                f"(No line {seq} is stored for this job.)",
            )
        if line.text != text:
            if data.revision is not None and data.revision != line.revision:
                raise ApiError(
                    409,
                    "line_changed",
                    "This line was corrected somewhere else (another window, or someone else) since you opened "
                    "it: reload to see it as it is now, then correct it again if need be. "
                    f"(Line {seq} is at revision {line.revision}, not {data.revision}.)",
                )
            line = await asyncio.to_thread(revise, romanizer, line, text)
            await repo.revise_segment(conn, job_id, line)
    if line.revision:  # announced again when unchanged: the first announcement may have been lost
        await bus.publish_event(rt.js, Revised(job_id=job_id, segment=line))
    return line


ROUTES = [correct_line]

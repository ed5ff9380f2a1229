"""The live stream's messages, the same over the websocket and SSE: ``{"v": 1, "type", "job_id", "seq", ...}``.

``seq`` counts the job's events (from 1; a snapshot carries the number of the last event it
includes). The AsyncAPI document (:mod:`gateway.asyncapi`) is generated from these Structs.
"""

from __future__ import annotations

import msgspec

from core.messages import Char, Segment, Usage
from gateway.schemas import JobProgress, JobState, Links

VERSION = 1


class Envelope(msgspec.Struct, kw_only=True, tag_field="type"):
    v: int = VERSION
    job_id: str
    seq: int


class Snapshot(Envelope, tag="snapshot"):
    """First, always: the job so far, its lines as corrected so far. A long backlog continues in
    ``segments`` messages at once (``more_lines`` true until the last of them)."""

    status: JobState
    progress: JobProgress
    warnings: list[str]
    segments: list[Segment]
    next_line: int
    more_lines: bool = False


class ProgressEnvelope(Envelope, tag="progress"):
    """The input side moved: how much is decoded, whether all of it is."""

    seconds_decoded: float
    duration: float | None
    chunks_published: int
    input_ended: bool


class Lines(Envelope, tag="segments"):
    """New lines, each numbered by its own ``seq`` (from 0), never repeated; changed only by ``revised``."""

    segments: list[Segment]
    more_lines: bool = False


class RevisedEnvelope(Envelope, tag="revised"):
    """A line this viewer has been sent was corrected: ``segment`` replaces the line with its ``seq``
    (``segment.revision`` counts the corrections, ``segment.original_text`` is what the speech model
    wrote). The one way a line changes after it is sent."""

    segment: Segment


class FinalEnvelope(Envelope, tag="final"):
    """Terminal: the job is done; the server then closes normally (websocket 1000)."""

    duration: float
    segment_count: int
    usage: Usage
    warnings: list[str]


class FailedEnvelope(Envelope, tag="failed"):
    """Terminal: the job failed; ``reason`` says what happened and what to do."""

    reason: str


class CancelledEnvelope(Envelope, tag="cancelled"):
    """Terminal: the job was cancelled."""

    reason: str


class Heartbeat(Envelope, tag="heartbeat"):
    """Every ``SCRIBE_STREAM_HEARTBEAT_S`` without other messages."""

    last_line: int
    progress: JobProgress


class Lagged(Envelope, tag="lagged"):
    """This viewer fell behind: the server closes (websocket 4408); reconnect with ``after=last_line``."""

    last_line: int
    message: str


class ErrorEnvelope(Envelope, tag="error"):
    """Refused, or no longer possible: the server closes with the code named in the README.

    ``retryable`` says whether the same request may work later (a dependency down, too many
    connections) or never will (no token, no such job, purged).
    """

    code: str
    message: str
    retryable: bool


class SessionEnvelope(Envelope, tag="session"):
    """``WS /v1/live`` only, first: the live session is a job; these are its id, token and links, as a
    202 from ``POST /v1/jobs`` gives them (``seq`` is 0)."""

    token: str
    links: Links


class InterimEnvelope(Envelope, tag="interim"):
    """A live session's line in progress; each replaces the previous one. ``stable`` only grows until the
    line is committed (then it comes as a numbered line in ``segments``), ``tentative`` may change.
    ``chars`` cover ``stable`` + ``tentative`` with their readings and times. Never numbered, stored or
    replayed. ``next_chunk`` is the ``chunk_seq`` the line will have: drop the interim once a line with
    that ``chunk_seq`` or a later one has come."""

    start: float
    end: float
    stable: str
    tentative: str
    chars: list[Char]
    next_chunk: int


class LaggingEnvelope(Envelope, tag="lagging"):
    """A live session's transcript is more than 5 s behind its audio (the machine is overloaded)."""

    delay_s: float
    message: str


AnyEnvelope = (
    Snapshot
    | ProgressEnvelope
    | Lines
    | RevisedEnvelope
    | FinalEnvelope
    | FailedEnvelope
    | CancelledEnvelope
    | Heartbeat
    | Lagged
    | ErrorEnvelope
    | SessionEnvelope
    | InterimEnvelope
    | LaggingEnvelope
)

_encoder = msgspec.json.Encoder()


def encode(envelope: Envelope) -> str:
    return _encoder.encode(envelope).decode()

"""Every message on the bus, as msgspec Structs.

This module is the integration contract documented in the README. Evolve it only by
adding fields with defaults; never retype, rename or reorder a field.

Subjects (see ``core.subjects``) and what they carry:

- ``scribe.jobs.submitted``          JobSubmitted
- ``scribe.chunks``                  AudioChunk
- ``scribe.segments.<job_id>``       SegmentsEvent = ChunkTranscribed | ChunkFailed | InputEnded
- ``scribe.events.<job_id>``         JobEvent = Progress | Partial | Revised | Final | Failed | Cancelled
- ``scribe.alerts.cost``             CostAlert
- ``scribe.live.sessions``           LiveStarted (a live session for a transcriber)
- ``scribe.live.audio.<job_id>``     a live session's audio: 16 kHz mono s16le bytes (headers below)
- ``scribe.live.interim.<job_id>``   LiveInterim (core NATS, transcriber -> romanizer)
- ``scribe.live.updates.<job_id>``   LiveNotice = LiveClaimed | InterimLine | Lagging (core NATS, for gateways)
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal, get_args

import msgspec

Romanization = Literal["jyutping", "yale", "both"]
ROMANIZATIONS: tuple[str, ...] = get_args(Romanization)


class Base(msgspec.Struct, frozen=True, kw_only=True):
    """Root of every bus message: immutable, keyword-only, snake_case JSON.

    Subclasses repeat ``frozen=True``: msgspec inherits it, but mypy's reading of
    ``dataclass_transform`` does not.
    """


# --- job submission ------------------------------------------------------------------


class JobOptions(Base, frozen=True):
    """What the submitter asked for."""

    romanization: Romanization = "both"
    # Words that help the speech model (names, terms): added after the deployment's Cantonese
    # prompt, never instead of it (that prompt is what keeps Whisper writing spoken Cantonese).
    prompt: str | None = None
    # Transcribe again even when the same video, file or chunk was transcribed before with the same
    # options: neither the source cache nor the chunk cache answers it with another job's transcript.
    fresh: bool = False


class JobSubmitted(Base, frozen=True):
    """A new job for the streamer: fetch, decode and chunk ``source``."""

    job_id: str
    source: str  # a local path or an http(s) URL
    user_id: str | None = None
    options: JobOptions = JobOptions()
    # The longest audio this job may have under its submitter's plan; None: only the deployment's
    # SCRIBE_MAX_DURATION_S. A recording known to be longer fails the job; a stream of unknown
    # length is transcribed up to it, with a warning.
    max_seconds: float | None = None
    plan: str | None = None  # the plan's name, for messages ("the free plan allows ...")


# --- audio chunks (work queue) --------------------------------------------------------


class AudioChunk(Base, frozen=True):
    """One compressed piece of a job's audio, cut at a silence.

    ``offset`` and ``duration`` are seconds on the job's timeline: where the chunk sits. The
    transcriber adds ``offset`` to every segment time it gets back.

    ``speech``, when not empty, says that ``audio`` holds only these stretches of the chunk, back to
    back: ``[start, end]`` seconds from ``offset``, in order. The streamer sends an API backend the
    speech alone (pauses are billed too); where two stretches meet, each keeps :data:`SPEECH_PAD_S`
    of the pause between them. The transcriber maps the times it gets back from the joined audio
    onto the chunk's, then adds ``offset``. Empty: ``audio`` is the whole chunk.
    """

    job_id: str
    seq: int  # 0-based, contiguous over the job's published chunks
    offset: float
    duration: float
    codec: str  # "opus" (Ogg) or "flac"
    audio: bytes  # base64 in JSON
    speech: list[tuple[float, float]] = []


SPEECH_PAD_S = 0.1  # the pause a stretch of AudioChunk.speech keeps on the side where it meets another


# --- transcriber -> romanizer ---------------------------------------------------------


class RawWord(Base, frozen=True):
    """A word as the ASR timed it (for Chinese, one to a few characters), with absolute times.

    ``probability`` is the model's probability of the word's tokens (None when the backend
    gives none, as OpenAI's API does).
    """

    text: str
    start: float
    end: float
    probability: float | None = None


class RawSegment(Base, frozen=True):
    """One ASR segment with absolute times, before romanization.

    ``words`` are its words with their times, when the backend gives them; their texts
    concatenate to about ``text`` (the ASR's spacing may differ). A model that answers text
    alone (gpt-4o-transcribe) gets one segment per sentence whose words are runs of text between
    marks, timed by where speech was heard in the chunk (``transcriber.placement``): estimates.
    """

    start: float
    end: float
    text: str
    words: list[RawWord] = []


class Usage(Base, frozen=True):
    """What one ASR call (or a whole job) cost."""

    backend: str
    model: str
    billed_seconds: float
    cost_usd: float
    # Answered from the chunk cache, so nothing was billed (a job's: every one of its calls was).
    cache_hit: bool = False


class ChunkTranscribed(Base, frozen=True, tag="chunk_transcribed"):
    job_id: str
    seq: int
    offset: float
    duration: float
    segments: list[RawSegment]
    usage: Usage


class ChunkFailed(Base, frozen=True, tag="chunk_failed"):
    """A chunk the transcriber gave up on (permanent error or too many deliveries)."""

    job_id: str
    seq: int
    reason: str


class InputEnded(Base, frozen=True, tag="input_ended"):
    """The streamer has published every chunk of the job."""

    job_id: str
    total_chunks: int
    duration: float
    warnings: list[str] = []  # what a damaged input (or the plan's length limit) lost; the rest was decoded


SegmentsEvent = ChunkTranscribed | ChunkFailed | InputEnded


# --- job events for clients and integrators ------------------------------------------


class Word(Base, frozen=True):
    """A word of a line (a lexicon word, number, Latin word, space or mark) and its reading."""

    text: str
    jyutping: str | None
    yale: str | None


class Char(Base, frozen=True):
    """One character of a line and its reading, for ruby over each character.

    All three are ``None`` for punctuation, spaces, Latin letters and characters without a
    reading. A number's whole reading sits on its first digit (``100``: ``jat1 baak3``, then
    ``None``, ``None``). Yale has tone marks (``hēung``); ``yale_numeric`` has tone numbers
    1-6, as Jyutping does (``heung1``).

    ``start`` and ``end`` are when the character is spoken (seconds on the job's timeline) and
    ``confidence`` is the speech model's probability of the word it belongs to (0-1); all three
    are ``None`` where unknown (a backend without word times, punctuation, a corrected character).
    """

    char: str
    jyutping: str | None
    yale: str | None
    yale_numeric: str | None
    start: float | None = None
    end: float | None = None
    confidence: float | None = None


class Segment(Base, frozen=True):
    """A romanized transcript line. ``seq`` counts lines over the whole job, from 0.

    ``chars`` has one entry per character of ``text``, exactly what ``scribe romanize``
    writes for that text. A line is a sentence, or a clause of a long one: at most about
    :data:`MAX_LINE_CHARS` characters and :data:`MAX_LINE_SECONDS` seconds.

    A line never changes once sent, except by a correction (``Revised``): then ``text`` and
    its readings are the corrected ones, ``original_text`` is what the speech model wrote and
    ``revision`` counts the corrections.
    """

    seq: int
    start: float
    end: float
    text: str
    jyutping: str
    yale: str
    words: list[Word]
    chunk_seq: int = 0
    chars: list[Char] = []
    original_text: str | None = None
    revision: int = 0


MAX_LINE_CHARS = 24
MAX_LINE_SECONDS = 8.0


class Progress(Base, frozen=True, tag="progress"):
    """Input side: how much audio has been decoded and published so far."""

    job_id: str
    chunks_published: int
    seconds_decoded: float
    duration: float | None = None  # known up front for most media
    input_ended: bool = False


class Partial(Base, frozen=True, tag="partial"):
    """The next chunk in order is transcribed: its romanized lines."""

    job_id: str
    chunk_seq: int
    segments: list[Segment]
    chunks_done: int
    total_chunks: int | None = None


class Revised(Base, frozen=True, tag="revised"):
    """A committed line was corrected by the job's owner: ``segment`` replaces the line with its ``seq``.

    This is the one way a line changes after it is sent.
    """

    job_id: str
    segment: Segment


class Final(Base, frozen=True, tag="final"):
    """The job is complete; the whole transcript is in the store."""

    job_id: str
    duration: float
    segment_count: int
    usage: Usage
    warnings: list[str] = []  # the job succeeded with what it heard; these say what was lost


class Failed(Base, frozen=True, tag="failed"):
    """The job failed; ``reason`` says what happened and what to do."""

    job_id: str
    reason: str


class Cancelled(Base, frozen=True, tag="cancelled"):
    """The job was cancelled on request; lines already sent stay, no more come."""

    job_id: str
    reason: str = "Cancelled on request."


JobEvent = Progress | Partial | Revised | Final | Failed | Cancelled


# --- the whole transcript (CLI output, REST) -----------------------------------------


class Transcript(Base, frozen=True):
    job_id: str
    source: str
    duration: float
    segments: list[Segment]
    usage: Usage
    warnings: list[str] = []
    partial: bool = False  # the job is still running: the lines so far


# --- operators ------------------------------------------------------------------------

CostAlertKind = Literal["rise", "projected_rise", "daily", "projected_daily"]
COST_ALERT_KINDS: tuple[str, ...] = get_args(CostAlertKind)


class CostAlert(Base, frozen=True):
    """The day's cost (UTC) crossed a threshold; sent once per threshold per day, by whichever process saw it
    first.

    ``kind``: ``rise`` when the cost so far is more than ``SCRIBE_ALERT_RISE`` above the previous
    day's, ``projected_rise`` when only its projection to the end of the day is; ``daily`` when
    the cost so far reaches ``SCRIBE_ALERT_DAILY_USD``, ``projected_daily`` when only its
    projection does. A projected rise and the rise are one threshold: whichever comes first is sent,
    and nothing when the other follows (likewise for the daily amount).
    """

    day: date  # the UTC day, "2026-03-04"
    kind: CostAlertKind
    cost_usd: float  # the day's cost so far
    projected_usd: float  # at the day's pace so far, by its end
    previous_usd: float  # the previous day's whole cost
    threshold_usd: float  # the figure crossed: the previous day's plus the rise, or the daily amount
    message: str  # one sentence for people
    at: datetime  # when it was noticed (UTC)


# --- live sessions --------------------------------------------------------------------

# A live session's audio on ``scribe.live.audio.<job_id>``: each message is 16 kHz mono signed 16-bit
# little-endian PCM; its header AUDIO_SAMPLE_HEADER is the session sample number of its first sample
# (the sample at t seconds is number t * 16000). The last message has no audio and the header
# AUDIO_END_HEADER, the session's length in samples: the sender is done (close_stream, idle, gone, limit).
LIVE_SAMPLE_RATE = 16000
AUDIO_SAMPLE_HEADER = "Scribe-Sample"
AUDIO_END_HEADER = "Scribe-End"


class LiveStarted(Base, frozen=True):
    """A live session for a transcriber: its audio comes on ``scribe.live.audio.<job_id>``.

    The transcriber that takes it holds the message (heartbeats) for the whole session; if it dies,
    JetStream gives the message to another, which resumes at the last committed line.
    """

    job_id: str
    user_id: str | None = None
    options: JobOptions = JobOptions()
    max_seconds: float | None = None  # the session's length limit (the plan's, or SCRIBE_LIVE_MAX_S)


class Interim(Base, frozen=True):
    """The line in progress: ``stable`` (only grows until committed), then ``tentative`` (may change).

    ``words`` time ``stable`` + ``tentative`` (one per character for Chinese). Never numbered, never
    stored.
    """

    start: float
    end: float
    stable: str
    tentative: str
    words: list[RawWord] = []


class LiveInterim(Base, frozen=True):
    """Transcriber -> romanizer: a session's newest interim, to romanize and pass on.

    ``number`` counts the session's interims (a later one replaces an earlier one; one that
    arrives late is dropped). ``next_chunk`` is the chunk number the line will be committed as
    (``ChunkTranscribed.seq``): a viewer that has that chunk's lines drops the interim.
    """

    job_id: str
    number: int
    next_chunk: int
    interim: Interim


class LiveClaimed(Base, frozen=True, tag="claimed"):
    """A transcriber took the session (the gateway waits for this before it accepts audio)."""

    job_id: str


class InterimLine(Base, frozen=True, tag="interim"):
    """The line in progress, romanized: ``chars`` cover ``stable`` + ``tentative``."""

    job_id: str
    number: int
    next_chunk: int
    start: float
    end: float
    stable: str
    tentative: str
    chars: list[Char]


class Lagging(Base, frozen=True, tag="lagging"):
    """The session's transcript is more than 5 s behind its audio."""

    job_id: str
    delay_s: float


LiveNotice = LiveClaimed | InterimLine | Lagging


# One encoder and one decoder per type, reused.
encoder = msgspec.json.Encoder()
job_submitted_decoder = msgspec.json.Decoder(JobSubmitted)
audio_chunk_decoder = msgspec.json.Decoder(AudioChunk)
segments_event_decoder = msgspec.json.Decoder(SegmentsEvent)
job_event_decoder = msgspec.json.Decoder(JobEvent)
transcript_decoder = msgspec.json.Decoder(Transcript)
cost_alert_decoder = msgspec.json.Decoder(CostAlert)
live_started_decoder = msgspec.json.Decoder(LiveStarted)
live_interim_decoder = msgspec.json.Decoder(LiveInterim)
live_notice_decoder = msgspec.json.Decoder(LiveNotice)

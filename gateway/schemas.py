"""What the REST API answers, as msgspec Structs: Litestar encodes them and writes the OpenAPI
document from them, so the document is the code's own description of itself."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

import msgspec

from core.messages import CostAlert, Usage
from romanizer.dictionary import Source

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
Format = Literal["json", "srt", "vtt", "txt", "csv"]
Up = Literal["ok", "down"]


class Links(msgspec.Struct):
    """Where to read the job; every ``/v1`` link needs the job's token (``page`` carries it)."""

    status: str
    transcript: str
    stream: str
    events: str
    audio: str
    page: str


class JobAccepted(msgspec.Struct, omit_defaults=True):
    """A submitted job: its id, its token (the key to every per-job endpoint) and its links.

    ``webhook_secret`` (only when a ``webhook_url`` was given) verifies the webhook's signature.
    """

    job_id: str
    token: str
    links: Links
    webhook_secret: str | None = None


class JobProgress(msgspec.Struct):
    seconds_decoded: float
    duration: float | None


class Timings(msgspec.Struct):
    created_at: datetime | None
    finished_at: datetime | None


class WebhookState(msgspec.Struct):
    """The completion webhook: ``pending`` until the job ends and the POST is answered with a 2xx."""

    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status: int | None = None
    last_error: str | None = None


class JobStatus(msgspec.Struct):
    """One job: where it is, why it ended, what it cost.

    ``title`` is for people: an upload's file name, a link's video title (null until known).
    """

    job_id: str
    status: JobState
    reason: str | None
    warnings: list[str]
    progress: JobProgress
    chunks_done: int
    total_chunks: int | None
    timings: Timings
    usage: Usage
    purged: bool = False
    webhook: WebhookState | None = None
    title: str | None = None


class JobSummary(msgspec.Struct, omit_defaults=True):
    job_id: str
    status: JobState
    duration: float | None
    created_at: datetime | None
    finished_at: datetime | None
    # With accounts, a user's own list also names each job (a video's title, a file's name) and
    # gives its token, for its share link (/jobs/{job_id}?token=…); the shared list of a server
    # without accounts gives neither.
    title: str | None = None
    token: str | None = None


class JobList(msgspec.Struct):
    """A page of jobs, newest first; ``next_cursor`` is null on the last page."""

    jobs: list[JobSummary]
    next_cursor: str | None


class JobChanged(msgspec.Struct):
    """What ``DELETE /v1/jobs/{id}`` did: cancelled it, or purged its transcript and audio."""

    job_id: str
    status: JobState
    purged: bool


class Readiness(msgspec.Struct):
    """Whether this process reaches its message bus and its database."""

    nats: Up
    database: Up


class DictionaryEntry(msgspec.Struct):
    """One entry of CC-Canto or CC-CEDICT (both CC BY-SA; see the README): a headword in both
    scripts, its Cantonese reading in Jyutping and in Yale with tone marks (null where no reading
    is known), and its English definitions in the dictionary's order."""

    traditional: str
    simplified: str
    jyutping: str | None
    yale: str | None
    definitions: list[str]
    source: Source


class DictionaryAnswer(msgspec.Struct):
    """What the dictionary has for a word: the word's own entries, Cantonese senses first; or, when
    it has none, the entries of its parts (the longest words from its left, down to single
    characters), which ``message`` then says. At most 8 entries."""

    query: str
    entries: list[DictionaryEntry]
    message: str | None


QuotaName = Literal[
    "jobs_per_month",
    "concurrent_jobs",
    "audio_minutes_per_day",
    "audio_minutes_per_month",
    "max_job_minutes",
    "live_minutes_per_month",
    "requests_per_minute",
]


class QuotaUsage(msgspec.Struct):
    """One of the plan's limits (null: none), how much of it is used (null: not counted here) and when it resets."""

    name: QuotaName
    limit: float | None
    used: float | None
    unit: Literal["jobs", "minutes", "requests"]
    resets_at: datetime | None


class Me(msgspec.Struct):
    """The API key's account: its user, plan and use of every quota (days and months are UTC)."""

    user: str
    plan: str
    admin: bool
    key_prefix: str
    quotas: list[QuotaUsage]


# --- The usage ledger read back (gateway.costs) ----------------------------------------------------


class CostTotals(msgspec.Struct, kw_only=True):
    """What ledger rows add up to: calls to the speech model (each chunk is one), how many were cache hits
    (they cost nothing), the audio seconds billed and the cost in USD and in GBP (at ``gbp_per_usd``), and
    what the cache hits saved (the cost of the calls they replaced)."""

    calls: int
    cache_hits: int
    billed_seconds: float
    cost_usd: float
    cost_gbp: float
    saved_usd: float
    saved_gbp: float


class DayCosts(CostTotals):
    """One UTC day (days without calls are listed with zeros)."""

    day: date


class ModelCosts(CostTotals):
    """One speech model (``backend`` ``local`` costs compute only: 0 here)."""

    model: str
    backend: str


class UserCosts(CostTotals):
    """One user (null: jobs submitted without an account)."""

    user: str | None


class CostPerJob(msgspec.Struct):
    """Cost per job over the jobs with calls in the window (the part of a job's cost inside it); ``p90_usd``
    is interpolated between jobs. All 0 when there are none."""

    jobs: int
    mean_usd: float
    p90_usd: float
    max_usd: float
    mean_gbp: float
    p90_gbp: float
    max_gbp: float


class JobCosts(CostTotals):
    """One job (its title, and its user with accounts)."""

    job_id: str
    title: str | None
    user: str | None


class DayProjection(msgspec.Struct):
    """The window's last day (today, unless ``until`` is earlier): its cost so far and projected to the end of
    the UTC day at the pace so far (cost x 86,400 / seconds elapsed, counting at least two hours as elapsed);
    a day that is over projects its own cost."""

    day: date
    as_of: datetime
    cost_usd: float
    cost_gbp: float
    projected_usd: float
    projected_gbp: float


class UsageReport(msgspec.Struct):
    """The ledger of the key's user (without accounts: of the whole deployment) over the last ``days`` UTC
    days, ``last_day`` included as far as it has gone."""

    user: str | None
    first_day: date
    last_day: date
    gbp_per_usd: float
    total: CostTotals
    days: list[DayCosts]
    models: list[ModelCosts]
    per_job: CostPerJob


class AdminCosts(msgspec.Struct):
    """The whole deployment's ledger over the last ``days`` UTC days: per day, model and user (most costly first),
    cost per job, the ten costliest jobs and users, the last day's projection and the cost alerts raised."""

    first_day: date
    last_day: date
    gbp_per_usd: float
    total: CostTotals
    today: DayProjection
    days: list[DayCosts]
    models: list[ModelCosts]
    users: list[UserCosts]
    per_job: CostPerJob
    top_jobs: list[JobCosts]
    top_users: list[UserCosts]
    alerts: list[CostAlert]

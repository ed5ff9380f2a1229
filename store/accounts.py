"""Users, their API keys and plans, and what each user has used of their plan.

A key is ``sk_`` and 43 URL-safe characters (256 random bits). It is shown once, when made, and
kept only as its SHA-256 and a short prefix that names it in lists and in ``scribe keys revoke``.
Usage is counted from the jobs themselves (their number, their state, their audio length), so
there is no counter to drift from what happened; days and months are UTC.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from store.repo import Executor

KEY_PREFIX = "sk_"
KEY_LENGTH = len(KEY_PREFIX) + 43  # token_urlsafe(32): 43 characters
SHOWN_PREFIX = len(KEY_PREFIX) + 8  # what names a key: "sk_" and its first 8 characters


@dataclass(frozen=True)
class Plan:
    """What a user on the plan may use; None is no limit."""

    name: str
    max_job_minutes: float | None = None
    jobs_per_month: int | None = None
    audio_minutes_per_day: float | None = None
    audio_minutes_per_month: float | None = None
    concurrent_jobs: int | None = None
    live_minutes_per_month: float | None = None
    requests_per_minute: int | None = None

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Plan:
        return cls(**{f.name: record[f.name] for f in fields(cls)})


LIMITS = tuple(f.name for f in fields(Plan) if f.name != "name")
INTEGER_LIMITS = ("jobs_per_month", "concurrent_jobs", "requests_per_minute")


@dataclass(frozen=True)
class Account:
    """Who a key belongs to, on which plan."""

    user: str
    prefix: str
    admin: bool
    plan: Plan
    last_used_at: datetime | None = None


@dataclass(frozen=True)
class KeyRow:
    prefix: str
    user: str
    plan: str
    admin: bool
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class Usage:
    """What a user has used, at ``now``."""

    now: datetime
    jobs_this_month: int
    running_jobs: int
    audio_minutes_today: float
    audio_minutes_this_month: float
    live_minutes_this_month: float = 0.0  # live sessions' audio (WS /v1/live), counted apart from files

    @property
    def next_day(self) -> datetime:
        return day_start(self.now) + timedelta(days=1)

    @property
    def next_month(self) -> datetime:
        start = month_start(self.now)
        return (start + timedelta(days=32)).replace(day=1)


def day_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def month_start(now: datetime) -> datetime:
    return day_start(now).replace(day=1)


def new_key() -> str:
    """A new API key's text."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def looks_like_key(text: str) -> bool:
    """Whether a presented credential is an API key (a job's token is 32 characters, without ``sk_``)."""
    return text.startswith(KEY_PREFIX) and len(text) == KEY_LENGTH


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class UnknownPlan(LookupError):
    """A plan's name that no row has."""


async def create_key(db: Executor, user: str, *, plan: str | None, admin: bool) -> tuple[str, KeyRow, bool]:
    """A new key for ``user``, who is created (on ``plan``, or ``free``) if new, or moved to ``plan`` if given.

    Returns:
        The key's text (shown once), its row, and whether the user was new.

    Raises:
        UnknownPlan: ``plan`` names no plan.
    """
    if plan is not None and await db.fetchval("SELECT 1 FROM plans WHERE name = $1", plan) is None:
        raise UnknownPlan(plan)
    created = await db.fetchval(
        "INSERT INTO users (id, plan) VALUES ($1, COALESCE($2, 'free')) ON CONFLICT (id) DO NOTHING RETURNING true",
        user,
        plan,
    )
    if plan is not None and not created:
        await db.execute("UPDATE users SET plan = $2 WHERE id = $1", user, plan)
    while True:  # a prefix already taken (one chance in 2**48 per key): draw again
        key = new_key()
        record = await db.fetchrow(
            "INSERT INTO api_keys (prefix, key_hash, user_id, admin) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (prefix) DO NOTHING RETURNING prefix",
            key[:SHOWN_PREFIX],
            key_digest(key),
            user,
            admin,
        )
        if record is not None:
            break
    rows = await list_keys(db, prefix=key[:SHOWN_PREFIX])
    return key, rows[0], bool(created)


async def list_keys(db: Executor, *, prefix: str | None = None) -> list[KeyRow]:
    """Every key (or the one with ``prefix``), newest first; never the key's text, which is not kept."""
    records = await db.fetch(
        "SELECT k.prefix, k.user_id, u.plan, k.admin, k.created_at, k.last_used_at, k.revoked_at"
        " FROM api_keys k JOIN users u ON u.id = k.user_id"
        " WHERE $1::text IS NULL OR k.prefix = $1 ORDER BY k.created_at DESC, k.prefix",
        prefix,
    )
    return [KeyRow(r["prefix"], r["user_id"], r["plan"], r["admin"], *r[4:]) for r in records]


async def revoke_key(db: Executor, prefix: str) -> list[str]:
    """Revoke the keys whose prefix starts with ``prefix`` (at least the shown part); their prefixes."""
    records = await db.fetch(
        "UPDATE api_keys SET revoked_at = now() WHERE starts_with(prefix, $1) AND revoked_at IS NULL RETURNING prefix",
        prefix,
    )
    return [r["prefix"] for r in records]


async def account_for_key(db: Executor, digest: bytes) -> Account | None:
    """The account of the key with this digest, or None for a key unknown or revoked."""
    record = await db.fetchrow(
        "SELECT k.prefix, k.user_id, k.admin, k.last_used_at, k.key_hash, p.*"
        " FROM api_keys k JOIN users u ON u.id = k.user_id JOIN plans p ON p.name = u.plan"
        " WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        digest,
    )
    # The index found the row by the digest; comparing the digests again costs nothing and
    # keeps the one comparison of secret material constant-time.
    if record is None or not secrets.compare_digest(bytes(record["key_hash"]), digest):
        return None
    return Account(
        user=record["user_id"],
        prefix=record["prefix"],
        admin=record["admin"],
        plan=Plan.from_record(record),
        last_used_at=record["last_used_at"],
    )


async def touch_key(db: Executor, prefix: str) -> None:
    await db.execute("UPDATE api_keys SET last_used_at = now() WHERE prefix = $1", prefix)


async def plans(db: Executor) -> list[Plan]:
    return [Plan.from_record(r) for r in await db.fetch("SELECT * FROM plans ORDER BY name")]


async def set_plan(db: Executor, name: str, limits: dict[str, float | int | None]) -> Plan:
    """Create the plan or change the limits given (None: no limit); the others stay."""
    unknown = set(limits) - set(LIMITS)
    if unknown:
        raise ValueError(f"not a plan's limit: {', '.join(sorted(unknown))}")
    columns = ["name", *limits]  # names checked above: only LIMITS reach the statement
    placeholders = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    changes = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
    sql = (
        f"INSERT INTO plans ({', '.join(columns)}) VALUES ({placeholders})"
        f" ON CONFLICT (name) DO UPDATE SET {changes}, updated_at = now() RETURNING *"
    )
    return Plan.from_record(await db.fetchrow(sql, name, *limits.values()))


async def usage(db: Executor, user: str, *, lock: bool = False) -> Usage:
    """What ``user`` has used this UTC day and month.

    A job counts unless it failed (a recording the service could not transcribe is not the
    user's use); its audio counts as its length, or as far as it was decoded while it runs.

    Args:
        db: A connection inside a transaction when ``lock``.
        user: The user.
        lock: Lock the user's row first, so that checks of one user's quotas followed by a new
            job (in the same transaction) happen one at a time on every gateway process.
    """
    if lock:
        await db.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", user)
    now = datetime.now(UTC)
    record: Any = await db.fetchrow(
        "SELECT count(*) FILTER (WHERE created_at >= $2) AS jobs,"
        " count(*) FILTER (WHERE status IN ('queued', 'running')) AS running,"
        " COALESCE(sum(GREATEST(COALESCE(duration, 0), seconds_decoded))"
        " FILTER (WHERE created_at >= $3 AND source NOT LIKE 'live:%'), 0) AS today,"
        " COALESCE(sum(GREATEST(COALESCE(duration, 0), seconds_decoded))"
        " FILTER (WHERE created_at >= $2 AND source NOT LIKE 'live:%'), 0) AS month,"
        " COALESCE(sum(GREATEST(COALESCE(duration, 0), seconds_decoded))"
        " FILTER (WHERE created_at >= $2 AND source LIKE 'live:%'), 0) AS live"
        " FROM jobs WHERE user_id = $1 AND status <> 'failed'"
        " AND (created_at >= $2 OR status IN ('queued', 'running'))",
        user,
        month_start(now),
        day_start(now),
    )
    return Usage(
        now=now,
        jobs_this_month=int(record["jobs"]),
        running_jobs=int(record["running"]),
        audio_minutes_today=round(float(record["today"]) / 60, 2),
        audio_minutes_this_month=round(float(record["month"]) / 60, 2),
        live_minutes_this_month=round(float(record["live"]) / 60, 2),
    )

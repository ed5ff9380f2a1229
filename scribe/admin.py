"""``scribe keys`` and ``scribe plans``: an operator's commands for accounts.

They work on the database alone (``SCRIBE_DATABASE_URL``, or the embedded PostgreSQL in
``SCRIBE_DATA_DIR``, which they share with a running ``scribe up`` or start for the moment), so
they need no gateway, and every gateway process sees a change within a second.

``scribe keys create`` prints the new key alone on the last line of stdout (what it did goes to
stderr), so ``KEY=$(scribe keys create --user ana)`` keeps just the key.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import Any, TextIO

import asyncpg

from core.settings import Settings
from store import accounts
from store.accounts import INTEGER_LIMITS, LIMITS, Plan
from store.db import create_pool

MIN_REVOKE_PREFIX = len(accounts.KEY_PREFIX) + 4  # "sk_" alone would name every key


def add_parsers(commands: Any) -> None:
    """``keys`` and ``plans`` on the ``scribe`` command line."""
    keys = commands.add_parser("keys", help="make, list and revoke API keys (for SCRIBE_AUTH=keys)")
    key_commands = keys.add_subparsers(dest="action", required=True)
    create = key_commands.add_parser("create", help="make a key for a user (made if new); prints the key once")
    create.add_argument("--user", required=True, help="who the key is for (a name or an e-mail address)")
    create.add_argument("--plan", help="put the user on this plan (new users get free)")
    create.add_argument("--admin", action="store_true", help="the key sees and manages every user's jobs")
    key_commands.add_parser("list", help="every key: its prefix, user, plan, when made and last used; never the key")
    revoke = key_commands.add_parser("revoke", help="revoke a key, named by its prefix (as `keys list` shows it)")
    revoke.add_argument("prefix", help=f"the key's prefix (at least {MIN_REVOKE_PREFIX} characters, sk_…)")

    plans = commands.add_parser("plans", help="list plans, or set a plan's limits")
    plan_commands = plans.add_subparsers(dest="action", required=True)
    plan_commands.add_parser("list", help="every plan and its limits")
    change = plan_commands.add_parser("set", help="create a plan or change some of its limits ('none': no limit)")
    change.add_argument("name", help="the plan's name")
    for limit in LIMITS:
        change.add_argument(f"--{limit.replace('_', '-')}", dest=limit, metavar="N", help=_LIMIT_HELP[limit])


_LIMIT_HELP = {
    "max_job_minutes": "the longest recording one job may have, in minutes",
    "jobs_per_month": "jobs a user may submit in a UTC month",
    "audio_minutes_per_day": "minutes of audio a user may have transcribed in a UTC day",
    "audio_minutes_per_month": "minutes of audio a user may have transcribed in a UTC month",
    "concurrent_jobs": "jobs a user may have running at once",
    "live_minutes_per_month": "minutes of live audio a user may send in a UTC month",
    "requests_per_minute": "API requests a key may make per minute",
}


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on the configured database, or on the embedded one in the data folder."""
    async with AsyncExitStack() as stack:
        url = settings.database_url
        if not url:
            from scribe.embedded import EmbeddedPostgres

            server = EmbeddedPostgres(settings.data_dir / "postgres")
            stack.callback(server.stop)  # leaves it running for a `scribe up` that uses it
            url = server.start()
        pool = await create_pool(url, min_size=1, max_size=2)
        stack.push_async_callback(pool.close)
        yield pool


async def keys(args: argparse.Namespace, settings: Settings, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    async with database(settings) as pool:
        if args.action == "create":
            try:
                key, row, new = await accounts.create_key(pool, args.user, plan=args.plan, admin=args.admin)
            except accounts.UnknownPlan:
                names = ", ".join(p.name for p in await accounts.plans(pool))
                print(f"scribe keys: there is no plan {args.plan!r} (plans: {names})", file=err)
                return 2
            who = "a new user" if new else "the user"
            role = ", admin" if row.admin else ""
            print(
                f"API key {row.prefix}… made for {who} {row.user} (plan {row.plan}{role}). It is shown only "
                "this once: keep it secret. Send it as Authorization: Bearer <key>.",
                file=err,
            )
            print(key, file=out, flush=True)
            return 0
        if args.action == "list":
            rows = [
                [
                    r.prefix,
                    r.user,
                    r.plan,
                    "yes" if r.admin else "",
                    _when(r.created_at),
                    _when(r.last_used_at),
                    _when(r.revoked_at),
                ]
                for r in await accounts.list_keys(pool)
            ]
            _table(out, ["PREFIX", "USER", "PLAN", "ADMIN", "CREATED", "LAST USED", "REVOKED"], rows)
            return 0
        prefix = args.prefix.strip().rstrip("…")
        if len(prefix) < MIN_REVOKE_PREFIX or not prefix.startswith(accounts.KEY_PREFIX):
            print(
                f"scribe keys revoke: give the key's prefix as `scribe keys list` shows it (sk_…), not {prefix!r}",
                file=err,
            )
            return 2
        revoked = await accounts.revoke_key(pool, prefix)
        if not revoked:
            print(f"scribe keys revoke: no key in use starts with {prefix}", file=err)
            return 1
        print(f"revoked {', '.join(revoked)}: refused by every gateway within a second", file=out)
        return 0


async def plans(
    args: argparse.Namespace, settings: Settings, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    async with database(settings) as pool:
        if args.action == "set":
            try:
                changes = {
                    limit: _limit(limit, value) for limit in LIMITS if (value := getattr(args, limit)) is not None
                }
            except ValueError as exc:
                print(f"scribe plans set: {exc}", file=err)
                return 2
            plan = await accounts.set_plan(pool, args.name, changes)
            _plan_table(out, [plan])
            return 0
        _plan_table(out, await accounts.plans(pool))
        return 0


def _limit(name: str, text: str) -> float | int | None:
    if text.strip().lower() in ("none", "unlimited", "-"):
        return None
    try:
        value = int(text) if name in INTEGER_LIMITS else float(text)
    except ValueError:
        kind = "a whole number" if name in INTEGER_LIMITS else "a number"
        raise ValueError(f"--{name.replace('_', '-')} {text!r} is not {kind} (or none)") from None
    if value < 0:
        raise ValueError(f"--{name.replace('_', '-')} must not be negative")
    return value


def _plan_table(out: TextIO, plans: Sequence[Plan]) -> None:
    headers = ["PLAN", *(limit.upper().replace("_", " ") for limit in LIMITS)]
    rows = [[p.name, *("-" if (v := getattr(p, limit)) is None else f"{v:g}" for limit in LIMITS)] for p in plans]
    _table(out, headers, rows)


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M")


def _table(out: TextIO, headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    for row in [headers, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip(), file=out)

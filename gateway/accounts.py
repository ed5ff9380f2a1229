"""Accounts in the gateway: who a request comes from (its API key), and what their plan lets them do.

Under ``SCRIBE_AUTH=keys`` every ``/v1`` request shows an API key (``Authorization: Bearer sk_…``,
or from a browser's websocket the subprotocol ``key.sk_…``), except the reads a job's token
opens (its status, transcript, stream, events and audio: the share link). :class:`AccountMiddleware`
finds the key's account before anything else runs, so the rate limiter counts per key and
every handler sees the account (:func:`account_of`). Under ``SCRIBE_AUTH=none`` no request has an
account and nothing here runs.

Keys are looked up by their SHA-256 and the answer kept for :data:`CACHE_S`, so a revoked key
(or a changed plan) takes effect on every gateway process within that time with no message
between them; ``scribe keys revoke`` needs only the database.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from litestar import HttpMethod, Request, route
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.types import ASGIApp, Receive, Scope, Send

from gateway.errors import ApiError
from gateway.openapi import API_KEY, error_responses
from gateway.origins import header
from gateway.schemas import Me, QuotaUsage
from store import accounts
from store.accounts import Account, Plan, Usage

CACHE_S = 0.5  # how long a key's lookup is trusted: a revocation reaches every process within it
CACHE_ENTRIES = 10_000  # lookups kept at most (random keys from a stranger must not fill memory)
TOUCH_S = 60.0  # a key's last use is written at most this often
ACCOUNT = "scribe.account"  # the scope entry of the request's account
BAD_KEY = "scribe.bad_key"  # a websocket showed a key that is not valid: its handler answers
KEY_SUBPROTOCOL = "key."

# What a job's token opens without a key: reading that one job.
_TOKEN_READS = re.compile(r"^/v1/jobs/[^/]+(/transcript|/stream|/events|/audio)?$")
_READ_METHODS = {"GET", "HEAD"}

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="cantonesescribe"'}


class KeyCache:
    """API keys to accounts, each lookup trusted for :data:`CACHE_S`: one per gateway process."""

    def __init__(self) -> None:
        self.entries: dict[bytes, tuple[float, Account | None]] = {}

    async def account(self, pool: Any, key: str) -> Account | None:
        """The key's account, or None for a key unknown or revoked."""
        digest = accounts.key_digest(key)
        now = time.monotonic()
        cached = self.entries.get(digest)
        if cached is not None and now - cached[0] < CACHE_S:
            return cached[1]
        found = await accounts.account_for_key(pool, digest) if accounts.looks_like_key(key) else None
        if len(self.entries) >= CACHE_ENTRIES:
            self.entries.clear()
        self.entries[digest] = (now, found)
        if found is not None and (
            found.last_used_at is None or datetime.now(UTC) - found.last_used_at > timedelta(seconds=TOUCH_S)
        ):
            await accounts.touch_key(pool, found.prefix)
        return found


def presented_key(scope: Scope) -> str | None:
    """The API key a request shows: ``Authorization: Bearer sk_…`` or the websocket subprotocol ``key.sk_…``."""
    scheme, _, value = (header(scope, b"authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and value.strip().startswith(accounts.KEY_PREFIX):
        return value.strip()
    return key_subprotocol(scope).removeprefix(KEY_SUBPROTOCOL) or None


def key_subprotocol(scope: Scope) -> str:
    """The ``key.<KEY>`` entry of ``Sec-WebSocket-Protocol``, or ``""``."""
    offered = header(scope, b"sec-websocket-protocol") or ""
    return next((p.strip() for p in offered.split(",") if p.strip().startswith(KEY_SUBPROTOCOL)), "")


def scope_entries(scope: Any) -> dict[str, Any]:
    """The ASGI scope as the plain dict it is, for the entries this module adds to it."""
    return cast(dict[str, Any], scope)


def account_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Account | None:
    """The account of the request's key (None without accounts, or for a share link's reader)."""
    return scope_entries(connection.scope).get(ACCOUNT)


def needs_key(message: str = "") -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        message
        or "This server needs an API key: send it as Authorization: Bearer sk_… (an operator makes one with "
        "`scribe keys create --user NAME`). A shared transcript opens with its link alone.",
        headers=CHALLENGE,
    )


def bad_key() -> ApiError:
    return needs_key(
        "This API key is not valid: it was revoked, or it is mistyped or incomplete. Check it, or ask the "
        "operator for a new one."
    )


class AccountMiddleware:
    """Finds each ``/v1`` request's account from its key (``SCRIBE_AUTH=keys``).

    An HTTP request without a valid key is refused here (401), unless it is a read a job's token
    may open, which the handler then checks. A websocket's handler refuses it instead, after
    accepting, so the client reads why (the close frame alone cannot say much).
    """

    def __init__(self, app: ASGIApp, keys: KeyCache) -> None:
        self.app = app
        self.keys = keys  # shared by every route's stack: Litestar builds one per route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] not in ("http", "websocket") or not path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        key = presented_key(scope)
        pool = scope["litestar_app"].state.rt.pool
        account = await self.keys.account(pool, key) if key is not None else None
        if scope["type"] == "websocket":
            scope_entries(scope)[ACCOUNT] = account
            scope_entries(scope)[BAD_KEY] = key is not None and account is None
        elif key is not None and account is None:
            raise bad_key()
        elif account is None and scope.get("method") != "OPTIONS" and not _token_read(scope, path):
            raise needs_key()
        else:
            scope_entries(scope)[ACCOUNT] = account
        await self.app(scope, receive, send)


def _token_read(scope: Scope, path: str) -> bool:
    """Whether the request is one a job's token may make alone (its handler checks the token)."""
    return scope.get("method") in _READ_METHODS and _TOKEN_READS.match(path) is not None


def middleware() -> Any:
    """The middleware factory for ``Litestar(middleware=[...])``: one key cache for the app."""
    keys = KeyCache()

    def wrap(app: ASGIApp) -> ASGIApp:
        return AccountMiddleware(app, keys)

    return wrap


# --- Quotas ----------------------------------------------------------------------------------------


def _date(moment: datetime) -> str:
    return f"{moment.day} {moment.strftime('%B')}"


def _amount(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _over(message: str) -> ApiError:
    return ApiError(403, "quota_exceeded", message)


def check_quotas(plan: Plan, used: Usage) -> None:
    """Refuse a new job over any of the plan's quotas, with a sentence naming the limit, the use and the reset.

    Raises:
        ApiError: 403 ``quota_exceeded``.
    """
    name = f"Your {plan.name} plan"
    if plan.jobs_per_month is not None and used.jobs_this_month >= plan.jobs_per_month:
        raise _over(
            f"{name} allows {plan.jobs_per_month} jobs a month; you have used {used.jobs_this_month}. "
            f"It resets on {_date(used.next_month)}."
        )
    if plan.concurrent_jobs is not None and used.running_jobs >= plan.concurrent_jobs:
        which = "it has" if used.running_jobs == 1 else "one has"
        raise _over(
            f"{name} runs {plan.concurrent_jobs} job{'s' if plan.concurrent_jobs != 1 else ''} at a time; "
            f"{used.running_jobs} {'is' if used.running_jobs == 1 else 'are'} still in progress. "
            f"Submit again when {which} finished (or cancel it)."
        )
    if plan.audio_minutes_per_day is not None and used.audio_minutes_today >= plan.audio_minutes_per_day:
        raise _over(
            f"{name} allows {_amount(plan.audio_minutes_per_day)} minutes of audio a day; you have used "
            f"{_amount(used.audio_minutes_today)}. It resets at midnight UTC."
        )
    if plan.audio_minutes_per_month is not None and used.audio_minutes_this_month >= plan.audio_minutes_per_month:
        raise _over(
            f"{name} allows {_amount(plan.audio_minutes_per_month)} minutes of audio a month; you have used "
            f"{_amount(used.audio_minutes_this_month)}. It resets on {_date(used.next_month)}."
        )


def check_length(plan: Plan, seconds: float) -> None:
    """Refuse a recording known to be longer than the plan allows one job.

    Raises:
        ApiError: 403 ``quota_exceeded``.
    """
    if plan.max_job_minutes is not None and seconds > plan.max_job_minutes * 60:
        raise _over(
            f"This recording is {_amount(seconds / 60)} minutes long; your {plan.name} plan allows up to "
            f"{_amount(plan.max_job_minutes)} minutes per recording. Trim it, or use a plan that allows longer "
            "recordings."
        )


def live_seconds_left(plan: Plan, used: Usage) -> float | None:
    """Seconds of live audio the plan still allows this month (None: no limit).

    Raises:
        ApiError: 403 ``quota_exceeded`` when less than a second is left.
    """
    if (allowed := plan.live_minutes_per_month) is None:
        return None
    left_s = (allowed - used.live_minutes_this_month) * 60
    if left_s < 1:
        raise _over(
            f"Your {plan.name} plan allows {allowed:g} minutes of live audio a month; you have used "
            f"{used.live_minutes_this_month:,.1f}. It resets on {_date(used.next_month)}."
        )
    return left_s


def max_seconds(plan: Plan) -> float | None:
    return None if plan.max_job_minutes is None else plan.max_job_minutes * 60


def quota_usage(plan: Plan, used: Usage) -> list[QuotaUsage]:
    """Every quota of the plan with its use and when it resets, for ``GET /v1/me`` and the page."""
    return [
        QuotaUsage("jobs_per_month", plan.jobs_per_month, used.jobs_this_month, "jobs", used.next_month),
        QuotaUsage("concurrent_jobs", plan.concurrent_jobs, used.running_jobs, "jobs", None),
        QuotaUsage(
            "audio_minutes_per_day", plan.audio_minutes_per_day, used.audio_minutes_today, "minutes", used.next_day
        ),
        QuotaUsage(
            "audio_minutes_per_month",
            plan.audio_minutes_per_month,
            used.audio_minutes_this_month,
            "minutes",
            used.next_month,
        ),
        QuotaUsage("max_job_minutes", plan.max_job_minutes, None, "minutes", None),
        QuotaUsage(
            "live_minutes_per_month",
            plan.live_minutes_per_month,
            used.live_minutes_this_month,
            "minutes",
            used.next_month,
        ),
        QuotaUsage("requests_per_minute", plan.requests_per_minute, None, "requests", None),
    ]


@route(
    "/v1/me",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    security=API_KEY,
    responses=error_responses(401, 404, 503),
    summary="Your account and its use",
)
async def me(request: Request[Any, Any, Any], state: State) -> Me:
    """The key's user, plan, and use of every quota (``SCRIBE_AUTH=keys``; 404 without accounts)."""
    account = account_of(request)
    if account is None:
        if state.rt.settings.auth == "none":
            raise ApiError(
                404,
                "no_accounts",
                "This server runs without accounts (SCRIBE_AUTH=none): there is no plan and nothing is counted.",
            )
        raise needs_key()
    used = await accounts.usage(state.rt.pool, account.user)
    return Me(
        user=account.user,
        plan=account.plan.name,
        admin=account.admin,
        key_prefix=account.prefix,
        quotas=quota_usage(account.plan, used),
    )

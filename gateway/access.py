"""Who may see a job, and who may change it: its owner's API key, or its token.

Every per-job endpoint calls :func:`authorize`, the one place the check lives. A job's token
is an HMAC of its id under a deployment secret kept in PostgreSQL, so every gateway process
checks the same tokens, nothing per job is stored, and an idempotent resubmit can hand out
the first job's token again.

Without accounts (``SCRIBE_AUTH=none``) the token is all there is and opens everything about
its job. With accounts the owner's key (or an admin's) opens everything, and the token only
reads: it is the share link, and cannot cancel, purge or correct. Another user's key finds no
job (404), so ids cannot be probed with a key either.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from litestar.connection import ASGIConnection

from gateway.accounts import account_of
from gateway.errors import ApiError
from store import repo
from store.accounts import KEY_PREFIX

TOKEN_SECRET = "job-token"


def job_token(secret: bytes, job_id: str) -> str:
    """The token of a job: 32 URL-safe characters, unguessable without the secret."""
    digest = hmac.new(secret, job_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:32]


SUBPROTOCOL_PREFIX = "token."


def presented_token(connection: ASGIConnection) -> str | None:
    """The token a request carries: ``Authorization: Bearer <token>``, ``?token=``, or (websockets,
    whose browser API cannot set headers) the subprotocol ``token.<TOKEN>``."""
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip() and not value.strip().startswith(KEY_PREFIX):
        return value.strip()
    if token := connection.query_params.get("token"):
        return token
    return token_subprotocol(connection).removeprefix(SUBPROTOCOL_PREFIX) or None


def token_subprotocol(connection: ASGIConnection) -> str:
    """The ``token.<TOKEN>`` entry of ``Sec-WebSocket-Protocol``, or ``""``."""
    offered = connection.headers.get("sec-websocket-protocol", "")
    return next((p.strip() for p in offered.split(",") if p.strip().startswith(SUBPROTOCOL_PREFIX)), "")


async def token_secret(connection: ASGIConnection) -> bytes:
    """The deployment's token secret, read once per gateway process (it never changes)."""
    state = connection.app.state
    if getattr(state, "token_secret", None) is None:
        state.token_secret = await repo.secret(state.rt.pool, TOKEN_SECRET)
    return bytes(state.token_secret)


async def authorize(request: ASGIConnection, job_id: str, *, change: bool = False) -> repo.JobRow:
    """The job, once the request has shown its owner's key or its token.

    Args:
        request: The request or websocket.
        job_id: The job.
        change: The request changes the job (cancel, purge, correct): with accounts, only its
            owner's key (or an admin's) may.

    Raises:
        ApiError: 401 without a valid key or token (the same answer whether or not the job exists,
            so tokens cannot be used to probe for job ids), 404 for an unknown job with a
            token that would be its own (or another user's job), 403 for a token where the
            owner's key is needed.
    """
    pool = request.app.state.rt.pool
    account = account_of(request)
    if account is not None:
        job = await repo.get_job(pool, job_id)
        if job is not None and (account.admin or job.user_id == account.user):
            return job
    token = presented_token(request)
    secret = await token_secret(request)
    # Bytes, not str: compare_digest refuses non-ASCII text, and any token that is not the job's is simply wrong.
    if token is None or not hmac.compare_digest(
        token.encode("utf-8", "surrogatepass"), job_token(secret, job_id).encode()
    ):
        if account is not None:
            raise _no_job(job_id)
        what = "This link has no key" if token is None else "This link's key is wrong or incomplete"
        raise ApiError(
            401,
            "unauthorized",
            f"{what}: open the link you were given when the transcript was started, in full. "
            "(Programs: send the job's token, as returned when the job was submitted, as ?token=… "
            "or Authorization: Bearer ….)",
            headers={"WWW-Authenticate": 'Bearer realm="cantonesescribe"'},
        )
    job = await repo.get_job(pool, job_id)
    if job is None:
        raise _no_job(job_id)
    if change and request.app.state.rt.settings.auth == "keys":
        raise ApiError(
            403,
            "forbidden",
            "A shared link opens a transcript to read; only its owner can stop, delete or correct it. "
            "(Programs: send the owner's API key as Authorization: Bearer sk_….)",
        )
    return job


def _no_job(job_id: str) -> ApiError:
    return ApiError(
        404,
        "not_found",
        "There is no transcript at this address: check that the link is complete, or start a new "
        f"transcript. (No job {job_id}.)",
    )


def purged() -> ApiError:
    """The 410 of every per-job endpoint once the job was purged."""
    return ApiError(
        410,
        "purged",
        "This transcript and its audio were deleted on request and cannot be shown again; start a new "
        "transcript to have one. (The job was purged.)",
    )

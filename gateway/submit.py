"""``POST /v1/jobs``: a link (JSON) or a file (multipart) in, a job and its token out.

A JSON body is a few hundred bytes, so it is read up to :data:`MAX_JSON_BYTES` and no further;
only a multipart body may be as large as an upload (``SCRIBE_MAX_UPLOAD_BYTES``), and Litestar
spools its file to disk. Any other content type is a 415.

An ``Idempotency-Key`` (at most 255 printable ASCII characters) makes a retry safe: the key is
bound to the request's content (a hash of the link or of the file's bytes, and of the options),
so a retry with the same content gets the first job again, and the same key with other content
is a 409. A key alone discloses nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, BinaryIO

import msgspec
from litestar import Request, Response, post
from litestar.datastructures import State, UploadFile
from litestar.exceptions import HTTPException
from litestar.handlers import HTTPRouteHandler
from litestar.params import HeaderParameter

from core import uploads
from core.messages import ROMANIZATIONS, JobOptions, Romanization
from core.process import Runtime
from core.settings import Settings
from gateway import accounts, budget, webhooks
from gateway.access import job_token, token_secret
from gateway.accounts import account_of
from gateway.errors import ApiError, unavailable
from gateway.openapi import API_KEY, SubmitOperation, error_responses
from gateway.schemas import JobAccepted, Links
from scribe import client
from store import accounts as account_store
from store import repo
from store import webhooks as webhook_store
from store.accounts import Account
from streamer.errors import InputError
from streamer.source import check_link

MAX_JSON_BYTES = 16 * 1024
MAX_KEY_LENGTH = 255
# Multipart framing and the form fields besides the file.
FORM_OVERHEAD = 64 * 1024
_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}")


class LinkSubmission(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/jobs`` with a JSON body."""

    url: str
    romanization: Romanization = "both"
    webhook_url: str | None = None
    fresh: bool = False  # transcribe again, even if this video was transcribed before with the same options


@dataclass(frozen=True)
class Submission:
    """A submit read and checked: what to transcribe, how, and the content its retry key is bound to."""

    source: str  # a link, or "" for a file still to be stored
    options: JobOptions
    fingerprint: str
    file: BinaryIO | None = None
    webhook_url: str | None = None
    title: str | None = None  # a file's name (a link's title comes from the streamer)


def submit_route(settings: Settings) -> HTTPRouteHandler:
    """``POST /v1/jobs`` for this deployment: Litestar stops a body at the upload limit (plus the form's
    framing); a JSON body is cut much shorter as it is read."""
    return post(
        "/v1/jobs",
        status_code=202,
        operation_class=SubmitOperation,
        request_max_body_size=settings.max_upload_bytes + FORM_OVERHEAD,
        responses=error_responses(401, 403, 409, 413, 415, 503),
        security=API_KEY,
        summary="Submit a link or a file",
    )(submit_job)


async def submit_job(
    request: Request[Any, Any, Any],
    state: State,
    idempotency_key: Annotated[
        str,
        HeaderParameter(
            name="Idempotency-Key",
            required=False,
            description="Makes a retry safe: the same key with the same content answers with the first job; "
            "with other content, 409. At most 255 printable ASCII characters.",
        ),
    ] = "",
) -> Response[JobAccepted]:
    """Submit a link (JSON ``{"url", "romanization"}``) or a file (multipart field ``file``)."""
    rt: Runtime = state.rt
    account = account_of(request)
    key = _checked_key(idempotency_key, account)
    if not rt.nc.is_connected:  # fail fast: a publish would wait for its ack until it times out
        raise unavailable()
    if account is not None and key is None:  # before the body is read: a refused job uploads nothing
        # (A retry with a key may be over a quota its first try filled: it is answered by its replay.)
        accounts.check_quotas(account.plan, await account_store.usage(rt.pool, account.user))
    submission = await read_submission(request, rt)
    try:
        if key is not None and (first := await _replay(rt, key, submission)) is not None:
            return await accepted(request, first, replayed=True, webhook=submission.webhook_url is not None)
        job_id, replayed = await start_job(rt, submission, key=key, account=account)
    finally:
        if submission.file is not None:
            submission.file.close()
    return await accepted(request, job_id, replayed=replayed, webhook=submission.webhook_url is not None)


def _checked_key(key: str, account: Account | None = None) -> str | None:
    """The Idempotency-Key as stored: with accounts, each user's keys are their own (the same key
    from two users names two jobs), so it is stored as a hash of the user and the key."""
    if not key:
        return None
    if not _KEY.fullmatch(key):
        raise ApiError(
            400,
            "bad_request",
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters without spaces "
            f"(this one has {len(key)} characters); a UUID is a good key.",
        )
    if account is not None:
        return "user:" + hashlib.sha256(f"{account.user}\0{key}".encode()).hexdigest()
    return key


async def _replay(rt: Runtime, key: str, submission: Submission) -> str | None:
    """The job a retry of this very request made, or None for a new key.

    Raises:
        ApiError: 409 when the key was used for other content.
    """
    bound = await repo.idempotent_job(rt.pool, key)
    if bound is None:
        return None
    job_id, fingerprint = bound
    if fingerprint != submission.fingerprint:
        raise _key_conflict()
    return job_id


def _key_conflict() -> ApiError:
    return ApiError(
        409,
        "idempotency_key_reused",
        "This Idempotency-Key was already used for a different request (another link, file or options). "
        "Use a new key for a new job.",
    )


async def start_job(
    rt: Runtime, submission: Submission, *, key: str | None = None, account: Account | None = None
) -> tuple[str, bool]:
    """Store the submission's file (if any), create the job and publish it: ``(job_id, replayed)``.

    With ``key``, a concurrent request holding the same key and content wins or loses as a whole:
    the loser's stored file is deleted and the winner's job returned (``replayed`` true). With
    ``account``, the job is the account's user's, and their plan's quotas are checked again with
    the user's row locked, so requests racing on several gateway processes cannot overrun them.

    Raises:
        ApiError: 409 when a concurrent request bound the key to other content; 403 over a quota;
            503 past the daily budget with ``SCRIBE_FALLBACK=refuse``.
    """
    await budget.refuse_when_spent(rt)
    source = submission.source
    if submission.file is not None:
        source = await client.upload(rt.js, submission.file)
    try:
        return await _create(rt, submission, source, key=key, account=account)
    except ApiError:
        if uploads.is_upload(source) and submission.file is not None:
            await uploads.delete(rt.js, source)
        raise


async def _create(
    rt: Runtime, submission: Submission, source: str, *, key: str | None, account: Account | None
) -> tuple[str, bool]:
    job_id = uuid.uuid4().hex
    async with rt.pool.acquire() as conn, conn.transaction():
        if account is not None:
            accounts.check_quotas(account.plan, await account_store.usage(conn, account.user, lock=True))
        if key is not None:
            owner, fingerprint = await repo.claim_idempotency_key(conn, key, job_id, submission.fingerprint)
            if owner != job_id:
                if fingerprint != submission.fingerprint:
                    raise _key_conflict()
                if uploads.is_upload(source) and submission.file is not None:
                    await uploads.delete(rt.js, source)
                return owner, True
        user = None if account is None else account.user
        await repo.create_job(conn, job_id, source, user_id=user, options=submission.options, title=submission.title)
        if submission.webhook_url is not None:
            await webhook_store.set_url(conn, job_id, submission.webhook_url)
        await client.submit(
            rt.js,
            source,
            options=submission.options,
            job_id=job_id,
            user_id=user,
            max_seconds=None if account is None else accounts.max_seconds(account.plan),
            plan=None if account is None else account.plan.name,
        )
    return job_id, False


async def read_submission(request: Request[Any, Any, Any], rt: Runtime) -> Submission:
    """The submission in the request's body, checked.

    Raises:
        ApiError: 415 for a content type other than JSON or multipart, 413 over the limits, 400 for
            a body that is not a submission or a link the service would not fetch.
    """
    content_type, _ = request.content_type
    if content_type == "multipart/form-data":
        return await _read_upload(request, rt)
    if content_type != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            'Send JSON {"url": …, "romanization": …} (Content-Type: application/json) or a multipart form '
            '(multipart/form-data) with the file in the field "file".',
        )
    link = await _read_link(request)
    try:  # a link only: nothing a caller sends makes the gateway look at its own files
        await asyncio.to_thread(check_link, link.url, allow_private=rt.settings.allow_private_urls)
    except InputError as exc:
        raise ApiError(400, "bad_input", exc.reason) from exc
    options = JobOptions(romanization=link.romanization, fresh=link.fresh)
    hook = await _checked_webhook(link.webhook_url, rt)
    fingerprint = _fingerprint("link", link.url.encode(), options, hook)
    return Submission(link.url, options, fingerprint, webhook_url=hook)


async def _read_link(request: Request[Any, Any, Any]) -> LinkSubmission:
    too_large = ApiError(
        413, "too_large", f"A JSON submission is at most {MAX_JSON_BYTES:,} bytes; send a file as multipart instead."
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_JSON_BYTES:
        raise too_large
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > MAX_JSON_BYTES:
            raise too_large
    try:
        return msgspec.json.decode(bytes(body), type=LinkSubmission)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "bad_request", f"The JSON body is not a submission: {exc}.") from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, "bad_request", "The body is not valid JSON.") from exc


async def _read_upload(request: Request[Any, Any, Any], rt: Runtime) -> Submission:
    limit = rt.settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        raise ApiError(413, "too_large", f"The file is larger than the {limit:,} byte limit.")
    try:
        form = await read_form(request)
    except HTTPException as exc:
        if exc.status_code == 413:
            raise ApiError(413, "too_large", f"The file is larger than the {limit:,} byte limit.") from exc
        raise
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ApiError(400, "bad_request", 'The form has no file in the field "file".')
    romanization = str(form.get("romanization") or "both")
    if romanization not in ROMANIZATIONS:
        raise ApiError(400, "bad_request", f"romanization must be one of {', '.join(ROMANIZATIONS)}.")
    file: BinaryIO = upload.file  # type: ignore[assignment]
    size, digest = await asyncio.to_thread(_size_and_digest, file)
    if size > limit:
        raise ApiError(413, "too_large", f"The file is larger than the {limit:,} byte limit.")
    if size == 0:
        raise ApiError(400, "bad_input", "The uploaded file is empty.")
    fresh = str(form.get("fresh") or "false").strip().lower()
    if fresh not in ("true", "false"):
        raise ApiError(400, "bad_request", "fresh must be true or false.")
    options = JobOptions(romanization=romanization, fresh=fresh == "true")  # type: ignore[arg-type]
    hook = await _checked_webhook(str(form.get("webhook_url") or "") or None, rt)
    fingerprint = _fingerprint("file", digest, options, hook)
    return Submission("", options, fingerprint, file=file, webhook_url=hook, title=file_title(upload.filename))


_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,5}$")


def file_title(filename: str | None) -> str | None:
    """A job's title from an uploaded file's name: without the folders a browser may send, and
    without its extension (``C:\\talks\\council meeting.mp4``: ``council meeting``)."""
    name = re.split(r"[/\\]", filename or "")[-1]
    return _EXTENSION.sub("", name).strip() or name.strip() or None


async def _checked_webhook(url: str | None, rt: Runtime) -> str | None:
    if url is None:
        return None
    try:
        await asyncio.to_thread(webhooks.check, url, allow_private=rt.settings.allow_private_urls)
    except InputError as exc:
        raise ApiError(400, "bad_webhook_url", exc.reason) from exc
    return url


async def read_form(request: Request[Any, Any, Any]) -> Any:
    """The request's multipart form, its files spooled to disk; a form Litestar cannot read is a 400.

    Raises:
        ApiError: A field in an unknown charset or not in the one it names.
        HTTPException: 413 past the route's ``request_max_body_size``.
    """
    try:
        return await request.form()
    except (UnicodeDecodeError, LookupError) as exc:
        raise ApiError(
            400,
            "bad_request",
            "A form field is not text in the character set it declares (or declares one this server does not "
            "know); send form fields as UTF-8.",
        ) from exc
    except ValueError as exc:  # a malformed multipart body
        raise ApiError(400, "bad_request", f"The multipart form could not be read: {exc}.") from exc


def _size_and_digest(file: BinaryIO) -> tuple[int, bytes]:
    digest = hashlib.sha256()
    file.seek(0)
    while block := file.read(1 << 20):
        digest.update(block)
    size = file.tell()
    file.seek(0, os.SEEK_SET)
    return size, digest.digest()


def _fingerprint(kind: str, content: bytes, options: JobOptions, webhook_url: str | None) -> str:
    """What a retry key is bound to: the kind of input, its content, the options and the webhook."""
    parts = [kind.encode(), content, msgspec.json.encode(options), (webhook_url or "").encode()]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()


def job_links(job_id: str, token: str) -> Links:
    """Where to read a job: its status, transcript, live streams, audio and page."""
    base = f"/v1/jobs/{job_id}"
    return Links(
        status=base,
        transcript=f"{base}/transcript",
        stream=f"{base}/stream",
        events=f"{base}/events",
        audio=f"{base}/audio",
        page=f"/jobs/{job_id}?token={token}",
    )


async def accepted(
    request: Request[Any, Any, Any], job_id: str, *, replayed: bool = False, webhook: bool = False
) -> Response[JobAccepted]:
    """The 202 answer: the job, its token, its links, and ``Location`` naming its status."""
    token = job_token(await token_secret(request), job_id)
    base = f"/v1/jobs/{job_id}"
    body = JobAccepted(job_id=job_id, token=token, links=job_links(job_id, token))
    if webhook:
        pool = request.app.state.rt.pool
        body.webhook_secret = webhooks.webhook_secret(await repo.secret(pool, webhooks.SECRET_NAME), job_id)
    headers = {"Location": base}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(body, status_code=202, headers=headers)

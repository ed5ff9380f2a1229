"""Uploaded files, kept in the JetStream object store the services share.

A job that arrives over the bus names an http(s) link or an upload (``upload:<name>``),
never a path: files move between processes, and machines, through this bucket. A client
(``scribe.client.upload``) puts the file here and submits ``upload:<name>``; the streamer
fetches it to a temporary file of its own and decodes that. Objects expire after
``SCRIBE_UPLOAD_RETENTION_S``.
"""

from __future__ import annotations

import secrets
from typing import BinaryIO

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from core.topology import UPLOADS_BUCKET

PREFIX = "upload:"


class UploadError(Exception):
    """An upload a job names cannot be read back."""


class UploadMissing(UploadError):
    """The upload is not (or no longer) in the bucket."""


class UploadTooLarge(UploadError):
    """The upload is larger than the caller's limit."""


class UploadUnreadable(UploadError):
    """The entry is not a stored file (a link to another bucket or object), or its chunks do not
    match its digest."""


def is_upload(source: str) -> bool:
    """Whether a job's source names an upload."""
    return source.strip().startswith(PREFIX)


def _name(source: str) -> str:
    return source.strip().removeprefix(PREFIX)


async def put(
    js: JetStreamContext, file: BinaryIO | bytes, *, bucket: str = UPLOADS_BUCKET, name: str | None = None
) -> str:
    """Store a file under ``name`` (a new random one by default).

    Args:
        js: A JetStream context.
        file: The bytes, or a binary file open for reading (read in a thread).
        bucket: The object store.
        name: The object's name.

    Returns:
        The source to submit: ``upload:<name>``.
    """
    name = name or secrets.token_hex(16)
    store = await js.object_store(bucket)
    await store.put(name, file)  # type: ignore[arg-type]  # any binary reader works (it calls readinto)
    return PREFIX + name


class _Limited:
    """A writer that refuses to grow past ``max_bytes``: the entry's stated size is not trusted."""

    def __init__(self, into: BinaryIO, max_bytes: int) -> None:
        self.into = into
        self.max_bytes = max_bytes
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        if self.written > self.max_bytes:
            raise UploadTooLarge(f"over {self.max_bytes} bytes")
        return self.into.write(data)


async def fetch(
    js: JetStreamContext, source: str, into: BinaryIO, *, max_bytes: int, bucket: str = UPLOADS_BUCKET
) -> None:
    """Copy an upload into ``into`` (written in a thread), checking its size and digest.

    Raises:
        UploadMissing: No such upload (never stored, expired or deleted).
        UploadTooLarge: Stated or actual size over ``max_bytes``.
        UploadUnreadable: A link rather than a stored file, or chunks that do not match the digest.
    """
    store = await js.object_store(bucket)
    name = _name(source)
    try:
        info = await store.get_info(name)
    except nats.js.errors.NotFoundError as exc:  # ObjectNotFoundError, ObjectDeletedError
        raise UploadMissing(source) from exc
    except nats.errors.Error as exc:
        raise UploadUnreadable(source) from exc
    if info.is_link():  # nats-py would follow it into another bucket, whole, into memory
        raise UploadUnreadable(f"{source} is a link")
    if (info.size or 0) > max_bytes:
        raise UploadTooLarge(source)
    try:
        await store.get(name, writeinto=_Limited(into, max_bytes))  # type: ignore[arg-type]
    except nats.js.errors.NotFoundError as exc:
        raise UploadMissing(source) from exc
    except nats.errors.Error as exc:
        raise UploadUnreadable(source) from exc


async def delete(js: JetStreamContext, source: str, *, bucket: str = UPLOADS_BUCKET) -> None:
    """Delete an upload; one already gone is fine."""
    store = await js.object_store(bucket)
    try:
        await store.delete(_name(source))
    except nats.js.errors.NotFoundError:
        pass

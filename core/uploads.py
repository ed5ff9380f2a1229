"""Uploaded files, kept in the JetStream object store the services share.

A job that arrives over the bus names an http(s) link or an upload (``upload:<name>``),
never a path: files move between processes, and machines, through this bucket. The
gateway (or any client) puts the file here and submits ``upload:<name>``; the streamer
fetches it to a temporary file of its own and decodes that. Objects expire after
``SCRIBE_UPLOAD_RETENTION_S``.
"""

from __future__ import annotations

import secrets
from typing import BinaryIO

import nats.js.errors
from nats.js import JetStreamContext

from core.topology import UPLOADS_BUCKET

PREFIX = "upload:"


class UploadMissing(LookupError):
    """The upload named by a job is not (or no longer) in the bucket."""


def is_upload(source: str) -> bool:
    """Whether a job's source names an upload."""
    return source.startswith(PREFIX)


async def put(js: JetStreamContext, file: BinaryIO | bytes, *, bucket: str = UPLOADS_BUCKET) -> str:
    """Store a file under a new random name.

    Args:
        js: A JetStream context.
        file: The bytes, or a binary file open for reading (read in a thread).
        bucket: The object store.

    Returns:
        The source to submit: ``upload:<name>``.
    """
    name = secrets.token_hex(16)
    store = await js.object_store(bucket)
    await store.put(name, file)  # type: ignore[arg-type]  # any binary reader works (it calls readinto)
    return PREFIX + name


async def size(js: JetStreamContext, source: str, *, bucket: str = UPLOADS_BUCKET) -> int:
    """The stored size of an upload in bytes.

    Raises:
        UploadMissing: No such upload (never stored, expired or deleted).
    """
    store = await js.object_store(bucket)
    try:
        info = await store.get_info(source.removeprefix(PREFIX))
    except nats.js.errors.ObjectNotFoundError as exc:
        raise UploadMissing(source) from exc
    return info.size or 0


async def fetch(js: JetStreamContext, source: str, into: BinaryIO, *, bucket: str = UPLOADS_BUCKET) -> None:
    """Copy an upload into ``into`` (written in a thread), checking its digest.

    Raises:
        UploadMissing: No such upload.
    """
    store = await js.object_store(bucket)
    try:
        await store.get(source.removeprefix(PREFIX), writeinto=into)  # type: ignore[arg-type]
    except nats.js.errors.ObjectNotFoundError as exc:
        raise UploadMissing(source) from exc

"""Errors raised by the transcriber package.

Hierarchy::

    TranscriberError                  root: catch this to handle anything from here
    ├── AsrError                      one ASR call failed
    │   ├── TransientAsrError         try again later: rate limit, 5xx, timeout, connection
    │   │                             (consumer: nak with delay >= retry_after)
    │   └── PermanentAsrError         retrying cannot help: bad key, bad request,
    │                                 undecodable audio (consumer: term + ChunkFailed)
    ├── ModelError                    the local model cannot be assembled, verified or loaded
    └── BackendConfigError            settings lack what the backend needs (an API key)

Every error carries its cause as structured fields; ``reason`` is written for the user or
operator who has to act on it.
"""

from __future__ import annotations

from pathlib import Path


class TranscriberError(Exception):
    """Root of every error raised by the transcriber package."""


class AsrError(TranscriberError):
    """One ASR call failed.

    Attributes:
        reason: What happened and, where possible, what to do about it.
        backend: The backend name ("local" or "openai").
        status_code: The HTTP status of the failed call, if there was one.
    """

    def __init__(self, reason: str, *, backend: str = "", status_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.backend = backend
        self.status_code = status_code


class TransientAsrError(AsrError):
    """A failure that may pass: retry after ``retry_after`` seconds (None: use your own backoff)."""

    def __init__(
        self,
        reason: str,
        retry_after: float | None = None,
        *,
        backend: str = "",
        status_code: int | None = None,
    ) -> None:
        super().__init__(reason, backend=backend, status_code=status_code)
        self.retry_after = retry_after


class PermanentAsrError(AsrError):
    """A failure that retrying the same call cannot fix."""


class ModelError(TranscriberError):
    """The local ASR model cannot be assembled, verified or loaded.

    Attributes:
        reason: What is wrong and what to do.
        path: The model file or folder concerned, if any.
    """

    def __init__(self, reason: str, *, path: Path | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path


class BackendConfigError(TranscriberError):
    """The settings cannot make a backend (a missing API key).

    Attributes:
        reason: Which setting to change.
        setting: The ``SCRIBE_*`` environment variable to look at.
    """

    def __init__(self, reason: str, *, setting: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.setting = setting

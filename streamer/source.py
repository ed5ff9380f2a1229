"""The input of a job: a local path or a link in, something ``streamer.media.open_media`` reads out.

``open_source`` is the one entry point the service calls. A link is resolved with yt-dlp
(``streamer.resolve``) and then downloaded as a stream (``streamer.download``), both behind the
SSRF guard (``streamer.guard``); a local file (an upload the gateway stored) is checked and passed on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import BinaryIO, cast
from urllib.parse import urlsplit

from streamer.download import DEFAULT_TIMEOUT_S, HttpStream
from streamer.errors import BlockedURL, SourceNotFound, TooLarge, UnsupportedInput
from streamer.resolve import resolve

logger = logging.getLogger(__name__)

# Manifests and playlists make the demuxer open further URLs or files named inside them.
PLAYLIST_SUFFIXES = frozenset({".m3u8", ".m3u", ".pls", ".xspf", ".txt", ".ffconcat", ".concat", ".mpd", ".sdp"})


def _looks_like_url(source: str) -> bool:
    head = source.split(":", 1)[0]
    return ":" in source and head.isalpha() and len(head) > 1 and "://" in source


def open_source(
    source: str,
    *,
    allow_private: bool,
    max_duration_s: float,
    max_bytes: int,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_seconds: float | None = None,
) -> tuple[str | BinaryIO, float | None]:
    """Turn a submitted source into something ``streamer.media.open_media`` can read.

    Args:
        source: A local path (an upload the gateway stored) or an http(s) link.
        allow_private: Let loopback and private addresses through (tests only).
        max_duration_s: Longest accepted duration.
        max_bytes: Largest accepted download.
        timeout_s: Connect/read timeout for network I/O.
        max_seconds: Wall-clock limit on the whole download, if any.

    Returns:
        ``(path, None)`` for a local file, or ``(stream, duration)`` for a link: an open
        ``HttpStream`` that the caller must close, and the duration the site reported.

    Raises:
        SourceNotFound, UnsupportedInput, BlockedURL, UnreachableURL, TooLong, TooLarge.
    """
    text = source.strip()
    if not _looks_like_url(text):
        return _local_file(Path(text), max_bytes=max_bytes), None
    scheme = text.split(":", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise BlockedURL(
            f"Only http:// and https:// links can be fetched, not {scheme}://. Give a web link or upload the file."
        )
    resolved = resolve(
        text, allow_private=allow_private, max_duration_s=max_duration_s, max_bytes=max_bytes, timeout_s=timeout_s
    )
    stream = HttpStream(
        resolved.url,
        headers=resolved.headers,
        allow_private=allow_private,
        max_bytes=max_bytes,
        timeout_s=timeout_s,
        max_seconds=max_seconds,
    )
    logger.info("streaming url", extra={"host": urlsplit(resolved.url).hostname, "duration": resolved.duration})
    return cast(BinaryIO, stream), resolved.duration


def _local_file(path: Path, *, max_bytes: int) -> str:
    """The path of an uploaded file, once it is known to be a regular, small enough, non-playlist file."""
    if not path.exists():
        raise SourceNotFound("The uploaded file could not be found. Upload it again.")
    if not path.is_file():
        raise SourceNotFound("The source is not a regular file. Upload an audio or video file.")
    if path.suffix.lower() in PLAYLIST_SUFFIXES:
        raise UnsupportedInput(
            f"Playlist and list files ({path.suffix}) are not accepted. Upload the audio or video file itself."
        )
    if path.stat().st_size > max_bytes:
        raise TooLarge.over_limit(max_bytes)
    return str(path)

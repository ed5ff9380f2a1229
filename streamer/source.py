"""The input of a job: a link or a local file in, something ``streamer.media.open_media`` reads out.

``open_source`` is the one entry point the service calls. A link is resolved with yt-dlp
(``streamer.resolve``) and then downloaded as a stream (``streamer.download``), both behind the
SSRF guard (``streamer.guard``). A local file is read only when the caller allows it: the
``scribe`` command's own path, or the streamer's copy of an upload; a path named by a job from
the bus is refused. ``precheck`` refuses what can be refused before anything heavy starts. A link to a
live HLS stream is not opened as a file: ``open_source`` raises ``LiveLink`` for the service to read it
as a live session (``streamer.live_hls``).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import BinaryIO, NamedTuple, cast
from urllib.parse import urlsplit

from streamer.download import DEFAULT_TIMEOUT_S, HttpStream
from streamer.errors import BlockedURL, PlanLimit, SourceNotFound, TooLarge, UnsupportedInput
from streamer.guard import check_url
from streamer.media import open_media
from streamer.resolve import resolve

logger = logging.getLogger(__name__)

# Manifests and playlists make the demuxer open further URLs or files named inside them.
PLAYLIST_SUFFIXES = frozenset({".m3u8", ".m3u", ".pls", ".xspf", ".txt", ".ffconcat", ".concat", ".mpd", ".sdp"})


# A URI scheme (RFC 3986); one letter is a Windows drive, not a scheme.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")

# Schemes that always mean a link, even if a file of that name exists.
LINK_SCHEMES = frozenset({"http", "https", "data", "file", "upload"})

LOCAL_PATH_REFUSED = (
    "A job sent over the bus may name only an http(s) link or an upload (upload:<name>), not a path on the "
    "server. Store the file with scribe.client.upload and submit the upload it returns instead."
)


def scheme_of(source: str) -> str | None:
    """The URI scheme of ``source`` in lower case (``"https"``, ``"data"``), or None for a path."""
    match = _SCHEME.match(source.strip())
    return match.group(1).lower() if match else None


def is_local_path(source: str) -> bool:
    """Whether a user's input names a file: no scheme, or one that is not a link's and a file of
    that name exists (``take:2.wav``)."""
    scheme = scheme_of(source)
    return scheme is None or (scheme not in LINK_SCHEMES and Path(source).expanduser().exists())


def _require_http(scheme: str) -> None:
    if scheme in ("http", "https"):
        return
    if scheme == "data":
        raise BlockedURL(
            "data: URIs are not accepted: only http:// and https:// links are fetched. "
            "Save the audio to a file and send the file."
        )
    if scheme == "file":
        raise BlockedURL("file: links are not accepted. Give the file's path instead (for example ./clip.mp3).")
    raise BlockedURL(f"Only http:// and https:// links can be fetched, not {scheme}: links. Give a web link or a file.")


def precheck(source: str, *, allow_private: bool, max_duration_s: float, max_bytes: int) -> None:
    """Refuse what can be refused before a job starts: no servers, no model, no download.

    A path must be a regular, readable, small enough file that opens as audio within the
    duration limit; a link must be http(s) to a public address.

    Args:
        source: A local path or a link, as the user gave it.
        allow_private: Let loopback and private addresses through (tests only).
        max_duration_s: Longest accepted duration.
        max_bytes: Largest accepted file.

    Raises:
        InputError: The refusal, with its message.
    """
    if is_local_path(source):
        path = _local_file(Path(source).expanduser(), max_bytes=max_bytes)
        open_media(path, max_duration_s=max_duration_s).close()
        return
    check_link(source, allow_private=allow_private)


def check_link(url: str, *, allow_private: bool) -> None:
    """Refuse a link the streamer would refuse before fetching: not http(s), or not a public address.

    Never reads a local file: what a remote caller (the gateway) sends is checked here.

    Raises:
        BlockedURL, UnreachableURL: The refusal, with its message.
    """
    scheme = scheme_of(url)
    if scheme is None:
        raise BlockedURL("Give an http:// or https:// link, or upload the file.")
    _require_http(scheme)
    check_url(url.strip(), allow_private=allow_private)


class LiveLink(Exception):
    """Not a refusal: the link is a live HLS stream, to be read as a live session, not decoded as a file.

    Attributes:
        playlist: Its HLS playlist (a media or a master playlist), vetted by the guard.
        headers: HTTP headers the site wants on every request.
        title: The stream's title, when the site gave one.
    """

    def __init__(self, playlist: str, headers: dict[str, str], title: str | None) -> None:
        super().__init__(playlist)
        self.playlist = playlist
        self.headers = headers
        self.title = title


class Opened(NamedTuple):
    """A source opened: what to decode, and what the site said of it.

    Attributes:
        media: A local path, or an open ``HttpStream`` the caller must close.
        duration: Seconds, when the site reported them.
        title: The video's or page's title, when the site gave one.
        identity: The video's ``extractor:id`` on a site yt-dlp knows (``streamer.resolve.video_identity``).
    """

    media: str | BinaryIO
    duration: float | None = None
    title: str | None = None
    identity: str | None = None


def open_source(
    source: str,
    *,
    local: bool = False,
    allow_private: bool,
    max_duration_s: float,
    max_bytes: int,
    plan: PlanLimit | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_seconds: float | None = None,
) -> Opened:
    """Turn a submitted source into something ``streamer.media.open_media`` can read.

    Args:
        source: An http(s) link, or a local path.
        local: Whether a local path may be read (the ``scribe`` command's own file, or the
            streamer's copy of an upload); a job from the bus may not name one.
        allow_private: Let loopback and private addresses through (tests only).
        max_duration_s: Longest accepted duration.
        max_bytes: Largest accepted download.
        plan: The job's plan limit, when it is under ``max_duration_s``: a link the site says is longer
            is refused before the download.
        timeout_s: Connect/read timeout for network I/O.
        max_seconds: Wall-clock limit on the whole download, if any.

    Returns:
        A local file's path, or for a link an open ``HttpStream`` that the caller must close,
        with the duration and title the site reported.

    Raises:
        LiveLink: The link is a live HLS stream (nothing is opened).
        SourceNotFound, UnsupportedInput, BlockedURL, UnreachableURL, TooLong (OverPlanLimit), TooLarge.
    """
    text = source.strip()
    scheme = scheme_of(text)
    if scheme is None:
        if not local:
            raise BlockedURL(LOCAL_PATH_REFUSED)
        return Opened(_local_file(Path(text), max_bytes=max_bytes))
    _require_http(scheme)
    resolved = resolve(
        text,
        allow_private=allow_private,
        max_duration_s=max_duration_s,
        max_bytes=max_bytes,
        plan=plan,
        timeout_s=timeout_s,
    )
    if resolved.is_live:
        logger.info("live stream", extra={"host": urlsplit(resolved.url).hostname})
        raise LiveLink(resolved.url, resolved.headers, resolved.title)
    stream = HttpStream(
        resolved.url,
        headers=resolved.headers,
        allow_private=allow_private,
        max_bytes=max_bytes,
        timeout_s=timeout_s,
        max_seconds=max_seconds,
    )
    logger.info("streaming url", extra={"host": urlsplit(resolved.url).hostname, "duration": resolved.duration})
    return Opened(cast(BinaryIO, stream), resolved.duration, resolved.title, resolved.identity)


def _local_file(path: Path, *, max_bytes: int) -> str:
    """The path of a local file, once it is known to be a regular, readable, small enough, non-playlist file."""
    if not path.exists():
        raise SourceNotFound(f"There is no file at {path}. Check the path.")
    if path.is_dir():
        raise SourceNotFound(f"{path} is a folder, not a file. Give the path of an audio or video file.")
    if not path.is_file():
        raise SourceNotFound(f"{path} is not a regular file (a device or a pipe). Give an audio or video file.")
    if not os.access(path, os.R_OK):
        raise SourceNotFound(f"{path} cannot be read: permission denied. Check the file's permissions.")
    if path.suffix.lower() in PLAYLIST_SUFFIXES:
        raise UnsupportedInput(
            f"Playlist and list files ({path.suffix}) are not accepted. Upload the audio or video file itself."
        )
    if path.stat().st_size > max_bytes:
        raise TooLarge.over_limit(max_bytes)
    return str(path)

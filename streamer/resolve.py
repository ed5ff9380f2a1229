"""Link resolution: yt-dlp turns a page URL (or a plain media URL) into a direct media URL plus headers.

Every request yt-dlp makes, and every connection it opens, passes the SSRF guard. Playlists,
segmented recordings (HLS/DASH), live streams other than HLS, and media known to be over the limits
(the deployment's, or the job's plan's) are refused before any media byte is fetched; yt-dlp's errors
are mapped to ``streamer.errors.InputError`` reasons. A live HLS stream resolves to its playlist,
which ``streamer.hls`` reads (never FFmpeg).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yt_dlp
from yt_dlp.networking.exceptions import HTTPError as YtHTTPError
from yt_dlp.networking.exceptions import TransportError as YtTransportError
from yt_dlp.utils import DownloadCancelled, DownloadError, ExtractorError, GeoRestrictedError, UnsupportedError

from streamer.download import DEFAULT_TIMEOUT_S, known_network_reason, network_reason
from streamer.errors import InputError, PlanLimit, TooLarge, UnreachableURL, UnsupportedInput, duration_refusal
from streamer.guard import AddressPolicy, BlockedConnection, vet, vetting_connections

logger = logging.getLogger(__name__)

# yt-dlp protocols that are one plain HTTP GET of the whole file.
_DIRECT_PROTOCOLS = frozenset({"http", "https"})
_NOT_FOUND = "The media could not be found at this link. Check the link or upload the file instead."
_LIVE = (
    "This live stream is not offered as HLS (only HLS live streams can be transcribed for now). "
    "Send the recording once the stream has ended."
)
_UPCOMING = "This live stream has not started yet. Send the link again once it is on air."
_HLS_PROTOCOLS = frozenset({"m3u8", "m3u8_native"})


@dataclass(frozen=True)
class ResolvedMedia:
    """A direct media URL that yt-dlp found, with what is needed to fetch it.

    Attributes:
        url: Direct URL of the audio (or audio+video) file.
        headers: HTTP headers yt-dlp says the GET needs (User-Agent, Referer, cookies...).
        duration: Seconds, when the site says.
        title: The page or file title, when known.
        is_live: A live stream: ``url`` is its HLS playlist (a media or a master playlist), for ``streamer.hls``.
        identity: ``extractor:id`` of a video on a site yt-dlp knows (the source cache's key); None for a
            direct link (yt-dlp's generic extractor), whose file may change behind the same URL.
    """

    url: str
    headers: dict[str, str]
    duration: float | None
    title: str | None
    is_live: bool
    identity: str | None = None


class _YtLogger:
    """Routes yt-dlp's messages to our logger at debug level (its errors come back as exceptions)."""

    def debug(self, msg: str) -> None:
        logger.debug("yt-dlp: %s", msg)

    def info(self, msg: str) -> None:
        logger.debug("yt-dlp: %s", msg)

    def warning(self, msg: str) -> None:
        logger.debug("yt-dlp warning: %s", msg)

    def error(self, msg: str) -> None:
        logger.debug("yt-dlp error: %s", msg)


class _GuardedYoutubeDL(yt_dlp.YoutubeDL):
    """YoutubeDL whose every HTTP request (and where it ended up) passes the SSRF guard."""

    def __init__(self, params: dict[str, Any], *, policy: AddressPolicy) -> None:
        super().__init__(params)
        self._policy = policy

    def urlopen(self, req: Any) -> Any:
        # A str, a yt-dlp Request (.url) or a legacy urllib Request (.get_full_url()).
        url = req if isinstance(req, str) else getattr(req, "url", None) or req.get_full_url()
        vet(url, self._policy)
        response = super().urlopen(req)
        final = getattr(response, "url", None)
        if final:
            try:
                vet(final, self._policy)
            except InputError:
                response.close()
                raise
        return response


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it wraps (yt-dlp keeps originals in exc_info and cause)."""
    seen: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        exc_info = getattr(item, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) == 3:
            todo.append(exc_info[1])
        todo.extend([getattr(item, "cause", None), getattr(item, "reason", None), item.__cause__, item.__context__])
        todo.extend(getattr(item, "unexpected_errors", None) or [])
    return seen


def _network_error(causes: list[BaseException], host: str) -> InputError | None:
    """Our refusal, an HTTP error status, a known network failure or any transport failure among ``causes``."""
    for cause in causes:
        if isinstance(cause, InputError):
            return cause
        if isinstance(cause, BlockedConnection):
            return cause.blocked
    for cause in causes:
        if isinstance(cause, YtHTTPError):
            return UnreachableURL(
                f"The server {host} answered HTTP {cause.status}. "
                "Check that the link works in a browser and is public, then try again."
            )
    # yt-dlp wraps the socket error (TransportError -> URLError -> gaierror): say what the innermost
    # known failure was, not what the wrapper was.
    for cause in causes:
        known = known_network_reason(host, cause)
        if known is not None:
            return UnreachableURL(known)
    for cause in causes:
        if isinstance(cause, YtTransportError | OSError):
            return UnreachableURL(network_reason(host, cause))
    return None


def _map_yt_dlp_error(exc: BaseException, url: str) -> InputError:
    host = urlsplit(url).hostname or url
    causes = _causes(exc)
    network = _network_error(causes, host)
    if network is not None:
        return network
    for cause in causes:
        if isinstance(cause, UnsupportedError):
            return UnsupportedInput(
                "No audio or video was found at this link (it looks like an ordinary web page). "
                "Link to the media file or to a video page on a supported site, or upload the file."
            )
        if isinstance(cause, GeoRestrictedError):
            return UnreachableURL("This video is not available in the region the service runs in. Upload the file.")
    for cause in causes:
        if isinstance(cause, ExtractorError) and cause.expected:
            return UnreachableURL(f"The site refused to give the media: {cause.orig_msg}. Check the link.")
    return UnreachableURL(_NOT_FOUND)


def _is_live(info: dict[str, Any]) -> bool:
    return bool(info.get("is_live")) or info.get("live_status") == "is_live"


def _duration(info: dict[str, Any]) -> float | None:
    """Seconds, when the site says."""
    duration = info.get("duration")
    return float(duration) if isinstance(duration, int | float) else None


def _match_filter(
    refusals: list[InputError], *, max_duration_s: float, max_bytes: int, plan: PlanLimit | None = None
) -> Callable[..., str | None]:
    """yt-dlp's ``match_filter``: cancel on upcoming, too long or too large media, noting why in ``refusals``.

    A live stream passes: its formats are chosen, then ``_resolved_from_info`` takes its HLS playlist.
    """

    def match_filter(info: dict[str, Any], *, incomplete: bool = False) -> str | None:
        refusal: InputError | None = None
        too_long = duration_refusal(_duration(info), max_duration_s=max_duration_s, plan=plan)
        size = info.get("filesize") or info.get("filesize_approx")
        if info.get("live_status") == "is_upcoming":
            refusal = UnsupportedInput(_UPCOMING)
        elif _is_live(info):
            return None
        elif too_long is not None:
            refusal = too_long
        elif isinstance(size, int | float) and size > max_bytes:
            refusal = TooLarge.over_limit(max_bytes)
        if refusal is None:
            return None
        refusals.append(refusal)
        raise DownloadCancelled(refusal.reason)

    return match_filter


def _params(match_filter: Callable[..., str | None], *, max_bytes: int, timeout_s: float) -> dict[str, Any]:
    return {
        "format": "bestaudio/best",
        "noplaylist": True,
        "extract_flat": "in_playlist",  # never resolve a playlist's entries: we refuse playlists
        "playlistend": 1,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "skip_download": True,
        "max_filesize": max_bytes,
        "match_filter": match_filter,
        "socket_timeout": timeout_s,
        "extractor_retries": 0,
        "retries": 0,
        "cachedir": False,
        "logger": _YtLogger(),
        "color": "no_color",
        # Spelled out although they are yt-dlp's defaults: no local files, no credentials from this
        # machine, no formats a player could not use. No postprocessors, exec, external downloader,
        # cookie file or info file either: yt-dlp never downloads here (HttpStream does).
        "enable_file_urls": False,
        "usenetrc": False,
        "allow_unplayable_formats": False,
    }


def resolve(
    url: str,
    *,
    allow_private: bool,
    max_duration_s: float,
    max_bytes: int,
    plan: PlanLimit | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ResolvedMedia:
    """Find the direct audio URL behind a link with yt-dlp (no download).

    Playlists, segmented (HLS/DASH) recordings, live streams other than HLS, and media known to be over
    the duration (the deployment's or the plan's) or size limits are refused here, before any media byte
    is fetched. A live HLS stream resolves to its playlist (``is_live``).

    Args:
        url: The submitted link (a page on a supported site, or a plain media URL).
        allow_private: Let loopback and private addresses through (tests only).
        max_duration_s: Longest accepted duration.
        max_bytes: Largest accepted download.
        plan: The job's plan limit, when it is under ``max_duration_s``.
        timeout_s: Socket timeout for yt-dlp's requests.

    Returns:
        The direct media URL, its headers, and what the site says about it.

    Raises:
        BlockedURL, UnreachableURL, UnsupportedInput, TooLong (OverPlanLimit), TooLarge: see ``streamer.errors``.
    """
    policy = AddressPolicy(allow_private=allow_private)
    vet(url, policy)
    refusals: list[InputError] = []
    match_filter = _match_filter(refusals, max_duration_s=max_duration_s, max_bytes=max_bytes, plan=plan)
    params = _params(match_filter, max_bytes=max_bytes, timeout_s=timeout_s)
    try:
        with vetting_connections(policy), _GuardedYoutubeDL(params, policy=policy) as ydl:
            info = ydl.extract_info(url, download=False)
    except DownloadCancelled as exc:
        if refusals:
            raise refusals[0] from exc
        raise UnsupportedInput("This link was refused. Send a single, finished recording.") from exc
    except InputError:
        raise
    except (DownloadError, ExtractorError) as exc:
        mapped = _map_yt_dlp_error(exc, url)
        logger.info("yt-dlp refused url", extra={"error": type(mapped).__name__, "cause": str(exc)[:300]})
        raise mapped from exc
    if refusals:
        raise refusals[0]
    if not isinstance(info, dict):
        raise UnreachableURL(_NOT_FOUND)
    return _resolved_from_info(info, policy=policy, max_duration_s=max_duration_s, plan=plan)


def _resolved_from_info(
    info: dict[str, Any], *, policy: AddressPolicy, max_duration_s: float, plan: PlanLimit | None
) -> ResolvedMedia:
    if info.get("_type") in ("playlist", "multi_video") or info.get("entries") is not None:
        raise UnsupportedInput(
            "This link is a playlist or channel. Send a link to a single video or recording instead."
        )
    if info.get("live_status") == "is_upcoming":
        raise UnsupportedInput(_UPCOMING)
    if _is_live(info):
        return _live_playlist(info, policy=policy)
    duration = _duration(info)
    too_long = duration_refusal(duration, max_duration_s=max_duration_s, plan=plan)
    if too_long is not None:
        raise too_long
    chosen = info
    requested = info.get("requested_formats")
    if requested:  # "bestaudio/best" picks one format, but be safe: take the audio one
        chosen = next((f for f in requested if f.get("acodec") not in (None, "none")), requested[0])
    media_url = chosen.get("url")
    protocol = str(chosen.get("protocol") or urlsplit(str(media_url or "")).scheme)
    if not media_url:
        raise UnreachableURL("No downloadable audio was found at this link. Upload the file instead.")
    if protocol not in _DIRECT_PROTOCOLS:
        raise UnsupportedInput(
            "This site only offers the media as a segmented stream (HLS/DASH), which is not supported. "
            "Download the file and upload it instead."
        )
    vet(media_url, policy)
    headers = {str(k): str(v) for k, v in (chosen.get("http_headers") or info.get("http_headers") or {}).items()}
    title = info.get("title")
    return ResolvedMedia(
        url=media_url,
        headers=headers,
        duration=duration,
        title=str(title) if title else None,
        is_live=False,
        identity=video_identity(info),
    )


def _live_playlist(info: dict[str, Any], *, policy: AddressPolicy) -> ResolvedMedia:
    """A live stream's HLS playlist: the chosen format's if it is HLS, else the first HLS format with audio.

    An audio-only format's own media playlist is taken; otherwise the master playlist, whose variant of the
    lowest bandwidth ``streamer.hls`` reads (yt-dlp's "best" would be the heaviest video).
    """
    candidates = [*(info.get("requested_formats") or []), info, *(info.get("formats") or [])]
    hls = next(
        (f for f in candidates if f.get("protocol") in _HLS_PROTOCOLS and f.get("url") and f.get("acodec") != "none"),
        None,
    )
    if hls is None:
        raise UnsupportedInput(_LIVE)
    playlist = str(hls["url"] if hls.get("vcodec") == "none" else hls.get("manifest_url") or hls["url"])
    vet(playlist, policy)
    headers = {str(k): str(v) for k, v in (hls.get("http_headers") or info.get("http_headers") or {}).items()}
    title = info.get("title")
    return ResolvedMedia(
        url=playlist, headers=headers, duration=None, title=str(title) if title else None, is_live=True
    )


def video_identity(info: dict[str, Any]) -> str | None:
    """``extractor:id`` of a video on a site yt-dlp knows; None for a direct link or a video without an id."""
    extractor, video_id = info.get("extractor_key"), info.get("id")
    if not extractor or not video_id or str(extractor).lower() == "generic":
        return None
    return f"{extractor}:{video_id}"

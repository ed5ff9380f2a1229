"""Getting media bytes from where the user said they are, without letting them aim the server elsewhere.

- ``check_url``: the SSRF guard. http(s) only; every address the host resolves to must be public.
- ``resolve``: yt-dlp turns a page URL (or a plain media URL) into a direct media URL plus headers.
- ``HttpStream``: a non-seekable file-like over one HTTP GET, for PyAV to decode while it downloads.
  It connects only to the addresses it vetted (no second DNS lookup to rebind) and checks every
  redirect hop.
- ``open_source``: the one entry point the service calls; a local path or a URL in, something
  ``streamer.audio.open_media`` accepts out.

Known gap: yt-dlp makes its own metadata requests. Each request URL and each final (post-redirect)
URL is checked, but a redirect hop inside one of those requests is followed by yt-dlp before we see
it (its response is then discarded). Deployments should also deny the streamer egress to private
ranges at the network level.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Collection, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import urljoin, urlsplit

import yt_dlp
from yt_dlp.networking.exceptions import HTTPError as YtHTTPError
from yt_dlp.networking.exceptions import TransportError as YtTransportError
from yt_dlp.utils import DownloadCancelled, DownloadError, ExtractorError, GeoRestrictedError, UnsupportedError

from streamer.errors import (
    BlockedURL,
    InputError,
    SourceNotFound,
    TooLarge,
    TooLong,
    UnreachableURL,
    UnsupportedInput,
)

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
DEFAULT_TIMEOUT_S = 20.0
# Manifests and playlists make the demuxer open further URLs or files named inside them.
PLAYLIST_SUFFIXES = frozenset({".m3u8", ".m3u", ".pls", ".xspf", ".txt", ".ffconcat", ".concat", ".mpd", ".sdp"})
# yt-dlp protocols that are one plain HTTP GET of the whole file.
_DIRECT_PROTOCOLS = frozenset({"http", "https"})
# Shared address space (RFC 6598); ipaddress does not flag it private on every Python version.
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


# --- SSRF guard -------------------------------------------------------------------------------------


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, Teredo), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def is_public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether the server may connect to ``ip`` on a user's behalf.

    Refuses loopback, private, link-local, CGNAT, multicast, reserved, unspecified, documentation
    ranges, IPv6 ULA and site-local, and IPv6 forms that embed a refused IPv4 address.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public_address(embedded)
        if ip.is_site_local:
            return False
    if ip in _CGNAT:
        return False
    return ip.is_global and not (
        ip.is_multicast or ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_unspecified
    )


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses the server may connect to on a user's behalf.

    Attributes:
        allow_private: Allow every address (tests, trusted deployments).
        allowed_networks: Non-public networks allowed anyway, e.g. ``("127.0.0.1/32",)`` for one
            local test server or an internal media host, while the rest stays blocked.
    """

    allow_private: bool = False
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def of(cls, allow_private: bool, allowed_networks: Collection[str] = ()) -> AddressPolicy:
        """Build a policy from settings-style values (CIDR strings)."""
        return cls(allow_private, tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks))

    def allows(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether a connection to ``ip`` is allowed."""
        return self.allow_private or is_public_address(ip) or any(ip in net for net in self.allowed_networks)


def _blocked(host: str) -> BlockedURL:
    return BlockedURL(
        f"The link points to a private or local network address ({host}), which this service does not "
        "fetch. Use a public link, or upload the file instead."
    )


@dataclass(frozen=True)
class _Target:
    """A URL split into what a connection needs, with the addresses it may connect to."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[tuple[int, tuple[Any, ...]], ...] = field(repr=False)


def _vet(url: str, policy: AddressPolicy) -> _Target:
    """Parse ``url``, resolve its host once and refuse it unless every address is allowed."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise BlockedURL(f"The address {url!r} is not a valid URL. Check it and try again.") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = f"{scheme}://" if scheme else "without http:// or https://"
        raise BlockedURL(
            f"Only http:// and https:// links can be fetched, not {shown}. Give a web link or upload the file."
        )
    host = parts.hostname
    if not host:
        raise BlockedURL(f"The link {url!r} has no server name. Check it and try again.")
    port = port or (443 if scheme == "https" else 80)
    infos = _resolve_host(host, port)
    for _family, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if not policy.allows(ip):
            logger.warning("blocked url", extra={"host": host, "address": str(ip)})
            raise _blocked(host)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return _Target(scheme=scheme, host=host, port=port, path=path, addresses=tuple(infos))


def _resolve_host(host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
    """``(family, sockaddr)`` for every address of ``host``; an IP literal needs no DNS."""
    try:
        literal = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        literal = None
    if literal is not None:
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        return [(family, (str(literal), port))]
    try:
        return [(info[0], info[4]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
    except (socket.gaierror, UnicodeError) as exc:
        raise UnreachableURL(
            f"The server name {host!r} could not be found. Check the link for typos and try again."
        ) from exc


def check_url(url: str, *, allow_private: bool, allowed_networks: Collection[str] = ()) -> None:
    """Refuse a URL the server must not fetch.

    Only http and https are allowed. The host is resolved (``socket.getaddrinfo``) and the URL is
    refused if any of its addresses is not public (see ``is_public_address``).

    Args:
        url: The URL a user submitted, or one found while following it.
        allow_private: Let loopback and private addresses through (tests, trusted deployments).
        allowed_networks: CIDR networks let through even when not public (see ``AddressPolicy``).

    Raises:
        BlockedURL: Bad scheme, no host, or a non-public address.
        UnreachableURL: The host name does not resolve.
    """
    _vet(url, AddressPolicy.of(allow_private, allowed_networks))


# yt-dlp opens its own connections (and follows redirects inside urllib, even to ftp://), so while
# resolve() runs, every socket.connect() made in its context is vetted through an audit hook (PEP 578).
# The hook is process-wide once installed but does nothing outside a resolve() call.
_connect_policy: ContextVar[AddressPolicy | None] = ContextVar("streamer_connect_policy", default=None)
_hook_lock = threading.Lock()
_hook_installed = False


class _BlockedConnection(ConnectionRefusedError):
    """Raised from socket.connect() for a refused address; an OSError so libraries treat it as a failed connect."""

    def __init__(self, blocked: BlockedURL) -> None:
        super().__init__(blocked.reason)
        self.blocked = blocked


def _audit_connect(event: str, args: tuple[Any, ...]) -> None:
    if event != "socket.connect":
        return
    policy = _connect_policy.get()
    if policy is None or policy.allow_private:
        return
    address = args[1] if len(args) > 1 else None
    if not isinstance(address, tuple) or len(address) < 2:
        return  # AF_UNIX and friends
    host = str(address[0])
    try:
        infos = _resolve_host(host, int(address[1]))
    except UnreachableURL:
        return  # the connect itself will fail the same way
    for _family, sockaddr in infos:
        if not policy.allows(ipaddress.ip_address(str(sockaddr[0]).split("%")[0])):
            logger.warning("blocked connection", extra={"address": host})
            raise _BlockedConnection(_blocked(host))


def _install_connect_guard() -> None:
    global _hook_installed
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_audit_connect)
            _hook_installed = True


# --- Streaming HTTP GET -----------------------------------------------------------------------------


def _connect_any(target: _Target, timeout_s: float) -> socket.socket:
    """Open a TCP connection to one of the vetted addresses (never a fresh DNS answer)."""
    last: OSError | None = None
    for family, sockaddr in target.addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        try:
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError("no address to connect to")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, target: _Target, timeout_s: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout_s)
        self._target = target
        self._timeout_s = timeout_s

    def connect(self) -> None:
        self.sock = _connect_any(self._target, self._timeout_s)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, target: _Target, timeout_s: float) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(target.host, target.port, timeout=timeout_s, context=self._tls)
        self._target = target
        self._timeout_s = timeout_s

    def connect(self) -> None:
        sock = _connect_any(self._target, self._timeout_s)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self._target.host)


# Headers that must not follow a redirect to another host.
_CREDENTIAL_HEADERS = frozenset({"cookie", "authorization", "proxy-authorization"})


class HttpStream(io.RawIOBase):
    """Read-only, non-seekable file-like over one HTTP GET, read while it downloads.

    Redirects are followed by hand (at most ``max_redirects``), each hop vetted by the SSRF guard,
    and every connection goes to an address that was vetted. Reading past ``max_bytes`` raises
    ``TooLarge``; a stalled connection raises ``UnreachableURL`` after ``timeout_s``; the whole
    download is cut off after ``max_seconds`` when given.

    Attributes:
        url: The final URL after redirects.
        content_type: The response's Content-Type (lower case, without parameters), or "".
        content_length: The response's Content-Length, or None.
        bytes_read: Body bytes received so far.
        finished: True once the server's body has been read to the end.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        allow_private: bool,
        allowed_networks: Collection[str] = (),
        max_bytes: int,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_seconds: float | None = None,
        max_redirects: int = MAX_REDIRECTS,
    ) -> None:
        """Connect, follow redirects and read the response headers.

        Raises:
            BlockedURL: A hop is not http(s) or points to a non-public address.
            UnreachableURL: DNS failure, refused connection, timeout, HTTP error status, redirect loop.
            TooLarge: The announced Content-Length is over ``max_bytes``.
        """
        super().__init__()
        self.max_bytes = max_bytes
        self.bytes_read = 0
        self.finished = False
        self._timeout_s = timeout_s
        self._deadline = None if max_seconds is None else time.monotonic() + max_seconds
        self._pending = b""
        self._conn: http.client.HTTPConnection | None = None
        self._response: http.client.HTTPResponse | None = None
        self.url = url
        self.content_type = ""
        self.content_length: int | None = None
        policy = AddressPolicy.of(allow_private, allowed_networks)
        self._open(url, dict(headers or {}), policy=policy, max_redirects=max_redirects)

    def _open(self, url: str, headers: dict[str, str], *, policy: AddressPolicy, max_redirects: int) -> None:
        headers = {k: v for k, v in headers.items() if k.lower() not in ("accept-encoding", "host", "range")}
        headers["Accept-Encoding"] = "identity"  # PyAV needs the raw bytes; no gzip bombs either
        host = None
        for _hop in range(max_redirects + 1):
            target = _vet(url, policy)
            if host is not None and target.host != host:
                headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
            host = target.host
            conn: http.client.HTTPConnection = (
                _PinnedHTTPSConnection(target, self._timeout_s)
                if target.scheme == "https"
                else _PinnedHTTPConnection(target, self._timeout_s)
            )
            try:
                conn.request("GET", target.path, headers=headers)
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise UnreachableURL(_network_reason(target.host, exc)) from exc
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                conn.close()
                if not location:
                    raise UnreachableURL(
                        f"The server {target.host} sent a redirect without a target. Try another link."
                    )
                url = urljoin(url, location)
                logger.info("following redirect", extra={"status": response.status, "to_host": urlsplit(url).hostname})
                continue
            if response.status != 200:
                conn.close()
                raise UnreachableURL(
                    f"The server {target.host} answered HTTP {response.status} ({response.reason}). "
                    "Check that the link works in a browser and is public, then try again."
                )
            self._conn, self._response, self.url = conn, response, url
            self.content_type = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
            length = response.getheader("Content-Length")
            self.content_length = int(length) if length and length.isdigit() else None
            if self.content_length is not None and self.content_length > self.max_bytes:
                self.close()
                raise TooLarge.over_limit(self.max_bytes)
            return
        raise UnreachableURL(f"The link redirects more than {max_redirects} times. Give the final link instead.")

    def readable(self) -> bool:
        return True

    def peek(self, size: int = 4096) -> bytes:
        """Up to ``size`` bytes from the current position without consuming them (fewer only at the end)."""
        while len(self._pending) < size and not self.finished:
            chunk = self._read_network(size - len(self._pending))
            if not chunk:
                break
            self._pending += chunk
        return self._pending[:size]

    def readinto(self, buffer: Any) -> int:
        """Read body bytes into ``buffer``; 0 means the body has ended."""
        view = memoryview(buffer).cast("B")
        if self._pending:
            n = min(len(view), len(self._pending))
            view[:n] = self._pending[:n]
            self._pending = self._pending[n:]
            return n
        chunk = self._read_network(len(view))
        view[: len(chunk)] = chunk
        return len(chunk)

    def _read_network(self, size: int) -> bytes:
        if self.finished or self._response is None or size <= 0:
            return b""
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise UnreachableURL("The download took too long and was stopped. Try a shorter file or upload it instead.")
        try:
            chunk = self._response.read1(size)
        except (OSError, http.client.HTTPException) as exc:
            raise UnreachableURL(
                "The download was interrupted before the end of the file. Try again, or upload the file instead."
            ) from exc
        if not chunk:
            self.finished = True
            self._release()
            return b""
        self.bytes_read += len(chunk)
        if self.bytes_read > self.max_bytes:
            raise TooLarge.over_limit(self.max_bytes)
        if self._response.isclosed():  # http.client closes as soon as Content-Length bytes arrived
            self.finished = True
        return chunk

    def _release(self) -> None:
        if self._response is not None:
            self._response.close()
        if self._conn is not None:
            self._conn.close()

    def close(self) -> None:
        """Drop the connection (the download stops)."""
        if not self.closed:
            self._release()
        super().close()


def _network_reason(host: str, exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"The server {host} did not answer in time. Try again later or check the link."
    if isinstance(exc, ConnectionRefusedError):
        return f"The server {host} refused the connection. Check the link and try again later."
    if isinstance(exc, ssl.SSLError):
        return f"A secure connection to {host} could not be set up (TLS error). Check the link."
    return f"The server {host} could not be reached. Check the link and try again later."


# --- yt-dlp -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedMedia:
    """A direct media URL that yt-dlp found, with what is needed to fetch it.

    Attributes:
        url: Direct URL of the audio (or audio+video) file.
        headers: HTTP headers yt-dlp says the GET needs (User-Agent, Referer, cookies...).
        duration: Seconds, when the site says.
        title: The page or file title, when known.
        is_live: Always False here (live streams are refused); kept for the service's logs.
    """

    url: str
    headers: dict[str, str]
    duration: float | None
    title: str | None
    is_live: bool


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
        _vet(req if isinstance(req, str) else req.url, self._policy)
        response = super().urlopen(req)
        final = getattr(response, "url", None)
        if final:
            try:
                _vet(final, self._policy)
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


def _map_yt_dlp_error(exc: BaseException, url: str) -> InputError:
    host = urlsplit(url).hostname or url
    causes = _causes(exc)
    for cause in causes:
        if isinstance(cause, InputError):
            return cause
        if isinstance(cause, _BlockedConnection):
            return cause.blocked
    for cause in causes:
        if isinstance(cause, YtHTTPError):
            return UnreachableURL(
                f"The server {host} answered HTTP {cause.status}. "
                "Check that the link works in a browser and is public, then try again."
            )
    for cause in causes:
        if isinstance(cause, YtTransportError | OSError):
            inner = cause.cause if isinstance(cause, YtTransportError) else cause
            return UnreachableURL(_network_reason(host, inner if isinstance(inner, BaseException) else cause))
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
    return UnreachableURL("The media could not be found at this link. Check the link or upload the file instead.")


def resolve(
    url: str,
    *,
    allow_private: bool,
    max_duration_s: float,
    max_bytes: int,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    allowed_networks: Collection[str] = (),
) -> ResolvedMedia:
    """Find the direct audio URL behind a link with yt-dlp (no download).

    Playlists, live streams, segmented (HLS/DASH) media, and media known to be over the duration or
    size limits are refused here, before any media byte is fetched.

    Args:
        url: The submitted link (a page on a supported site, or a plain media URL).
        allow_private: Let loopback and private addresses through (tests only).
        max_duration_s: Longest accepted duration.
        max_bytes: Largest accepted download.
        timeout_s: Socket timeout for yt-dlp's requests.
        allowed_networks: CIDR networks let through even when not public (see ``AddressPolicy``).

    Returns:
        The direct media URL, its headers, and what the site says about it.

    Raises:
        BlockedURL, UnreachableURL, UnsupportedInput, TooLong, TooLarge: see ``streamer.errors``.
    """
    policy = AddressPolicy.of(allow_private, allowed_networks)
    _vet(url, policy)
    _install_connect_guard()
    refusals: list[InputError] = []

    def match_filter(info: dict[str, Any], *, incomplete: bool = False) -> str | None:
        refusal: InputError | None = None
        duration = info.get("duration")
        size = info.get("filesize") or info.get("filesize_approx")
        if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
            refusal = UnsupportedInput(
                "This is a live stream, which cannot be transcribed. Send the recording once the stream has ended."
            )
        elif isinstance(duration, int | float) and duration > max_duration_s:
            refusal = TooLong.over_limit(float(duration), max_duration_s)
        elif isinstance(size, int | float) and size > max_bytes:
            refusal = TooLarge.over_limit(max_bytes)
        if refusal is None:
            return None
        refusals.append(refusal)
        raise DownloadCancelled(refusal.reason)

    params: dict[str, Any] = {
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
    }
    token = _connect_policy.set(policy)
    try:
        with _GuardedYoutubeDL(params, policy=policy) as ydl:
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
    finally:
        _connect_policy.reset(token)
    if refusals:
        raise refusals[0]
    if not isinstance(info, dict):
        raise UnreachableURL("The media could not be found at this link. Check the link or upload the file instead.")
    return _resolved_from_info(info, policy=policy, max_duration_s=max_duration_s)


def _resolved_from_info(info: dict[str, Any], *, policy: AddressPolicy, max_duration_s: float) -> ResolvedMedia:
    if info.get("_type") in ("playlist", "multi_video") or info.get("entries") is not None:
        raise UnsupportedInput(
            "This link is a playlist or channel. Send a link to a single video or recording instead."
        )
    if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
        raise UnsupportedInput(
            "This is a live stream, which cannot be transcribed. Send the recording once the stream has ended."
        )
    duration = info.get("duration")
    duration = float(duration) if isinstance(duration, int | float) else None
    if duration is not None and duration > max_duration_s:
        raise TooLong.over_limit(duration, max_duration_s)
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
    _vet(media_url, policy)
    headers = {str(k): str(v) for k, v in (chosen.get("http_headers") or info.get("http_headers") or {}).items()}
    title = info.get("title")
    return ResolvedMedia(
        url=media_url,
        headers=headers,
        duration=duration,
        title=str(title) if title else None,
        is_live=False,
    )


# --- Entry point ------------------------------------------------------------------------------------


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
    allowed_networks: Collection[str] = (),
) -> tuple[str | BinaryIO, float | None]:
    """Turn a submitted source into something ``streamer.audio.open_media`` can read.

    Args:
        source: A local path (an upload the gateway stored) or an http(s) link.
        allow_private: Let loopback and private addresses through (tests only).
        max_duration_s: Longest accepted duration.
        max_bytes: Largest accepted download.
        timeout_s: Connect/read timeout for network I/O.
        max_seconds: Wall-clock limit on the whole download, if any.
        allowed_networks: CIDR networks let through even when not public (see ``AddressPolicy``).

    Returns:
        ``(path, None)`` for a local file, or ``(stream, duration)`` for a link: an open
        ``HttpStream`` that the caller must close, and the duration the site reported.

    Raises:
        SourceNotFound, UnsupportedInput, BlockedURL, UnreachableURL, TooLong, TooLarge.
    """
    text = source.strip()
    if _looks_like_url(text):
        scheme = text.split(":", 1)[0].lower()
        if scheme not in ("http", "https"):
            raise BlockedURL(
                f"Only http:// and https:// links can be fetched, not {scheme}://. Give a web link or upload the file."
            )
        resolved = resolve(
            text,
            allow_private=allow_private,
            allowed_networks=allowed_networks,
            max_duration_s=max_duration_s,
            max_bytes=max_bytes,
            timeout_s=timeout_s,
        )
        stream = HttpStream(
            resolved.url,
            headers=resolved.headers,
            allow_private=allow_private,
            allowed_networks=allowed_networks,
            max_bytes=max_bytes,
            timeout_s=timeout_s,
            max_seconds=max_seconds,
        )
        logger.info("streaming url", extra={"host": urlsplit(resolved.url).hostname, "duration": resolved.duration})
        return cast(BinaryIO, stream), resolved.duration
    path = Path(text)
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
    return str(path), None

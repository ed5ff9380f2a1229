"""The download: one HTTP GET as a non-seekable file-like that PyAV decodes while it arrives.

``HttpStream`` connects only to the addresses the SSRF guard vetted (no second DNS lookup to
rebind), follows redirects by hand and vets every hop.
"""

from __future__ import annotations

import errno
import http.client
import io
import logging
import socket
import ssl
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

from streamer.errors import TooLarge, UnreachableURL
from streamer.guard import AddressPolicy, BlockedConnection, Target, lookup_failure_reason, vet

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
DEFAULT_TIMEOUT_S = 20.0
_REDIRECTS = (301, 302, 303, 307, 308)
# Headers that must not follow a redirect to another host.
_CREDENTIAL_HEADERS = frozenset({"cookie", "authorization", "proxy-authorization"})
_NO_NETWORK = frozenset({errno.ENETUNREACH, errno.ENETDOWN})
_NO_ROUTE = frozenset({errno.EHOSTUNREACH, errno.EHOSTDOWN})


def _connect_any(target: Target, timeout_s: float) -> socket.socket:
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
    def __init__(self, target: Target, timeout_s: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout_s)
        self._target = target
        self._timeout_s = timeout_s

    def connect(self) -> None:
        self.sock = _connect_any(self._target, self._timeout_s)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, target: Target, timeout_s: float) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(target.host, target.port, timeout=timeout_s, context=self._tls)
        self._target = target
        self._timeout_s = timeout_s

    def connect(self) -> None:
        sock = _connect_any(self._target, self._timeout_s)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self._target.host)


def network_reason(host: str, exc: BaseException) -> str:
    """What to tell the user when a connection to ``host`` failed with ``exc``.

    Args:
        host: The server's name, as in the link.
        exc: The network error.

    Returns:
        A sentence saying what went wrong and what to do.
    """
    known = known_network_reason(host, exc)
    if known is not None:
        return known
    return f"The server {host} could not be reached. Check the link and try again later."


def known_network_reason(host: str, exc: BaseException) -> str | None:
    """What to tell the user about ``exc``, when it is a network failure this function knows.

    Tells apart what the user can fix (a name that does not exist, a server that refuses) from what
    they cannot (this machine has no network or no working DNS).

    Args:
        host: The server's name, as in the link.
        exc: Any exception; only network errors get a sentence.

    Returns:
        A sentence saying what went wrong and what to do, or None for any other exception.
    """
    if isinstance(exc, BlockedConnection):
        return exc.blocked.reason
    if isinstance(exc, socket.gaierror):
        return lookup_failure_reason(host, exc)
    if isinstance(exc, TimeoutError):
        return f"The server {host} did not answer in time. Try again later or check the link."
    if isinstance(exc, ConnectionRefusedError):
        return f"The server {host} refused the connection. Check the link and try again later."
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"The server {host} sent a certificate that could not be verified, so no secure connection was "
            "made (TLS error). Check the link."
        )
    if isinstance(exc, ssl.SSLError):
        return f"A secure connection to {host} could not be set up (TLS error). Check the link."
    if isinstance(exc, OSError) and exc.errno in _NO_NETWORK:
        return (
            f"This service could not reach {host}: its machine has no network connection. "
            "The link is probably fine; try again later."
        )
    if isinstance(exc, OSError) and exc.errno in _NO_ROUTE:
        return f"This service found no network route to {host}: its own network or the site's is down. Try again later."
    return None


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
        policy = AddressPolicy(allow_private=allow_private)
        self._open(url, dict(headers or {}), policy=policy, max_redirects=max_redirects)

    def _open(self, url: str, headers: dict[str, str], *, policy: AddressPolicy, max_redirects: int) -> None:
        headers = {k: v for k, v in headers.items() if k.lower() not in ("accept-encoding", "host", "range")}
        headers["Accept-Encoding"] = "identity"  # PyAV needs the raw bytes; no gzip bombs either
        host = None
        for _hop in range(max_redirects + 1):
            target = vet(url, policy)
            if host is not None and target.host != host:
                headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
            host = target.host
            conn, response = self._get(target, headers)
            if response.status in _REDIRECTS:
                url = self._redirect_target(url, target, conn, response)
                continue
            self._accept(url, target, conn, response)
            return
        raise UnreachableURL(f"The link redirects more than {max_redirects} times. Give the final link instead.")

    def _get(
        self, target: Target, headers: dict[str, str]
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send the GET to a vetted address and read the response headers."""
        conn: http.client.HTTPConnection = (
            _PinnedHTTPSConnection(target, self._timeout_s)
            if target.scheme == "https"
            else _PinnedHTTPConnection(target, self._timeout_s)
        )
        try:
            conn.request("GET", target.path, headers=headers)
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise UnreachableURL(network_reason(target.host, exc)) from exc

    @staticmethod
    def _redirect_target(
        url: str, target: Target, conn: http.client.HTTPConnection, response: http.client.HTTPResponse
    ) -> str:
        """The absolute URL a redirect response points to (the connection is closed)."""
        location = response.getheader("Location")
        conn.close()
        if not location:
            raise UnreachableURL(f"The server {target.host} sent a redirect without a target. Try another link.")
        url = urljoin(url, location)
        logger.info("following redirect", extra={"status": response.status, "to_host": urlsplit(url).hostname})
        return url

    def _accept(
        self, url: str, target: Target, conn: http.client.HTTPConnection, response: http.client.HTTPResponse
    ) -> None:
        """Keep a final response to read the body from, or refuse it."""
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

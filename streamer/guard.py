"""The SSRF guard: the server connects on a user's behalf to public addresses only.

- ``check_url`` / ``vet``: http(s) only, and every address the host resolves to must be allowed.
  ``vet`` also returns those addresses, so a caller connects to them and not to a second DNS
  answer (no rebinding between the check and the connection).
- ``vetting_connections``: while yt-dlp resolves a link, every ``socket.connect()`` made in that
  context is vetted against the address actually dialled, redirect hops inside yt-dlp included.

Connections opened outside Python's socket module (a C library such as curl_cffi, if installed)
are not seen by the audit hook. Deployments should also deny the streamer egress to private
ranges at the network level.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from streamer.errors import BlockedURL, UnreachableURL

logger = logging.getLogger(__name__)

# Shared address space (RFC 6598); ipaddress does not flag it private on every Python version.
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
SockAddrs = tuple[tuple[int, tuple[Any, ...]], ...]


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


def is_public_address(ip: Address) -> bool:
    """Whether the server may connect to ``ip`` on a user's behalf.

    Refuses loopback, private, link-local, CGNAT, multicast, reserved, unspecified, documentation
    ranges, IPv6 ULA and site-local, and IPv6 forms that embed a refused IPv4 address.

    Args:
        ip: The address to judge.

    Returns:
        True when the address is public.
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
    """

    allow_private: bool = False

    def allows(self, ip: Address) -> bool:
        """Whether a connection to ``ip`` is allowed.

        Args:
            ip: The address about to be connected to.

        Returns:
            True when the policy lets the connection through.
        """
        return self.allow_private or is_public_address(ip)


def blocked(host: str) -> BlockedURL:
    """The refusal for a host that resolves to an address the policy does not allow.

    Args:
        host: The host name or address, as the user will recognise it.

    Returns:
        The error to raise.
    """
    return BlockedURL(
        f"The link points to a private or local network address ({host}), which this service does not "
        "fetch. Use a public link, or upload the file instead."
    )


@dataclass(frozen=True)
class Target:
    """A vetted URL split into what a connection needs, with the addresses it may connect to.

    Attributes:
        scheme: ``"http"`` or ``"https"``.
        host: The host name (for the Host header and TLS).
        port: The port, defaulted from the scheme.
        path: Path and query, as the request line needs them.
        addresses: ``(family, sockaddr)`` of every address the host resolved to, all allowed.
    """

    scheme: str
    host: str
    port: int
    path: str
    addresses: SockAddrs = field(repr=False)


def vet(url: str, policy: AddressPolicy) -> Target:
    """Parse ``url``, resolve its host once and refuse it unless every address is allowed.

    Args:
        url: The URL about to be fetched.
        policy: Which addresses may be connected to.

    Returns:
        The URL's parts and the vetted addresses to connect to.

    Raises:
        BlockedURL: Bad scheme, no host, or an address the policy does not allow.
        UnreachableURL: The host name does not resolve.
    """
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
    infos = resolve_host(host, port)
    for _family, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if not policy.allows(ip):
            logger.warning("blocked url", extra={"host": host, "address": str(ip)})
            raise blocked(host)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme=scheme, host=host, port=port, path=path, addresses=tuple(infos))


def resolve_host(host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
    """``(family, sockaddr)`` for every address of ``host``; an IP literal needs no DNS.

    Args:
        host: A host name or an IP literal.
        port: The port to put in each sockaddr.

    Returns:
        One entry per address.

    Raises:
        UnreachableURL: The host name does not resolve.
    """
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


def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse a URL the server must not fetch.

    Only http and https are allowed. The host is resolved (``socket.getaddrinfo``) and the URL is
    refused if any of its addresses is not public (see ``is_public_address``).

    Args:
        url: The URL a user submitted, or one found while following it.
        allow_private: Let loopback and private addresses through (tests, trusted deployments).

    Raises:
        BlockedURL: Bad scheme, no host, or a non-public address.
        UnreachableURL: The host name does not resolve.
    """
    vet(url, AddressPolicy(allow_private=allow_private))


# --- Every connection yt-dlp makes -------------------------------------------------------------------

# Still needed: yt-dlp follows redirects inside each request handler (urllib's RedirectHandler in
# yt_dlp/networking/_urllib.py; the requests and curl_cffi handlers follow them in their libraries)
# and offers no per-hop callback, and a URL check per hop would resolve DNS again anyway. So while
# resolve() runs, a PEP 578 audit hook vets the address each socket.connect() actually dials; the
# hook is process-wide once installed (hooks cannot be removed) but idle outside vetting_connections().
_connect_policy: ContextVar[AddressPolicy | None] = ContextVar("streamer_connect_policy", default=None)
_hook_lock = threading.Lock()
_hook_installed = False


class BlockedConnection(ConnectionRefusedError):
    """Raised from socket.connect() for a refused address; an OSError so libraries treat it as a failed connect.

    Attributes:
        blocked: The refusal to report to the user.
    """

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
        infos = resolve_host(host, int(address[1]))
    except UnreachableURL:
        return  # the connect itself will fail the same way
    for _family, sockaddr in infos:
        if not policy.allows(ipaddress.ip_address(str(sockaddr[0]).split("%")[0])):
            logger.warning("blocked connection", extra={"address": host})
            raise BlockedConnection(blocked(host))


def _install_connect_guard() -> None:
    global _hook_installed
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_audit_connect)
            _hook_installed = True


@contextmanager
def vetting_connections(policy: AddressPolicy) -> Iterator[None]:
    """Vet every ``socket.connect()`` made in this context (thread or task) against ``policy``.

    A refused connect raises ``BlockedConnection``.

    Args:
        policy: Which addresses may be connected to.
    """
    _install_connect_guard()
    token = _connect_policy.set(policy)
    try:
        yield
    finally:
        _connect_policy.reset(token)

"""The SSRF guard: the server connects on a user's behalf to public addresses only.

- ``check_url`` / ``vet``: http(s) only, no credentials or other tricks in the server part, and
  every address the host resolves to must be allowed. The host is judged as the C library will read
  it: IDNA, a trailing dot, and the legacy IPv4 spellings ``inet_aton`` accepts (``127.1``,
  ``0177.0.0.1``, ``0x7f000001``, ``2130706433``) all come down to the address that would be dialled.
  ``vet`` also returns those addresses, so a caller connects to them and not to a second DNS answer
  (no rebinding between the check and the connection).
- ``vetting_connections``: while yt-dlp resolves a link, every ``socket.connect()`` made in that
  context is vetted against the address actually dialled, redirect hops inside yt-dlp included.

Connections opened outside Python's socket module (a C library such as curl_cffi, if installed)
are not seen by the audit hook. Deployments should also deny the streamer egress to private
ranges at the network level.
"""

from __future__ import annotations

import ipaddress
import logging
import re
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
# Well-known NAT64 prefix (RFC 6052): the last 32 bits are the IPv4 address dialled.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Local-use NAT64 prefix (RFC 8215): translates into a private network by definition.
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
# It and every name under it mean this machine whatever DNS says (RFC 6761): refused before any lookup.
_LOCAL_NAME = "localhost"
# What inet_aton (and so getaddrinfo) reads as an IPv4 address: one to four numbers, each decimal,
# octal (leading 0) or hex (0x); the last one fills the remaining bytes.
_LEGACY_IPV4 = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}")
_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
# A name that resolves wherever DNS works (RFC 2606 reserves it; IANA serves it). When even this
# name does not resolve, a failed lookup says nothing about the user's link.
_CONTROL_NAME = "example.com"
_NAME_MISSING = frozenset({socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)})

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
SockAddrs = tuple[tuple[int, tuple[Any, ...]], ...]


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def is_public_address(ip: Address) -> bool:
    """Whether the server may connect to ``ip`` on a user's behalf.

    Refuses loopback, private, link-local, CGNAT, multicast, reserved, unspecified, documentation
    ranges, IPv6 ULA and site-local, local-use NAT64, every Teredo address, and IPv6 forms that embed
    a refused IPv4 address (IPv4-mapped, NAT64, 6to4).

    Args:
        ip: The address to judge.

    Returns:
        True when the address is public.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        # Teredo carries a relay server and a client address: which one answers is not ours to
        # judge, and the protocol is obsolete (newer Pythons call 2001::/32 not global).
        if ip.teredo is not None or ip in _LOCAL_NAT64 or ip.is_site_local:
            return False
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public_address(embedded)
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
        BlockedURL: Bad scheme, no host, credentials or other ambiguity in the server part, a local
            name, or an address the policy does not allow.
        UnreachableURL: The host name does not resolve.
    """
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BlockedURL(f"The address {url!r} is not a valid URL. Check it and try again.") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = f"{scheme}: links" if scheme else "links without http:// or https://"
        raise BlockedURL(
            f"Only http:// and https:// links can be fetched, not {shown}. Give a web link or upload the file."
        )
    _refuse_ambiguous_authority(url)
    host = parts.hostname
    if not host:
        raise BlockedURL(f"The link {url!r} has no server name. Check it and try again.")
    name = canonical_host(host)
    if name == _LOCAL_NAME or name.endswith(f".{_LOCAL_NAME}"):
        logger.warning("blocked url", extra={"host": host, "address": name})
        raise blocked(host)
    port = port if port is not None else (443 if scheme == "https" else 80)
    infos = resolve_host(name, port, shown=host)
    for _family, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if not policy.allows(ip):
            logger.warning("blocked url", extra={"host": host, "address": str(ip)})
            raise blocked(host)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme=scheme, host=host, port=port, path=path, addresses=tuple(infos))


def _refuse_ambiguous_authority(url: str) -> None:
    """Refuse an ``@`` or ``\\`` before the path: parsers disagree on the server such a link names.

    ``http://evil.com#@127.0.0.1/`` and ``http://evil.com\\@127.0.0.1/`` name a different server to
    Python than to a browser or an older parser, and ``user:pass@`` would be sent on as credentials.
    """
    after_scheme = url.split(":", 1)[-1].lstrip("/\\")
    authority = re.split(r"[/?]", after_scheme, maxsplit=1)[0]
    if "@" in authority or "\\" in authority:
        raise BlockedURL(
            "The link has a user name, a password, an '@' or a backslash before its path, which this "
            "service does not accept. Give the plain link to the page or file."
        )


def canonical_host(host: str) -> str:
    """``host`` as the resolver will read it: IDNA-encoded, lower case, without a trailing dot.

    Full-width or other Unicode spellings (``ｌｏｃａｌｈｏｓｔ``, ``１２７.０.０.１``) come down to the
    ASCII name or address they stand for.

    Args:
        host: The host part of a URL (without brackets).

    Returns:
        An IP literal (IPv6 with any zone id) or an ASCII host name.

    Raises:
        BlockedURL: Not a valid host name or address.
    """
    if ":" in host:  # only an IPv6 literal has a colon here
        if _ip_literal(host) is None:
            raise BlockedURL(f"The server address {host!r} is not valid. Check the link and try again.")
        return host
    try:
        name = host.encode("idna").decode("ascii").lower().rstrip(".")
    except UnicodeError as exc:
        raise BlockedURL(f"The server name {host!r} is not valid. Check the link and try again.") from exc
    if not _NAME.fullmatch(name):
        raise BlockedURL(f"The server name {host!r} is not valid. Check the link and try again.")
    return name


def _ip_literal(host: str) -> Address | None:
    """The address ``host`` spells, as the C library reads it (legacy IPv4 forms included), or None."""
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(host.lower()):
        try:  # the C library's own parser, the one getaddrinfo uses for a numeric host
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None  # e.g. "08.1": not a number to the C library, so a name to look up
    return None


def resolve_host(host: str, port: int, *, shown: str | None = None) -> list[tuple[int, tuple[Any, ...]]]:
    """``(family, sockaddr)`` for every address of ``host``; an IP literal needs no DNS.

    Args:
        host: A host name or an IP literal, in any spelling the C library accepts.
        port: The port to put in each sockaddr.
        shown: The host as the user wrote it, for messages (defaults to ``host``).

    Returns:
        One entry per address.

    Raises:
        UnreachableURL: The host name does not resolve, or DNS cannot be reached.
        BlockedURL: The host name cannot be encoded for DNS.
    """
    literal = _ip_literal(host)
    if literal is not None:
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        return [(family, (str(literal), port))]
    try:
        infos: list[tuple[int, tuple[Any, ...]]] = [
            (info[0], info[4]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        ]
    except socket.gaierror as exc:
        raise UnreachableURL(lookup_failure_reason(shown or host, exc)) from exc
    except UnicodeError as exc:
        raise BlockedURL(f"The server name {shown or host!r} is not valid. Check the link and try again.") from exc
    if not infos:
        raise UnreachableURL(lookup_failure_reason(shown or host, socket.gaierror(socket.EAI_NONAME, "no address")))
    return infos


def lookup_failure_reason(host: str, exc: socket.gaierror) -> str:
    """What to tell the user when the name ``host`` could not be looked up.

    A missing name is the link's fault; a lookup that could not be done (no network, DNS down) is
    not. Some resolvers say "no such name" for every name when the machine is offline, so before
    blaming the link this looks up a name that always exists.

    Args:
        host: The server's name, as in the link.
        exc: The resolver's error.

    Returns:
        A sentence saying what went wrong and what to do.
    """
    if exc.errno in _NAME_MISSING and _lookups_work():
        return f"The site name {host} does not exist. Check the link for typos and try again."
    return (
        f"This service could not look up the site name {host}: its machine has no network connection or "
        "its DNS is failing. The link is probably fine; try again later."
    )


def _lookups_work() -> bool:
    """Whether DNS answers at all (the control name resolves)."""
    try:
        return bool(socket.getaddrinfo(_CONTROL_NAME, 443, type=socket.SOCK_STREAM))
    except (OSError, UnicodeError):
        return False


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
    ip = _ip_literal(host)
    # For a name, connect() has already looked it up itself (before this event) and the address it
    # will dial is not shown here; a second lookup could answer differently (DNS rebinding). yt-dlp's
    # handlers resolve first and connect to addresses, so only an odd library is refused by this.
    if ip is None or not policy.allows(ip):
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

    A refused connect raises ``BlockedConnection``; so does a connect to a host name instead of an
    address, since the address connect() resolved it to cannot be seen by the check.

    Args:
        policy: Which addresses may be connected to.
    """
    _install_connect_guard()
    token = _connect_policy.set(policy)
    try:
        yield
    finally:
        _connect_policy.reset(token)

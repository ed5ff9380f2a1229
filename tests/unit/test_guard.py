"""The SSRF guard, the network error sentences and yt-dlp's parameters, without touching the network.

``socket.getaddrinfo`` is replaced by a fixed table of names (a fake resolver, since no DNS can be
reached from here) and ``socket.connect`` fails the test if anything tries to connect. IP literals
in any spelling never reach the fake: the guard reads them itself, the way the C library does, and
one test checks that reading against the real ``getaddrinfo`` (numeric hosts only, no DNS).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import ssl
import urllib.error
from collections.abc import Iterator
from typing import Any

import pytest
import yt_dlp
from yt_dlp.networking.exceptions import RequestError
from yt_dlp.networking.exceptions import TransportError as YtTransportError
from yt_dlp.utils import DownloadCancelled, DownloadError, ExtractorError

from streamer import guard
from streamer.download import network_reason
from streamer.errors import BlockedURL, InputError, TooLarge, TooLong, UnreachableURL, UnsupportedInput
from streamer.guard import AddressPolicy, BlockedConnection, check_url, is_public_address, vet, vetting_connections
from streamer.resolve import _GuardedYoutubeDL, _map_yt_dlp_error, _match_filter, _params, _resolved_from_info

_REAL_GETADDRINFO = socket.getaddrinfo
_REAL_CONNECT = socket.socket.connect
PUBLIC = "93.184.215.14"

# What the fake resolver answers; a name missing here does not exist (EAI_NONAME).
NAMES: dict[str, list[str]] = {
    "example.com": [PUBLIC],  # the guard's control name: DNS works
    "public.example": [PUBLIC],
    "public6.example": ["2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "evil.example": ["10.0.0.5"],
    "mixed.example": [PUBLIC, "10.0.0.5"],  # one bad answer is enough to refuse
    "loopback.example": ["127.0.0.1"],
    "mapped.example": ["::ffff:127.0.0.1"],
    "cgnat.example": ["100.64.0.1"],
    "metadata.example": ["169.254.169.254"],
    "ula.example": ["fd12:3456::1"],
}


class FakeResolver:
    """Stands in for ``socket.getaddrinfo``: answers from ``names``, or raises ``failure`` for every name."""

    def __init__(self) -> None:
        self.names = dict(NAMES)
        self.failure: socket.gaierror | None = None
        self.lookups: list[str] = []

    def __call__(self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
        self.lookups.append(str(host))
        if self.failure is not None:
            raise self.failure
        answers = self.names.get(str(host))
        if answers is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answers
        ]


@pytest.fixture(autouse=True)
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeResolver]:
    resolver = FakeResolver()
    monkeypatch.setattr(socket, "getaddrinfo", resolver)

    def no_connect(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"tried to connect to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", no_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", no_connect)
    yield resolver


# --- Every spelling of a private address is refused ----------------------------------------------------

REFUSED = {
    # Legacy IPv4 spellings, read as the C library reads them.
    "decimal": "http://2130706433/",
    "octal": "http://0177.0.0.1/",
    "hex dotted": "http://0x7f.0.0.1/",
    "hex whole": "http://0x7f000001/",
    "short loopback": "http://127.1/",
    "short private": "http://10.1/",
    "zero": "http://0/",
    "unspecified": "http://0.0.0.0/",
    "upper-case hex": "http://0X7F.1/",
    # Trailing dots and local names.
    "localhost": "http://localhost/",
    "localhost dot": "http://localhost./",
    "under localhost": "http://api.localhost/",
    "upper-case localhost": "http://LOCALHOST:8080/x",
    "address dot": "http://127.0.0.1./",
    "full-width localhost": "http://ｌｏｃａｌｈｏｓｔ/",
    "full-width address": "http://１２７.０.０.１/",
    "ideographic dots": "http://127。0。0。1/",
    # Credentials, fragments and backslashes in the server part.
    "credentials": "http://user:pass@127.0.0.1/",
    "credentials on a public host": "http://user:pass@public.example/",
    "fragment hides the host": "http://public.example#@127.0.0.1/",
    "fragment after the host": "http://127.0.0.1#@public.example/",
    "backslash": "http://public.example\\@127.0.0.1/",
    # IPv6 literals.
    "v6 loopback": "http://[::1]/",
    "v6 unspecified": "http://[::]/",
    "v4-mapped hex": "http://[::ffff:7f00:1]/",
    "v4-mapped dotted": "http://[::ffff:127.0.0.1]/",
    "v4-mapped long": "http://[0:0:0:0:0:ffff:127.0.0.1]/",
    "v4-compatible": "http://[::127.0.0.1]/",
    "link-local with zone": "http://[fe80::1%25eth0]/",
    "unique local": "http://[fd00::1]/",
    "site-local": "http://[fec0::1]/",
    "nat64 loopback": "http://[64:ff9b::127.0.0.1]/",
    "nat64 private": "http://[64:ff9b::a00:1]/",
    "local-use nat64": "http://[64:ff9b:1::808:808]/",
    "6to4 loopback": "http://[2002:7f00:1::1]/",
    "6to4 private": "http://[2002:c0a8:101::1]/",
    "teredo private client": "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    "teredo public client": "http://[2001:0:4136:e378:8000:63bf:a2db:28f1]/",
    # Private ranges written plainly.
    "cgnat": "http://100.64.0.1/",
    "metadata": "http://169.254.169.254/latest/meta-data/",
    "benchmarking": "http://198.18.0.1/",
    "broadcast": "http://255.255.255.255/",
    # Names whose DNS answer is private.
    "dns private": "http://evil.example/",
    "dns private dot": "http://evil.example./",
    "dns one private answer": "https://mixed.example/",
    "dns loopback": "http://loopback.example/",
    "dns v4-mapped": "http://mapped.example/",
    "dns cgnat": "http://cgnat.example/",
    "dns metadata": "http://metadata.example/",
    "dns unique local": "http://ula.example/",
    # Not http(s), or not a link at all.
    "file": "file:///etc/passwd",
    "file without slashes": "file:/etc/passwd",
    "ftp": "ftp://public.example/a.mp3",
    "data": "data:text/plain,hello",
    "gopher": "gopher://public.example/",
    "javascript": "javascript:alert(1)",
    "no scheme": "//public.example/a.mp3",
    "no host": "http:127.0.0.1",
    "bracketed ipv4": "http://[127.0.0.1]/",
    "percent-encoded host": "http://%31%32%37.0.0.1/",
    "empty label": "http://a..example/",
}


@pytest.mark.parametrize("url", REFUSED.values(), ids=REFUSED.keys())
def test_private_address_in_every_spelling_is_refused_without_connecting(url: str) -> None:
    with pytest.raises(BlockedURL) as caught:
        check_url(url, allow_private=False)
    assert caught.value.reason.endswith("."), caught.value.reason


@pytest.mark.parametrize(
    "host",
    [
        "127.1",
        "0177.0.0.1",
        "0x7f.0.0.1",
        "0x7f000001",
        "2130706433",
        "10.1",
        "0",
        "1.2.3",
        "0x5db8d70e",
        "01.02.03.04",
    ],
)
def test_legacy_ipv4_is_read_as_the_c_library_reads_it(host: str, dns: FakeResolver) -> None:
    # AI_NUMERICHOST: the real resolver parses the number and never asks DNS.
    dialled = _REAL_GETADDRINFO(host, 80, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    assert guard.resolve_host(host, 80) == [(socket.AF_INET, dialled[0][4])]
    assert dns.lookups == []  # judged without a lookup that a DNS server could answer


def test_numeric_host_the_c_library_rejects_is_a_name_for_dns(dns: FakeResolver) -> None:
    # "08" is not octal, so getaddrinfo would look "08.0.0.1" up as a name: the guard judges that answer.
    dns.names["08.0.0.1"] = ["10.0.0.8"]
    with pytest.raises(BlockedURL):
        check_url("http://08.0.0.1/", allow_private=False)
    assert dns.lookups == ["08.0.0.1"]


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("https://public.example/a.mp3", PUBLIC),
        ("https://PUBLIC.example./a.mp3", PUBLIC),
        ("http://public6.example/a.mp3", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"),
        (f"http://{PUBLIC}:8080/a.mp3", PUBLIC),
        ("http://0x5db8d70e/a.mp3", PUBLIC),  # hex spelling of a public address
        ("http://[64:ff9b::808:808]/", "64:ff9b::808:808"),  # NAT64 of a public address
        ("https://public.example/@user/video?mail=a@b#t=10", PUBLIC),  # '@' after the server part
    ],
)
def test_public_address_passes_and_is_the_one_to_connect_to(url: str, address: str) -> None:
    target = vet(url, AddressPolicy())
    assert [sockaddr[0] for _family, sockaddr in target.addresses] == [address]


def test_the_vetted_target_keeps_host_port_and_path() -> None:
    target = vet("https://public.example:8443/a/b.mp3?x=1#frag", AddressPolicy())
    assert (target.scheme, target.host, target.port, target.path) == ("https", "public.example", 8443, "/a/b.mp3?x=1")


def test_port_zero_is_not_replaced_by_the_default_port() -> None:
    assert vet(f"http://{PUBLIC}:0/", AddressPolicy()).port == 0


def test_allow_private_lets_private_addresses_through() -> None:
    target = vet("http://evil.example/", AddressPolicy(allow_private=True))
    assert target.addresses[0][1][0] == "10.0.0.5"


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::8.8.8.8", True),
        ("2002:808:808::1", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        ("100.127.255.254", False),
        ("169.254.169.254", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("192.0.2.1", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("fec0::1", False),
        ("ff02::1", False),
        ("2001:db8::1", False),
        ("::ffff:10.0.0.1", False),
        ("64:ff9b::192.168.0.1", False),
        ("64:ff9b:1::8.8.8.8", False),
        ("2002:a00:1::1", False),
        ("2001:0:4136:e378:8000:63bf:a2db:28f1", False),  # Teredo, even with a public client
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


def _connect_while_vetting(address: tuple[Any, ...]) -> BlockedConnection:
    """The refusal the audit hook raises from the real connect(), before any packet is sent."""
    with vetting_connections(AddressPolicy()):
        with socket.socket(socket.AF_INET6 if len(address) == 4 else socket.AF_INET) as sock:
            sock.setblocking(False)
            with pytest.raises(BlockedConnection) as caught:
                _REAL_CONNECT(sock, address)
    return caught.value


@pytest.mark.parametrize("address", [("127.0.0.1", 80), ("::ffff:10.0.0.1", 80, 0, 0), ("0177.0.0.1", 80)])
def test_connect_in_a_vetting_context_is_judged_by_the_address_dialled(address: tuple[Any, ...]) -> None:
    assert isinstance(_connect_while_vetting(address).blocked, BlockedURL)


def test_connect_to_a_name_in_a_vetting_context_is_refused_whatever_it_resolves_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # connect() looks the name up itself, out of the hook's sight: a second DNS answer could differ.
    monkeypatch.setattr(guard, "is_public_address", lambda ip: True)
    assert isinstance(_connect_while_vetting(("localhost", 80)).blocked, BlockedURL)


# --- Network failures tell the user what happened -----------------------------------------------------


def test_missing_name_is_the_links_fault(dns: FakeResolver) -> None:
    with pytest.raises(UnreachableURL) as caught:
        check_url("https://no-such-site.example/v", allow_private=False)
    assert caught.value.reason == (
        "The site name no-such-site.example does not exist. Check the link for typos and try again."
    )
    assert dns.lookups == ["no-such-site.example", "example.com"]  # the control name did resolve


OFFLINE = (
    "This service could not look up the site name {host}: its machine has no network connection or its DNS "
    "is failing. The link is probably fine; try again later."
)


def test_resolver_that_finds_no_name_at_all_means_no_network(dns: FakeResolver) -> None:
    # Offline, some resolvers answer EAI_NONAME for every name, the control name included.
    dns.failure = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    with pytest.raises(UnreachableURL) as caught:
        check_url("https://www.youtube.com/watch?v=x", allow_private=False)
    assert caught.value.reason == OFFLINE.format(host="www.youtube.com")
    assert "typo" not in caught.value.reason


@pytest.mark.parametrize("code", [socket.EAI_AGAIN, socket.EAI_FAIL])
def test_lookup_that_could_not_be_done_is_not_the_links_fault(dns: FakeResolver, code: int) -> None:
    dns.failure = socket.gaierror(code, "Temporary failure in name resolution")
    with pytest.raises(UnreachableURL) as caught:
        check_url("https://www.youtube.com/watch?v=x", allow_private=False)
    assert caught.value.reason == OFFLINE.format(host="www.youtube.com")
    assert dns.lookups == ["www.youtube.com"]  # no control lookup needed


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
            OFFLINE.format(host="site.example"),
        ),
        (
            OSError(errno.ENETUNREACH, "Network is unreachable"),
            "This service could not reach site.example: its machine has no network connection. "
            "The link is probably fine; try again later.",
        ),
        (
            OSError(errno.EHOSTUNREACH, "No route to host"),
            "This service found no network route to site.example: its own network or the site's is down. "
            "Try again later.",
        ),
        (
            TimeoutError("timed out"),
            "The server site.example did not answer in time. Try again later or check the link.",
        ),
        (
            ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
            "The server site.example refused the connection. Check the link and try again later.",
        ),
        (
            ssl.SSLCertVerificationError(1, "certificate verify failed"),
            "The server site.example sent a certificate that could not be verified, so no secure connection was "
            "made (TLS error). Check the link.",
        ),
        (
            ssl.SSLError(1, "wrong version number"),
            "A secure connection to site.example could not be set up (TLS error). Check the link.",
        ),
        (
            ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
            "The server site.example could not be reached. Check the link and try again later.",
        ),
    ],
    ids=["no dns", "no network", "no route", "timeout", "refused", "certificate", "tls", "other"],
)
def test_network_reason(error: BaseException, expected: str) -> None:
    assert network_reason("site.example", error) == expected


def _yt_dlp_failure(socket_error: BaseException) -> DownloadError:
    """The chain yt-dlp raises when a page request fails: DownloadError > ExtractorError > TransportError > URLError."""
    transport = YtTransportError(cause=urllib.error.URLError(socket_error))
    extractor = ExtractorError("Unable to download webpage", cause=transport)
    return DownloadError("ERROR: Unable to download webpage", exc_info=(ExtractorError, extractor, None))


@pytest.mark.parametrize(
    ("error", "phrase"),
    [
        (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), "its DNS is failing"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "its machine has no network connection"),
        (TimeoutError("timed out"), "did not answer in time"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "refused the connection"),
    ],
)
def test_yt_dlp_failure_is_told_by_its_innermost_cause(error: BaseException, phrase: str) -> None:
    mapped = _map_yt_dlp_error(_yt_dlp_failure(error), "https://site.example/watch?v=1")
    assert isinstance(mapped, UnreachableURL)
    assert phrase in mapped.reason
    assert "site.example" in mapped.reason


# --- yt-dlp only looks, and only at the web ------------------------------------------------------------


def _no_filter(info: dict[str, Any], *, incomplete: bool = False) -> str | None:
    return None


def test_yt_dlp_params_never_download_run_commands_or_read_local_files() -> None:
    params = _params(_no_filter, max_bytes=1000, timeout_s=5.0)
    assert params["skip_download"] is True
    assert params["noplaylist"] is True
    assert params["max_filesize"] == 1000
    assert params["match_filter"] is _no_filter
    assert params["enable_file_urls"] is False
    assert params["usenetrc"] is False
    assert params["allow_unplayable_formats"] is False
    dangerous = {
        "exec",
        "exec_cmd",
        "postprocessors",
        "external_downloader",
        "external_downloader_args",
        "netrc_cmd",
        "netrc_location",
        "cookiefile",
        "cookiesfrombrowser",
        "load_info_filename",
        "proxy",
        "nocheckcertificate",
        "legacyserverconnect",
        "force_generic_extractor",
    }
    assert dangerous.isdisjoint(params)


def test_yt_dlp_itself_refuses_file_urls_with_these_params() -> None:
    params = _params(_no_filter, max_bytes=1000, timeout_s=5.0)
    with yt_dlp.YoutubeDL(params) as ydl, pytest.raises(RequestError, match="file://"):
        ydl.urlopen("file:///etc/passwd")


def test_guarded_yt_dlp_refuses_before_yt_dlp_sees_the_request() -> None:
    params = _params(_no_filter, max_bytes=1000, timeout_s=5.0)
    with _GuardedYoutubeDL(params, policy=AddressPolicy()) as ydl:
        for url in ["file:///etc/passwd", "http://127.1/", "http://evil.example/"]:
            with pytest.raises(BlockedURL):
                ydl.urlopen(url)


@pytest.mark.parametrize(
    ("info", "error"),
    [
        ({"live_status": "is_upcoming"}, UnsupportedInput),
        ({"duration": 61}, TooLong),
        ({"filesize": 1001}, TooLarge),
        ({"filesize_approx": 5000}, TooLarge),
    ],
)
def test_match_filter_cancels_before_any_download(info: dict[str, Any], error: type[InputError]) -> None:
    refusals: list[InputError] = []
    match_filter = _match_filter(refusals, max_duration_s=60, max_bytes=1000)
    with pytest.raises(DownloadCancelled):
        match_filter(info)
    assert [type(r) for r in refusals] == [error]
    assert match_filter({"duration": 60, "filesize": 1000}) is None
    assert match_filter({"is_live": True}) is None  # its HLS playlist is taken (streamer.live_hls)


def _live(*formats: dict[str, Any]) -> dict[str, Any]:
    return {"is_live": True, "title": "On air", "formats": list(formats)}


def test_a_live_stream_resolves_to_an_hls_playlist_and_other_live_streams_are_refused() -> None:
    policy = AddressPolicy()
    master = "https://1.1.1.1/master.m3u8"
    muxed = {"protocol": "m3u8_native", "url": "https://1.1.1.1/720p.m3u8", "manifest_url": master}
    audio = {**muxed, "url": "https://1.1.1.1/audio.m3u8", "vcodec": "none", "acodec": "mp4a.40.2"}
    video_only = {**muxed, "url": "https://1.1.1.1/video.m3u8", "acodec": "none"}
    picked = _resolved_from_info({**_live(muxed), **muxed}, policy=policy, max_duration_s=60, plan=None)
    assert picked.is_live and picked.url == master and picked.title == "On air"  # its lowest variant is read
    picked = _resolved_from_info({**_live(muxed, audio), **audio}, policy=policy, max_duration_s=60, plan=None)
    assert picked.url == audio["url"]
    for info in ({**_live(video_only), **video_only}, _live({"protocol": "http_dash_segments", "url": master})):
        with pytest.raises(UnsupportedInput, match="not offered as HLS"):
            _resolved_from_info(info, policy=policy, max_duration_s=60, plan=None)
    with pytest.raises(BlockedURL):
        _resolved_from_info(
            _live({**muxed, "manifest_url": "http://10.0.0.1/x.m3u8"}), policy=policy, max_duration_s=60, plan=None
        )

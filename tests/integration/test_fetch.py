"""Fetching and decoding real media: real yt-dlp and PyAV against local HTTP servers, real files.

The servers are plain ``http.server`` instances on 127.0.0.1 (the "site") and 127.0.0.2 (a private
address a redirect must not reach). Loopback is let through only where a test says so.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core import bus
from core.messages import Cancelled, Progress
from scribe import client
from scribe.runtime import runtime, services
from store import repo
from streamer import guard
from streamer.chunker import SAMPLE_RATE, Piece
from streamer.download import HttpStream
from streamer.errors import (
    BlockedURL,
    InputError,
    NoAudioStream,
    NotMedia,
    SourceNotFound,
    TooLarge,
    TooLong,
    UnreachableURL,
    UnsupportedInput,
)
from streamer.media import _open_container, open_media
from streamer.resolve import resolve
from streamer.source import LiveLink, open_source
from tests import media
from tests.webserver import Route, Site, serve

pytestmark = pytest.mark.integration

LIMITS: dict[str, Any] = {"max_duration_s": 600.0, "max_bytes": 50_000_000}
# Cut rules for short test inputs: the usual silence threshold, no short first piece.
CUTS: dict[str, float] = {"silence_dbfs": -45.0, "first_max_s": 0.0}
# Words a reason uses to tell the user what to do next.
ACTIONS = ("upload", "send", "check", "use", "give", "cut", "export", "try", "link")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    return {
        "clip": media.make_ogg(d),  # 30.6 s of speech
        "slow": media.write_audio(d / "slow.ogg", media.load_samples(media.MEETING, seconds=40), bit_rate=24000),
        "silence": media.make_silence_file(d, 20.0),
        "text": media.make_text_file(d),
        "video": media.make_video_only(d),
        "truncated": media.make_truncated(d, ".mp3"),
        "playlist": media.make_playlist(d),
        "m4a": media.make_m4a(d, seconds=12),
        "m4a_index_last": media.make_m4a(d, seconds=12, faststart=False, name="index_last"),
    }


@pytest.fixture(scope="module")
def private_site() -> Iterator[Site]:
    site = serve("127.0.0.2", {"/secret": Route(b"internal data", content_type="text/plain")})
    yield site
    site.server.shutdown()


@pytest.fixture
def site_is_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard counts the test site (127.0.0.1) as public; every other private address stays refused."""
    is_public = guard.is_public_address
    monkeypatch.setattr(guard, "is_public_address", lambda ip: str(ip) == "127.0.0.1" or is_public(ip))


@pytest.fixture(scope="module")
def site(files: dict[str, Path], private_site: Site) -> Iterator[Site]:
    slow = files["slow"].read_bytes()
    routes = {
        "/clip.ogg": Route(files["clip"].read_bytes()),
        "/slow.ogg": Route(slow, chunk=4096, delay_s=0.08),  # about 2.5 s for 40 s of audio
        "/page.html": Route(
            b"<!doctype html><html><head><title>Hi</title></head><body>No media</body></html>", 200, "text/html"
        ),
        "/to-private": Route(status=302, location=private_site.url("/secret"), content_type="text/plain"),
        "/to-clip": Route(status=302, location="/clip.ogg", content_type="text/plain"),
        "/clip.m4a": Route(files["m4a"].read_bytes(), content_type="audio/mp4"),
        "/index-last.m4a": Route(files["m4a_index_last"].read_bytes(), content_type="audio/mp4"),
    }
    site = serve("127.0.0.1", routes)
    clip = site.url("/clip.ogg")
    hls = f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{clip}\n"
    routes["/live.m3u8"] = Route(hls.encode(), content_type="application/vnd.apple.mpegurl")  # no end: live
    routes["/vod.m3u8"] = Route(f"{hls}#EXT-X-ENDLIST\n".encode(), content_type="application/vnd.apple.mpegurl")
    routes["/feed.rss"] = Route(_rss(clip), content_type="application/rss+xml")
    routes["/long-video.html"] = Route(_video_page(clip, "PT2H"), content_type="text/html")
    routes["/council.html"] = Route(_video_page(clip, "PT31S"), content_type="text/html")
    yield site
    site.server.shutdown()


def _rss(media_url: str) -> bytes:
    items = "".join(
        f'<item><title>Episode {i}</title><guid>ep{i}</guid><enclosure url="{media_url}?ep={i}" type="audio/ogg"/>'
        "</item>"
        for i in (1, 2)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Podcast</title>{items}</channel></rss>'.encode()


def _video_page(media_url: str, iso_duration: str) -> bytes:
    """A page whose JSON-LD describes a video (yt-dlp's generic extractor reads it)."""
    return (
        "<!doctype html><html><head><title>Council meeting</title>"
        '<script type="application/ld+json">{"@context": "https://schema.org", "@type": "VideoObject", '
        f'"name": "Council meeting", "contentUrl": "{media_url}", "duration": "{iso_duration}"}}</script>'
        "</head><body>video</body></html>"
    ).encode()


def _assert_tiles(pieces: list[Piece], total_s: float) -> None:
    assert pieces, "no pieces"
    assert pieces[0].offset == 0.0
    for before, after in zip(pieces, pieces[1:], strict=False):
        assert after.offset == pytest.approx(before.end, abs=1e-9)
    assert sum(len(p.samples) for p in pieces) / SAMPLE_RATE == pytest.approx(total_s, abs=0.1)


def _assert_actionable(error: InputError) -> None:
    assert error.reason.endswith("."), error.reason
    assert any(word in error.reason.lower() for word in ACTIONS), error.reason


# --- URLs ---------------------------------------------------------------------------------------------


def test_resolve_plain_media_url_with_real_yt_dlp(site: Site) -> None:
    resolved = resolve(site.url("/clip.ogg"), allow_private=True, **LIMITS)
    assert resolved.url == site.url("/clip.ogg")
    assert resolved.is_live is False
    assert isinstance(resolved.headers, dict)


def test_url_streams_into_pieces_with_the_whole_duration(site: Site, files: dict[str, Path]) -> None:
    source, *_ = open_source(site.url("/to-clip"), allow_private=True, **LIMITS)
    assert isinstance(source, HttpStream)
    with source, open_media(source, max_duration_s=600) as reader:
        pieces = list(reader.pieces(min_s=5, max_s=10, **CUTS))
        assert source.finished
        assert source.bytes_read == files["clip"].stat().st_size
    _assert_tiles(pieces, 30.6)
    assert not any(p.silent for p in pieces)


def test_first_piece_arrives_while_the_download_is_still_running(site: Site) -> None:
    source, *_ = open_source(site.url("/slow.ogg"), allow_private=True, **LIMITS)
    assert isinstance(source, HttpStream)
    total = len(site.routes["/slow.ogg"].body)
    with source, open_media(source, max_duration_s=600) as reader:
        pieces = reader.pieces(min_s=2, max_s=4, **CUTS)
        first = next(pieces)
        assert not source.finished
        assert site.hits[-1] == "/slow.ogg"  # the download (yt-dlp's look came before it)
        assert site.sent[-1] < total / 2
        rest = list(pieces)
        assert source.finished
    _assert_tiles([first, *rest], 40.0)


def test_loopback_is_blocked_without_allow_private(site: Site) -> None:
    hits = len(site.hits)
    with pytest.raises(BlockedURL) as caught:
        open_source(site.url("/clip.ogg"), allow_private=False, **LIMITS)
    _assert_actionable(caught.value)
    assert len(site.hits) == hits  # refused before any request


@pytest.mark.usefixtures("site_is_public")
def test_redirect_to_private_address_is_refused_in_yt_dlp(site: Site, private_site: Site) -> None:
    # Positive control: the same policy does let the public site through.
    assert resolve(site.url("/clip.ogg"), allow_private=False, **LIMITS).url
    with pytest.raises(BlockedURL):
        resolve(site.url("/to-private"), allow_private=False, **LIMITS)
    assert private_site.hits == []  # not even a blind request reached it


@pytest.mark.usefixtures("site_is_public")
def test_redirect_to_private_address_is_refused_in_the_download(site: Site, private_site: Site) -> None:
    with HttpStream(site.url("/to-clip"), allow_private=False, max_bytes=10**8) as ok:
        assert ok.url.endswith("/clip.ogg")
    with pytest.raises(BlockedURL):
        HttpStream(site.url("/to-private"), allow_private=False, max_bytes=10**8)
    assert private_site.hits == []


def test_closed_port_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UnreachableURL) as caught:
        open_source(f"http://127.0.0.1:{port}/clip.ogg", allow_private=True, **LIMITS)
    _assert_actionable(caught.value)


def test_http_404_is_unreachable(site: Site) -> None:
    with pytest.raises(UnreachableURL) as caught:
        open_source(site.url("/missing.ogg"), allow_private=True, **LIMITS)
    assert "404" in caught.value.reason


def test_html_page_is_refused_with_a_clear_reason(site: Site) -> None:
    with pytest.raises((UnsupportedInput, NotMedia)) as caught:
        open_source(site.url("/page.html"), allow_private=True, **LIMITS)
    assert "web page" in caught.value.reason
    _assert_actionable(caught.value)


def test_mp4_streams_only_with_its_index_first(site: Site, files: dict[str, Path]) -> None:
    source, *_ = open_source(site.url("/clip.m4a"), allow_private=True, **LIMITS)
    assert isinstance(source, HttpStream)
    with source, open_media(source, max_duration_s=600) as reader:
        assert sum(p.duration for p in reader.pieces(min_s=4, max_s=8, **CUTS)) == pytest.approx(12.0, abs=0.1)
    source, *_ = open_source(site.url("/index-last.m4a"), allow_private=True, **LIMITS)
    assert isinstance(source, HttpStream)
    with source, pytest.raises(UnsupportedInput) as caught:
        open_media(source, max_duration_s=600)
    assert "fast start" in caught.value.reason
    # The same file is fine as an upload (seekable).
    with open_media(files["m4a_index_last"], max_duration_s=600) as reader:
        assert sum(p.duration for p in reader.pieces(min_s=4, max_s=8, **CUTS)) == pytest.approx(12.0, abs=0.1)


def test_segmented_stream_is_refused(site: Site) -> None:
    with pytest.raises(UnsupportedInput) as caught:
        open_source(site.url("/vod.m3u8"), allow_private=True, **LIMITS)
    assert "HLS" in caught.value.reason
    _assert_actionable(caught.value)


def test_a_live_hls_stream_is_handed_over_as_a_live_link_not_opened(site: Site) -> None:
    # Read as a live session by streamer.live_hls (tests/integration/test_live_hls.py), never by FFmpeg.
    clip_hits = site.hits.count("/clip.ogg")
    with pytest.raises(LiveLink) as caught:
        open_source(site.url("/live.m3u8"), allow_private=True, **LIMITS)
    assert caught.value.playlist == site.url("/live.m3u8")
    assert site.hits.count("/clip.ogg") == clip_hits  # no segment fetched


def test_playlist_feed_is_refused(site: Site) -> None:
    with pytest.raises(UnsupportedInput) as caught:
        open_source(site.url("/feed.rss"), allow_private=True, **LIMITS)
    assert "playlist" in caught.value.reason


def test_too_long_video_is_refused_from_the_site_metadata(site: Site) -> None:
    hits = len(site.hits)
    with pytest.raises(TooLong) as caught:
        open_source(site.url("/long-video.html"), allow_private=True, **LIMITS)
    assert caught.value.duration_s == 7200
    # yt-dlp looked at the page and at the media's headers; the download (a second GET) never started.
    assert site.hits[hits:] == ["/long-video.html", "/clip.ogg"]


def test_a_video_pages_title_comes_with_its_media(site: Site) -> None:
    opened = open_source(site.url("/council.html"), allow_private=True, **LIMITS)
    assert isinstance(opened.media, HttpStream)
    with opened.media:
        assert (opened.title, opened.duration) == ("Council meeting", 31)


async def test_the_streamer_keeps_a_links_title_with_its_job(site: Site, settings, nats_url, database_url) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    async with runtime(cfg, names=["streamer"]) as rt:
        await rt.start(services("streamer"))
        job_id = await client.submit(rt.js, site.url("/council.html"))
        async with contextlib.aclosing(client.follow(rt.js, job_id)) as events:
            async for event in events:  # the title is kept before the first progress is announced
                if isinstance(event, Progress):
                    break
        job = await repo.get_job(rt.pool, job_id)
        assert job is not None and job.title == "Council meeting"
        if await repo.cancel_job(rt.pool, job_id):  # nothing transcribes it here
            await bus.publish_event(rt.js, Cancelled(job_id=job_id))


def test_download_over_the_byte_limit_is_refused(site: Site) -> None:
    with pytest.raises(TooLarge) as caught:
        open_source(site.url("/clip.ogg"), allow_private=True, max_duration_s=600, max_bytes=100_000)
    assert caught.value.max_bytes == 100_000


def test_duration_limit_holds_when_the_stream_has_no_metadata(site: Site) -> None:
    # A non-seekable Ogg stream has no duration up front: the limit is enforced while decoding.
    source, *_ = open_source(site.url("/clip.ogg"), allow_private=True, **LIMITS)
    assert isinstance(source, HttpStream)
    with source, open_media(source, max_duration_s=10) as reader:
        assert reader.duration is None
        with pytest.raises(TooLong):
            for _ in reader.pieces(min_s=2, max_s=4, **CUTS):
                pass
        assert reader.decoded_s <= 11.5


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.mp3", "gopher://127.0.0.1/"])
def test_other_schemes_are_blocked(url: str) -> None:
    with pytest.raises(BlockedURL):
        open_source(url, allow_private=True, **LIMITS)


# --- Local files ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("missing", SourceNotFound),
        ("text", NotMedia),
        ("video", NoAudioStream),
        ("playlist", UnsupportedInput),
    ],
)
def test_bad_local_input_is_refused_up_front(
    files: dict[str, Path], tmp_path: Path, name: str, error: type[InputError]
) -> None:
    path = files.get(name, tmp_path / "nowhere.mp3")
    with pytest.raises(error) as caught:
        source, *_ = open_source(str(path), local=True, allow_private=False, **LIMITS)
        open_media(source, max_duration_s=600).close()
    _assert_actionable(caught.value)


def test_playlist_content_is_refused_whatever_its_name(files: dict[str, Path], tmp_path: Path) -> None:
    disguised = tmp_path / "episode.mp3"
    disguised.write_bytes(files["playlist"].read_bytes())
    with pytest.raises(UnsupportedInput):
        open_media(disguised, max_duration_s=600)


def test_demuxer_may_not_open_files_named_inside_the_input(files: dict[str, Path], tmp_path: Path) -> None:
    # Defence in depth behind the content sniffing: an HLS list naming a real local file.
    (tmp_path / "clip.ogg").write_bytes(files["clip"].read_bytes())
    hls = tmp_path / "list.m3u8"
    hls.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:40\n#EXTINF:31,\nclip.ogg\n#EXT-X-ENDLIST\n", encoding="utf-8")
    with hls.open("rb") as file, pytest.raises(UnsupportedInput) as caught:
        _open_container(file, head=b"")  # skip the sniffing that would refuse it first
    assert "other files" in caught.value.reason


def test_too_long_is_refused_from_metadata(files: dict[str, Path]) -> None:
    with pytest.raises(TooLong) as caught:
        open_media(files["clip"], max_duration_s=10)
    assert caught.value.duration_s == pytest.approx(30.6, abs=0.1)
    _assert_actionable(caught.value)


def test_truncated_file_yields_the_good_part_with_a_warning(files: dict[str, Path]) -> None:
    with open_media(files["truncated"], max_duration_s=600) as reader:
        pieces = list(reader.pieces(min_s=5, max_s=10, **CUTS))
    assert 10 < pieces[-1].end < 20  # half of a 30.6 s file
    _assert_tiles(pieces, pieces[-1].end)
    [warning] = reader.warnings
    assert "truncated" in warning and "31 seconds" in warning
    assert warning.endswith(".")


def test_silence_only_file_gives_only_silent_pieces(files: dict[str, Path]) -> None:
    with open_media(files["silence"], max_duration_s=600) as reader:
        pieces = list(reader.pieces(min_s=5, max_s=10, **CUTS))
    _assert_tiles(pieces, 20.0)
    assert all(p.silent for p in pieces)


@pytest.mark.usefixtures("site_is_public")
def test_download_connects_to_the_vetted_address_not_a_second_dns_answer(
    site: Site, private_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rebinding name: public (the site) for the check, private for any lookup after it.
    answers = iter(["127.0.0.1"])
    lookups: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.test":
            return real_getaddrinfo(host, port, *args, **kwargs)
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers, "127.0.0.2"), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = site.url("/clip.ogg").replace("127.0.0.1", "rebind.test")
    with HttpStream(url, allow_private=False, max_bytes=10**8) as stream:
        assert stream.read(4) == b"OggS"  # the site's file: the connection went to the vetted address
    assert lookups == ["rebind.test"]  # a second lookup would have answered 127.0.0.2
    assert private_site.hits == []

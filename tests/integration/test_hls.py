"""A live HLS stream read through the guard (``streamer.hls``), from a real local HTTP server whose
playlist grows while it is read: MPEG-TS/AAC segments made from a shared clip with PyAV.

The reader's sleep is where the playlist grows (one segment per poll), so no test waits in real time.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import av
import pytest
from faster_whisper import decode_audio

from streamer.encode import encode_samples
from streamer.errors import BlockedURL, UnsupportedInput
from streamer.hls import LiveHls, parse_playlist
from tests.paths import AUDIO
from tests.webserver import Route, Site, serve

pytestmark = pytest.mark.integration

CLIP = AUDIO / "sherpa_yue-6.wav"
SEGMENT_S = 2.0


@pytest.fixture(scope="module")
def segments() -> list[bytes]:
    """The clip as 2 s MPEG-TS segments with AAC audio, as a live encoder would publish them."""
    samples = decode_audio(str(CLIP))
    size = int(SEGMENT_S * 16000)
    out = []
    for start in range(0, size * 8, size):
        buffer = io.BytesIO()
        encode_samples(samples[start : start + size], buffer, container_format="mpegts", codec="aac")
        out.append(buffer.getvalue())
    return out


class Stream:
    """A live playlist on a site: ``grow()`` publishes the next segment, then, past the last, ``#EXT-X-ENDLIST``."""

    def __init__(self, site: Site, segments: list[bytes], *, listed: int, end: bool = True) -> None:
        self.site, self.segments, self.listed, self.end = site, segments, listed, end
        self.ended = False
        for n, body in enumerate(segments):
            site.routes[f"/live/seg{n}.ts"] = Route(body=body, content_type="video/mp2t")
        self.publish()

    def publish(self) -> None:
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{SEGMENT_S:.0f}", "#EXT-X-MEDIA-SEQUENCE:0"]
        for n in range(self.listed):
            lines += [f"#EXTINF:{SEGMENT_S:.3f},", f"seg{n}.ts"]
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        body = "\n".join(lines).encode()
        self.site.routes["/live/index.m3u8"] = Route(body=body, content_type="application/vnd.apple.mpegurl")

    def grow(self, _seconds: float = 0.0) -> None:
        if self.listed < len(self.segments):
            self.listed += 1
        elif self.end:
            self.ended = True
        self.publish()


@pytest.fixture
def site() -> Iterator[Site]:
    site = serve("127.0.0.1", {})
    yield site
    site.server.shutdown()


def _reader(site: Site, stream: Stream, **limits: float) -> tuple[LiveHls, list[float]]:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds
        stream.grow()

    reader = LiveHls(
        site.url("/live/index.m3u8"),
        allow_private=True,
        max_segment_bytes=10_000_000,
        max_seconds=limits.get("max_seconds", 3600.0),
        clock=lambda: now[0],
        sleep=sleep,
    )
    return reader, now


def test_a_growing_playlist_is_read_from_its_live_edge_to_its_endlist(site: Site, segments: list[bytes]) -> None:
    stream = Stream(site, segments, listed=3)
    reader, _ = _reader(site, stream)
    got = list(reader.segments())
    assert got == segments[2:]  # the live edge is the last segment listed at the start; then each new one once
    assert reader.ended_by == "endlist" and reader.seconds == pytest.approx(SEGMENT_S * 6)
    fetched = [path for path in site.hits if path.endswith(".ts")]
    assert fetched == [f"/live/seg{n}.ts" for n in range(2, 8)]  # never fetched twice
    # Each segment decodes on its own: its 2 s, and the AAC encoder's priming and padding (a few frames).
    durations = [len(decode_audio(io.BytesIO(body))) / 16000 for body in got]
    assert all(SEGMENT_S <= d <= SEGMENT_S + 0.2 for d in durations), durations
    with av.open(io.BytesIO(got[0])) as container:
        assert container.format.name == "mpegts" and container.streams.audio[0].codec_context.name == "aac"


def test_a_stream_that_stops_growing_ends_and_one_past_its_limit_stops(site: Site, segments: list[bytes]) -> None:
    stale = Stream(site, segments, listed=len(segments), end=False)  # nothing new will come, and no ENDLIST
    reader, now = _reader(site, stale)
    assert len(list(reader.segments())) == 1 and reader.ended_by == "stale"
    assert now[0] > 6 * SEGMENT_S

    limited = Stream(site, segments, listed=1)
    reader, _ = _reader(site, limited, max_seconds=3 * SEGMENT_S)
    assert list(reader.segments()) == segments[:3] and reader.ended_by == "limit"


def test_a_master_playlist_is_followed_to_its_lowest_bandwidth_variant(site: Site, segments: list[bytes]) -> None:
    Stream(site, segments, listed=len(segments))
    site.routes["/master.m3u8"] = Route(
        body=b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=900000\nhigh/index.m3u8\n"
        b'#EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS="mp4a.40.2"\nlive/index.m3u8\n',
        content_type="application/vnd.apple.mpegurl",
    )
    reader = LiveHls(site.url("/master.m3u8"), allow_private=True, max_segment_bytes=10_000_000, max_seconds=SEGMENT_S)
    assert list(reader.segments()) == [segments[-1]]
    assert reader.url == site.url("/live/index.m3u8") and "/high/index.m3u8" not in site.hits


def test_every_request_goes_through_the_guard(site: Site, segments: list[bytes]) -> None:
    Stream(site, segments, listed=2)
    reader = LiveHls(site.url("/live/index.m3u8"), allow_private=False, max_segment_bytes=1000, max_seconds=10)
    with pytest.raises(BlockedURL):
        next(reader.segments())
    assert site.hits == []


def test_playlists_that_cannot_be_read_say_why() -> None:
    with pytest.raises(UnsupportedInput, match="not an HLS playlist"):
        parse_playlist("<html>", "https://example.com/")
    with pytest.raises(UnsupportedInput, match="encrypted"):
        parse_playlist('#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="k"\n#EXTINF:2,\na.ts\n', "https://example.com/")
    fmp4 = parse_playlist(
        '#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2.5,\nseg/1.m4s\n', "https://cdn.example/a/b.m3u8"
    )
    assert fmp4.init_url == "https://cdn.example/a/init.mp4"
    assert [(s.sequence, s.url, s.duration) for s in fmp4.segments] == [(0, "https://cdn.example/a/seg/1.m4s", 2.5)]

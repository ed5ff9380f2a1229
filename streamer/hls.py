"""A live HLS stream read through the SSRF guard: the playlist polled, each new segment fetched once.

FFmpeg's own HLS demuxer would fetch the playlist and its segments itself, past the guard
(``streamer.guard``) and the pinned HTTP client (``streamer.download``), so it is never handed a
playlist. Here every request is an ``HttpStream``: the playlist is read, the segments after the
live edge are fetched in order as the playlist grows, and each segment's bytes go to the decoder
(MPEG-TS and ADTS segments stand alone; fMP4 ones are prefixed with their ``EXT-X-MAP`` init
segment). A master playlist is followed to its variant of the lowest bandwidth: speech needs
little, and the audio is the same in every variant.

The stream ends at ``#EXT-X-ENDLIST``, at ``max_seconds`` of segments, or when the caller stops
iterating (a cancelled job). Polling follows RFC 8216 (6.3.4): the target duration after a
playlist that changed, half of it after one that did not; a playlist that has not changed for
several target durations means the stream is over, as players decide.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin

from streamer.download import DEFAULT_TIMEOUT_S, HttpStream
from streamer.errors import UnreachableURL, UnsupportedInput

logger = logging.getLogger(__name__)

MAX_PLAYLIST_BYTES = 1024 * 1024
STALE_TARGETS = 6  # target durations without a new segment before the stream counts as over


@dataclass(frozen=True)
class Segment:
    """One media segment: its media sequence number, absolute URL and duration in seconds."""

    sequence: int
    url: str
    duration: float


@dataclass(frozen=True)
class Playlist:
    """What a playlist says (RFC 8216), as far as reading a live audio stream needs.

    Attributes:
        segments: The media segments listed, in order.
        target_duration: ``#EXT-X-TARGETDURATION`` in seconds.
        ended: ``#EXT-X-ENDLIST``: no segment will be added.
        init_url: The ``#EXT-X-MAP`` init segment every segment needs (fMP4), if any.
        variants: For a master playlist, ``(bandwidth, url)`` of each variant stream.
    """

    segments: list[Segment] = field(default_factory=list)
    target_duration: float = 6.0
    ended: bool = False
    init_url: str | None = None
    variants: list[tuple[int, str]] = field(default_factory=list)


def parse_playlist(text: str, base_url: str) -> Playlist:
    """Parse an M3U8 playlist; relative URIs are resolved against ``base_url``.

    Raises:
        UnsupportedInput: Not an M3U8 playlist, or an encrypted one.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise UnsupportedInput("This link is not an HLS playlist (it does not start with #EXTM3U).")
    segments: list[Segment] = []
    variants: list[tuple[int, str]] = []
    sequence, target, ended, init = 0, 6.0, False, None
    duration: float | None = None
    bandwidth: int | None = None
    for line in lines[1:]:
        tag, _, value = line.partition(":")
        if tag == "#EXT-X-MEDIA-SEQUENCE":
            sequence = int(value)
        elif tag == "#EXT-X-TARGETDURATION":
            target = float(value)
        elif tag == "#EXT-X-ENDLIST":
            ended = True
        elif tag == "#EXT-X-KEY" and "METHOD=NONE" not in value:
            raise UnsupportedInput("This live stream is encrypted (#EXT-X-KEY): it cannot be transcribed.")
        elif tag == "#EXT-X-MAP":
            init = urljoin(base_url, _attribute(value, "URI") or "")
        elif tag == "#EXTINF":
            duration = float(value.split(",", 1)[0] or 0)
        elif tag == "#EXT-X-STREAM-INF":
            bandwidth = int(_attribute(value, "BANDWIDTH") or 0)
        elif not line.startswith("#"):
            if bandwidth is not None:
                variants.append((bandwidth, urljoin(base_url, line)))
                bandwidth = None
            elif duration is not None:
                segments.append(Segment(sequence + len(segments), urljoin(base_url, line), duration))
                duration = None
    return Playlist(segments, target, ended, init, variants)


def _attribute(attributes: str, name: str) -> str | None:
    """One attribute of a tag's attribute list (``URI="init.mp4",BYTERANGE=…``), unquoted."""
    for item in attributes.split(","):
        key, _, value = item.partition("=")
        if key.strip() == name:
            return value.strip().strip('"')
    return None


class LiveHls:
    """The segments of a live HLS stream from its live edge, each fetched once, through the guard.

    Args:
        url: The playlist (a media or a master playlist).
        allow_private: Let loopback and private addresses through (tests only).
        max_segment_bytes: Largest segment (or playlist: at most 1 MiB) accepted.
        max_seconds: Stop after this many seconds of segments.
        headers: HTTP headers the site wants on every request (what yt-dlp says), if any.
        timeout_s: Connect/read timeout of each request.
        clock, sleep: The time, for tests.
    """

    def __init__(
        self,
        url: str,
        *,
        allow_private: bool,
        max_segment_bytes: int,
        max_seconds: float,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.allow_private = allow_private
        self.max_segment_bytes = max_segment_bytes
        self.max_seconds = max_seconds
        self.headers = dict(headers or {})
        self.timeout_s = timeout_s
        self._clock = clock
        self._sleep = sleep
        self.seconds = 0.0  # of the segments handed out so far
        self.ended_by: str | None = None  # "endlist", "limit" or "stale", once it has ended

    def segments(self) -> Iterator[bytes]:
        """Each new segment's bytes, in order, from the last segment listed when reading starts."""
        playlist = self._media_playlist(self.url)
        init = self._get(playlist.init_url, self.max_segment_bytes) if playlist.init_url else b""
        after = playlist.segments[-2].sequence if len(playlist.segments) > 1 else -1  # the live edge
        changed_at = self._clock()
        while True:
            fresh = [s for s in playlist.segments if s.sequence > after]
            for segment in fresh:
                if self.seconds >= self.max_seconds:
                    self.ended_by = "limit"
                    return
                yield init + self._get(segment.url, self.max_segment_bytes)
                self.seconds += segment.duration
                after = segment.sequence
            if playlist.ended:
                self.ended_by = "endlist"
                return
            now = self._clock()
            if fresh:
                changed_at = now
            elif now - changed_at > STALE_TARGETS * playlist.target_duration:
                self.ended_by = "stale"
                return
            self._sleep(playlist.target_duration if fresh else playlist.target_duration / 2)
            playlist = self._media_playlist(self.url)

    def _media_playlist(self, url: str) -> Playlist:
        playlist = parse_playlist(self._get(url, MAX_PLAYLIST_BYTES).decode("utf-8", "replace"), url)
        if playlist.variants:
            _, variant = min(playlist.variants)
            playlist = parse_playlist(self._get(variant, MAX_PLAYLIST_BYTES).decode("utf-8", "replace"), variant)
            self.url = variant
        if not playlist.segments and not playlist.ended:
            raise UnreachableURL("This live stream's playlist lists no segments yet. Try again in a minute.")
        return playlist

    def _get(self, url: str, max_bytes: int) -> bytes:
        stream = HttpStream(
            url, headers=self.headers, allow_private=self.allow_private, max_bytes=max_bytes, timeout_s=self.timeout_s
        )
        try:
            return stream.read()
        finally:
            stream.close()

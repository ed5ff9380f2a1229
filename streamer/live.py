"""Decoding live audio as it arrives: the frames of ``WS /v1/live`` as 16 kHz mono float32 samples.

The client declares its audio in the query, as Deepgram's API does (``LiveFormat.from_query``):
``encoding=linear16&sample_rate=16000&channels=1`` for raw little-endian 16-bit PCM,
``encoding=webm`` for what Chromium's MediaRecorder makes (WebM/Opus), ``encoding=ogg`` for
Firefox's (Ogg/Opus). ``LiveDecoder.feed`` takes each binary frame and returns the samples it
completed; ``close`` returns the rest.

Raw PCM is converted frame by frame, keeping a sample split across frames for the next one.
A container is demuxed by PyAV in a reader thread that reads from a pipe: ``feed`` hands the frame
to the pipe and waits until the thread has decoded all it can and asks for more bytes, so every
sample the frame completed is returned by that same ``feed``, and errors surface on the frame that
caused them. Nothing is re-read: memory holds one frame and the demuxer's own buffer, whatever
the session's length. Bytes that are not the declared encoding are refused on their first bytes
(a foreign container's signature) or after ``MAX_UNDECODED_BYTES`` that decode to nothing, with a
``LiveInputError`` whose reason is a sentence for the user.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast, get_args

import av
import av.error
import numpy as np

from streamer.chunker import SAMPLE_RATE
from streamer.errors import LiveInputError
from streamer.media import MAX_BAD_PACKETS, Resampler

logger = logging.getLogger(__name__)

Encoding = Literal["linear16", "webm", "ogg"]
ENCODINGS: tuple[Encoding, ...] = get_args(Encoding)
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000
MAX_CHANNELS = 2
# The largest binary frame taken; MediaRecorder's 250 ms slices are 1-10 kB, 250 ms of 48 kHz stereo PCM 47 kB.
MAX_FRAME_BYTES = 64 * 1024
# Container bytes that decode to no audio at all, first or after the last decoded sample, before the stream
# counts as not being what it was declared: about 2 s of MediaRecorder's Opus at its default 128 kb/s.
MAX_UNDECODED_BYTES = 64 * 1024

_SIGNATURE_BYTES = 12  # enough to tell the containers below apart (MP4 needs 8)
_NAMES = {"webm": "WebM", "ogg": "Ogg"}
_DEMUXERS = {"webm": "matroska", "ogg": "ogg"}
_ADVICE = {
    "webm": "Send what MediaRecorder makes (audio/webm;codecs=opus) from its first slice",
    "ogg": "Send Ogg/Opus (what Firefox's MediaRecorder makes) from its first page",
}
_EMPTY = np.zeros(0, dtype=np.float32)


def _query_int(query: Mapping[str, str], name: str, default: int | None, low: int, high: int, unit: str) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise LiveInputError(f"{name} is missing: raw audio needs it ({name}={low}-{high}).")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise LiveInputError(f"{name}={raw[:20]!r} is not a whole number: use {low}-{high} {unit}.") from None
    if not low <= value <= high:
        raise LiveInputError(f"{name}={value} is out of range: use {low}-{high} {unit}.")
    return value


@dataclass(frozen=True)
class LiveFormat:
    """The audio a live client sends.

    Attributes:
        encoding: ``"linear16"`` (raw little-endian 16-bit PCM), ``"webm"`` or ``"ogg"`` (Opus in either).
        sample_rate: Hz of raw PCM, 8000-48000; a container's header says its own (this is then unused).
        channels: Interleaved channels of raw PCM, 1 or 2 (downmixed to mono); unused for a container.
    """

    encoding: Encoding
    sample_rate: int = SAMPLE_RATE
    channels: int = 1

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise LiveInputError(f"encoding={self.encoding!r} is not supported: use {', '.join(ENCODINGS)}.")
        if not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise LiveInputError(
                f"sample_rate={self.sample_rate} is out of range: use {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz."
            )
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise LiveInputError(f"channels={self.channels} is out of range: use 1-{MAX_CHANNELS} channels.")

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> LiveFormat:
        """The format a ``/v1/live`` query declares; other query parameters are left alone.

        ``encoding`` is required; ``linear16`` also requires ``sample_rate`` (guessing it wrong would turn
        speech into noise) and takes ``channels`` (default 1). A container's ``sample_rate`` and
        ``channels`` are ignored, as Deepgram does: its header says them.

        Raises:
            LiveInputError: A value missing or out of range; the reason says what is allowed.
        """
        encoding = query.get("encoding", "")
        if encoding not in ENCODINGS:
            said = f"encoding={encoding[:20]!r} is not supported" if encoding else "encoding is missing"
            raise LiveInputError(
                f"{said}: use linear16 (raw 16-bit PCM, with sample_rate and channels), "
                "webm (WebM/Opus, Chrome's MediaRecorder) or ogg (Ogg/Opus, Firefox's)."
            )
        if encoding != "linear16":
            return cls(cast(Encoding, encoding))
        return cls(
            "linear16",
            sample_rate=_query_int(query, "sample_rate", None, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE, "Hz"),
            channels=_query_int(query, "channels", 1, 1, MAX_CHANNELS, "channels"),
        )


def _identify(head: bytes) -> str | None:
    """The container or codec that ``head`` (a stream's first bytes) starts like, if a known one."""
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "WebM"
    if head.startswith(b"OggS"):
        return "Ogg"
    if head.startswith((b"RIFF", b"RF64")):
        return "WAV"
    if head.startswith(b"fLaC"):
        return "FLAC"
    if head[4:8] == b"ftyp":
        return "MP4/M4A"
    if head.startswith(b"ID3"):
        return "MP3"
    if len(head) >= 3 and head[0] == 0xFF:  # a frame header; random bytes match a bare sync word too often
        if head[1] & 0xF6 == 0xF0 and head[2] >> 2 & 0x0F < 13:  # ADTS: layer 0, a valid sampling index
            return "AAC"
        if head[1] & 0xE6 == 0xE2 and head[1] & 0x18 != 0x08 and 0 < head[2] >> 4 < 15 and head[2] & 0x0C != 0x0C:
            return "MP3"  # MPEG layer III: a known version, bit rate and sample rate
    return None


class LiveDecoder:
    """Turns one live session's frames into 16 kHz mono float32 samples, incrementally.

    ``feed`` and ``close`` block (PyAV work): call them from one thread at a time, never on the event
    loop (``asyncio.to_thread``). ``feed`` never queues: it returns once its frame is decoded, so the
    decoder holds one frame at most, and a caller that stops calling it (because its own consumer is
    behind) stops reading the socket: back-pressure, not buffering. Always call ``close``, also after an
    error: it ends the reader thread of a container.

    Attributes:
        format: The declared format.
        received_bytes: Bytes fed so far.
        decoded_samples: Samples returned so far (16 kHz).
    """

    def __init__(self, fmt: LiveFormat) -> None:
        self.format = fmt
        self.received_bytes = 0
        self.decoded_samples = 0
        self._head = b""
        self._inner: _PcmDecoder | _ContainerDecoder = (
            _PcmDecoder(fmt.sample_rate, fmt.channels)
            if fmt.encoding == "linear16"
            else _ContainerDecoder(fmt.encoding)
        )
        self._failed: LiveInputError | None = None
        self._closed = False

    @property
    def decoded_s(self) -> float:
        """Seconds of audio returned so far."""
        return self.decoded_samples / SAMPLE_RATE

    def feed(self, frame: bytes) -> np.ndarray:
        """Decode one binary frame.

        Args:
            frame: The frame's bytes, at most ``MAX_FRAME_BYTES``; any split of the stream (half a
                sample, half a WebM block) is fine.

        Returns:
            The samples this frame completed (float32, 16 kHz mono), possibly none.

        Raises:
            LiveInputError: The frame is too large (it is dropped; the decoder stays usable), or the bytes
                are not the declared encoding (the decoder is finished: call ``close``).
        """
        if self._closed:
            raise RuntimeError("feed() after close()")
        if self._failed is not None:
            raise self._failed
        if len(frame) > MAX_FRAME_BYTES:
            raise LiveInputError(
                f"An audio frame of {len(frame):,} bytes is too large: send at most {MAX_FRAME_BYTES:,} bytes "
                "per message (MediaRecorder's 250 ms slices are well under it)."
            )
        if not frame:
            return _EMPTY
        self.received_bytes += len(frame)
        try:
            if len(self._head) < _SIGNATURE_BYTES:
                self._head += frame[: _SIGNATURE_BYTES - len(self._head)]
                if len(self._head) < _SIGNATURE_BYTES:
                    self._inner.hold(frame)
                    return _EMPTY
                self._check_signature()
                frame = self._inner.release() + frame
            return self._count(self._inner.feed(frame))
        except LiveInputError as exc:
            self._failed = exc
            raise

    def close(self) -> np.ndarray:
        """End the stream: the samples still held (the decoder's and resampler's tails), then release all.

        Returns:
            The last samples, possibly none. A second call returns none.

        Raises:
            LiveInputError: The stream ended in a way that shows it was not the declared encoding (a
                container header cut short), unless an error was already raised by ``feed``.
        """
        if self._closed:
            return _EMPTY
        self._closed = True
        short = self._failed is None and 0 < len(self._head) < _SIGNATURE_BYTES
        if short and self.format.encoding != "linear16":  # no reader thread yet: nothing to release
            self._check_signature()
        try:
            return self._count(self._inner.close())
        except LiveInputError:
            if self._failed is not None:  # already said
                return _EMPTY
            raise

    def _check_signature(self) -> None:
        """Refuse a stream whose first bytes show it is another format than declared."""
        encoding = self.format.encoding
        found = _identify(self._head)
        if encoding == "linear16":
            if found is not None:
                raise LiveInputError(
                    f"These bytes are {found}, not raw linear16 PCM: declare encoding=webm or ogg for WebM or "
                    "Ogg, or send raw little-endian 16-bit samples with no file header."
                )
            return
        name = _NAMES[encoding]
        if found == name:
            return
        what = f"they are {found}" if found else f"they do not start with a {name} header"
        raise LiveInputError(
            f"These bytes are not {name} audio: {what}. {_ADVICE[encoding]}, or declare the encoding you send "
            "(encoding=webm, ogg or linear16)."
        )

    def _count(self, parts: list[np.ndarray]) -> np.ndarray:
        samples = np.concatenate(parts) if parts else _EMPTY
        self.decoded_samples += len(samples)
        return samples


class _PcmDecoder:
    """Raw little-endian 16-bit PCM, any rate and 1-2 channels: channels averaged, resampled by PyAV (swresample)."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        self._rate = sample_rate
        self._channels = channels
        self._frame_bytes = 2 * channels
        self._rest = b""  # the start of a sample (or of a stereo pair) split across frames
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

    def hold(self, data: bytes) -> None:
        self._rest += data

    def release(self) -> bytes:
        rest, self._rest = self._rest, b""
        return rest

    def feed(self, data: bytes) -> list[np.ndarray]:
        data = self._rest + data
        whole = len(data) - len(data) % self._frame_bytes
        self._rest = data[whole:]
        if not whole:
            return []
        pcm = np.frombuffer(data, dtype="<i2", count=whole // 2).reshape(-1, self._channels)
        # The mean of the channels: FFmpeg's downmix adds them at -3 dB each, louder than either (and clipping).
        mono = (pcm.mean(axis=1, dtype=np.float32) / 32768.0).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self._rate
        return [out.to_ndarray().reshape(-1) for out in self._resampler.resample(frame)]

    def close(self) -> list[np.ndarray]:
        if self._rest:
            logger.info("live PCM ended inside a sample", extra={"bytes": len(self._rest)})
        parts = self.feed(b"") if self._rest else []
        return parts + [out.to_ndarray().reshape(-1) for out in self._resampler.resample(None)]


class _Pipe:
    """The file PyAV reads in the reader thread: ``read`` blocks until a frame arrives or the stream ends.

    ``wait_drained`` lets the feeding thread wait until the reader has taken every byte and asks for more
    (or has stopped), so the feeder knows everything decodable has been decoded.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._ended = False
        self._hungry = False  # the reader waits for bytes
        self._stopped = False  # the reader thread has finished
        self.hit_end = False  # the reader was told the stream ended

    def put(self, data: bytes) -> None:
        with self._cond:
            self._chunks.append(data)
            self._hungry = False
            self._cond.notify_all()

    def end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._chunks.clear()
            self._cond.notify_all()

    def wait_drained(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._stopped or (self._hungry and not self._chunks))

    def read(self, size: int) -> bytes:
        with self._cond:
            while not self._chunks and not self._ended and not self._stopped:
                self._hungry = True
                self._cond.notify_all()
                self._cond.wait()
            if not self._chunks:
                self.hit_end = self._ended
                return b""
            chunk = self._chunks.popleft()
            if len(chunk) > size:
                self._chunks.appendleft(chunk[size:])
                chunk = chunk[:size]
            return chunk


class _ContainerDecoder:
    """WebM or Ogg demuxed and decoded by PyAV in a reader thread, as the bytes arrive."""

    def __init__(self, encoding: Literal["webm", "ogg"]) -> None:
        self._encoding = encoding
        self._name = _NAMES[encoding]
        self._pipe = _Pipe()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._out: list[np.ndarray] = []
        self._error: BaseException | None = None
        self._undecoded = 0  # bytes fed since the last decoded sample
        self._decoded = 0
        self._held = b""

    def hold(self, data: bytes) -> None:
        self._held += data

    def release(self) -> bytes:
        held, self._held = self._held, b""
        return held

    def feed(self, data: bytes) -> list[np.ndarray]:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"live-{self._encoding}-reader", daemon=True)
            self._thread.start()
        self._pipe.put(data)
        self._pipe.wait_drained()
        parts = self._take()
        if parts:
            self._undecoded = 0
        else:
            self._undecoded += len(data)
            if self._undecoded > MAX_UNDECODED_BYTES and self._error is None:
                self._error = self._undecodable()
        self._raise()
        return parts

    def close(self) -> list[np.ndarray]:
        if self._thread is None:
            if self._held:  # fewer bytes than a signature: not even a header
                raise self._header_cut()
            return []
        self._pipe.end()
        self._thread.join()
        parts = self._take()
        self._raise()
        return parts

    def _take(self) -> list[np.ndarray]:
        with self._lock:
            parts, self._out = self._out, []
        self._decoded += sum(len(part) for part in parts)
        return parts

    def _raise(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            self._pipe.stop()  # the reader, if still running, stops at its next read
            raise error

    def _undecodable(self) -> LiveInputError:
        limit = f"{MAX_UNDECODED_BYTES // 1024} KiB"
        if not self._decoded:
            return LiveInputError(
                f"These bytes are not {self._name} audio: the first {limit} held no audio that could be decoded. "
                f"{_ADVICE[self._encoding]}."
            )
        return LiveInputError(
            f"The {self._name} audio stopped decoding after {self._decoded / SAMPLE_RATE:.0f} s: the next {limit} "
            "held none. The recording was kept up to there; start a new session to go on."
        )

    def _header_cut(self) -> LiveInputError:
        return LiveInputError(
            f"The stream ended before its {self._name} header was complete, so it held no audio. "
            f"{_ADVICE[self._encoding]}."
        )

    def _run(self) -> None:
        """The reader thread: open, demux, decode and resample until the pipe ends; errors go to ``_error``."""
        try:
            try:
                container = av.open(self._pipe, "r", format=_DEMUXERS[self._encoding])
            except (av.error.FFmpegError, OSError, ValueError) as exc:
                logger.info("live demuxer refused input", extra={"error": str(exc)[:200]})
                raise self._header_cut() if self._pipe.hit_end else self._bad_header() from exc
            with container:
                self._decode(container)
        except BaseException as exc:  # handed to the feeding thread, which raises it
            self._error = exc
        finally:
            self._pipe.stop()

    def _bad_header(self) -> LiveInputError:
        return LiveInputError(
            f"These bytes are not {self._name} audio: its header could not be read. {_ADVICE[self._encoding]}."
        )

    def _decode(self, container: av.container.InputContainer) -> None:
        if not container.streams.audio:
            raise LiveInputError(
                f"These bytes are not {self._name} audio: the stream has no audio track. {_ADVICE[self._encoding]}."
            )
        stream = container.streams.audio[0]
        resampler = Resampler()
        bad = 0
        try:
            for packet in container.demux(stream):
                try:
                    frames = cast(list[av.AudioFrame], packet.decode())
                except (av.error.FFmpegError, ValueError) as exc:
                    bad += 1
                    logger.info("skipped undecodable live packet", extra={"bad": bad, "error": str(exc)[:200]})
                    if bad > MAX_BAD_PACKETS:
                        raise self._broke_off() from exc
                    continue
                bad = 0
                for frame in frames:
                    self._emit(list(resampler.resample(frame)))
        except av.error.FFmpegError as exc:
            raise self._broke_off() from exc
        self._emit(list(resampler.flush()))

    def _emit(self, parts: list[np.ndarray]) -> None:
        if parts:
            with self._lock:
                self._out.extend(parts)

    def _broke_off(self) -> LiveInputError:
        return LiveInputError(
            f"The {self._name} audio broke off: the bytes stopped being valid {self._name}. The recording was kept "
            "up to there; start a new session to go on."
        )

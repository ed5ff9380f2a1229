"""Decoding untrusted media to 16 kHz mono pieces, as the bytes arrive.

``open_media`` / ``MediaReader`` wrap PyAV with limits (duration, decoded samples, bad packets) and
map every failure to a ``streamer.errors.InputError``. Playlists, web pages and text are refused
from their first bytes; local files are opened through Python, and the demuxer may not open any
other file or URL (no HLS/concat tricks from uploads). The decoded audio (``MediaReader.samples``)
is cut by ``streamer.chunker.cut``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from types import TracebackType
from typing import IO, Any, BinaryIO, cast

import av
import av.error
import numpy as np

from streamer.chunker import SAMPLE_RATE, Piece, cut
from streamer.errors import (
    PLAN_SLACK_S,
    CorruptMedia,
    InputError,
    NoAudioStream,
    NotMedia,
    PlanLimit,
    SourceNotFound,
    TooLong,
    UnsupportedInput,
    duration_refusal,
    human_duration,
)

logger = logging.getLogger(__name__)

# Undecodable packets skipped (as ffmpeg does) before the whole input counts as corrupt.
MAX_BAD_PACKETS = 20
# Decoding may run this far past max_duration_s before TooLong: metadata and decoders disagree slightly.
_DURATION_GRACE_S = 1.0
# An input that stops this much short of its declared duration is reported as truncated
# (encoder delay and padding make declared and decoded durations differ by a few frames).
_EARLY_END_MIN_S = 0.25
_EARLY_END_FRACTION = 0.02
# Demuxers that read other files or URLs named in the input, or that are not media at all.
_MANIFEST_FORMATS = frozenset({"hls", "applehttp", "concat", "dash", "sdp", "rtsp", "rtp", "ffmetadata", "lavfi"})
_TEXT_FORMATS = frozenset({"tty", "srt", "webvtt", "ass", "subviewer", "subviewer1", "microdvd", "jacosub"})
_IMAGE_CODECS = frozenset(
    {"png", "apng", "mjpeg", "jpeg2000", "jpegls", "bmp", "gif", "webp", "tiff", "qoi", "ppm", "pgm"}
)
_MEDIA_MAGIC = (b"ID3", b"RIFF", b"RF64", b"OggS", b"fLaC", b"\x1aE\xdf\xa3", b"FORM", b"#!AMR", b"MAC ", b"wvpk")


class _NestedOpenRefused(Exception):
    """The demuxer tried to open another file or URL named inside the input."""


def _refuse_nested_open(url: str, flags: int, options: dict[str, Any]) -> IO[bytes]:
    raise _NestedOpenRefused(url)


def _peek(source: BinaryIO, size: int = 4096) -> bytes:
    """The first bytes of ``source`` without consuming them, when the object allows it."""
    peek = getattr(source, "peek", None)
    if callable(peek):
        return bytes(peek(size))[:size]
    if source.seekable():
        position = source.tell()
        head = source.read(size)
        source.seek(position)
        return head
    return b""


def _looks_like_text(head: bytes) -> bool:
    if len(head) < 16 or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # only a multi-byte character cut at the end is fine
            return False
        text = head[: exc.start].decode("utf-8")
    return all(ch.isprintable() or ch in "\t\n\r\f\v\x1b" for ch in text)


def _check_head(head: bytes) -> None:
    """Refuse playlists, web pages and text before the demuxer sees them."""
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    low = stripped[:512].lower()
    if low.startswith((b"#extm3u", b"ffconcat", b"[playlist]", b"#extinf")) or b"<mpd" in low or b"<smil" in low:
        raise UnsupportedInput(
            "This is a playlist or stream manifest, not a recording. Upload the audio or video file itself."
        )
    if low.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (low.startswith(b"<") and b"<html" in low):
        raise NotMedia("This is a web page, not an audio or video file. Link to the media itself, or upload the file.")
    if _looks_like_text(head):
        raise NotMedia("This is a text file, not audio or video. Upload a recording (for example MP3, M4A or MP4).")


def _index_at_end(head: bytes) -> bool:
    """Whether an MP4/MOV file puts its media data before its index (moov), judging by its first boxes.

    Such a file cannot be decoded from a non-seekable stream: the demuxer needs the index first.
    """
    offset = 0
    while offset + 8 <= len(head):
        size = int.from_bytes(head[offset : offset + 4], "big")
        kind = head[offset + 4 : offset + 8]
        if kind == b"moov":
            return False
        if kind == b"mdat":
            return True
        if size == 1 and offset + 16 <= len(head):
            size = int.from_bytes(head[offset + 8 : offset + 16], "big")
        if size < 8:
            return False
        offset += size
    return False


def _size(file: BinaryIO) -> int | None:
    """The size of a file on disk, or None for a stream."""
    try:
        return os.fstat(file.fileno()).st_size
    except (OSError, AttributeError, ValueError):
        return None


def _ogg_unterminated(file: BinaryIO) -> bool:
    """Whether a seekable Ogg file lacks its end-of-stream page: it was cut short.

    Ogg has no duration in its header; its last page carries an end-of-stream flag instead.
    """
    if not file.seekable():
        return False
    position = file.tell()
    try:
        end = file.seek(0, os.SEEK_END)
        file.seek(max(0, end - 65_536))
        tail = file.read()
    finally:
        file.seek(position)
    last = tail.rfind(b"OggS")
    return last < 0 or last + 5 >= len(tail) or not tail[last + 5] & 0x04


def _wav_duration(head: bytes) -> float | None:
    """The duration a WAV header declares (its data size over its byte rate), if ``head`` is a WAV header.

    A data size of 0 or 0xFFFFFFFF means "unknown" (written while streaming) and gives None.
    """
    if not (head.startswith(b"RIFF") and head[8:12] == b"WAVE"):
        return None
    byte_rate: int | None = None
    offset = 12
    while offset + 8 <= len(head):
        kind, size = head[offset : offset + 4], int.from_bytes(head[offset + 4 : offset + 8], "little")
        if kind == b"fmt " and offset + 16 <= len(head):
            byte_rate = int.from_bytes(head[offset + 16 : offset + 20], "little")
        elif kind == b"data":
            if not byte_rate or size in (0, 0xFFFFFFFF):
                return None
            return size / byte_rate
        offset += 8 + size + (size & 1)
    return None


def _has_media_magic(head: bytes) -> bool:
    if head.startswith(_MEDIA_MAGIC) or head[4:8] == b"ftyp" or head[:4] == b"\x30\x26\xb2\x75":
        return True
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0  # MPEG audio / ADTS frame sync


def open_media(
    source: str | os.PathLike[str] | BinaryIO,
    *,
    max_duration_s: float,
    plan: PlanLimit | None = None,
    close_source: bool = False,
) -> MediaReader:
    """Open untrusted media for decoding, refusing what is not a single audio recording.

    Args:
        source: A local path, or a readable binary file-like (``HttpStream`` or an open file);
            a non-seekable stream is decoded as it arrives.
        max_duration_s: Longest accepted duration; checked against the metadata now and against the
            decoded time while decoding.
        plan: The job's plan limit, when it is under ``max_duration_s``: checked against the metadata
            now; a recording whose metadata does not say how long it is is cut at it while decoding.
        close_source: Close a file-like ``source`` when the reader closes (a path's file always is).

    Returns:
        A reader; close it (or use it as a context manager).

    Raises:
        SourceNotFound: The path does not exist or is not a file.
        NotMedia: Text, a web page, or bytes no demuxer recognises.
        UnsupportedInput: A playlist or manifest (HLS, concat...), or an audio codec that cannot be decoded.
        NoAudioStream: Media without an audio track.
        CorruptMedia: A recognised format whose header is broken.
        TooLong: The metadata duration is over the limit (``OverPlanLimit``: over the plan's).
        TooLarge, UnreachableURL: Raised by an ``HttpStream`` source while the header is read.
    """
    owned: BinaryIO | None = None
    file: BinaryIO
    if isinstance(source, str | os.PathLike):
        try:
            owned = file = open(source, "rb")  # the reader owns it until close()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise SourceNotFound(f"There is no file at {source}: it was moved or deleted. Send it again.") from exc
        except PermissionError as exc:
            raise SourceNotFound(f"{source} cannot be read: permission denied. Check its permissions.") from exc
    else:
        file = source
        if close_source:
            owned = source
    try:
        head = _peek(file)
        _check_head(head)
        if head[4:8] == b"ftyp" and not file.seekable() and _index_at_end(head):
            raise UnsupportedInput(
                "This MP4/M4A/MOV file keeps its index at the end, so it cannot be read while downloading. "
                "Upload the file instead, or export it with the 'fast start' option."
            )
        container = _open_container(file, head)
        return MediaReader(
            container,
            max_duration_s=max_duration_s,
            plan=plan,
            file=owned,
            header_duration=_wav_duration(head),
            file_size=_size(file),
            unterminated=head.startswith(b"OggS") and _ogg_unterminated(file),
        )
    except BaseException:
        if owned is not None:
            owned.close()
        raise


def _open_container(file: BinaryIO, head: bytes) -> av.container.InputContainer:
    try:
        container = av.open(file, "r", io_open=_refuse_nested_open)
    except InputError:
        raise
    except _NestedOpenRefused as exc:
        raise UnsupportedInput(
            "The file refers to other files or links (a playlist or concat list). Upload the recording itself."
        ) from exc
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        cause = exc.__context__ or exc.__cause__
        if isinstance(cause, InputError):  # raised by an HttpStream while PyAV was reading
            raise cause from exc
        if isinstance(cause, _NestedOpenRefused) or isinstance(exc, PermissionError):
            raise UnsupportedInput(
                "The file refers to other files or links (a playlist or concat list). Upload the recording itself."
            ) from exc
        logger.info("demuxer refused input", extra={"error": str(exc)[:200]})
        if _has_media_magic(head):
            raise CorruptMedia(
                "The file looks like audio or video but is too damaged to be read. "
                "Export or download it again and retry."
            ) from exc
        raise NotMedia(
            "This file is not a recognised audio or video format. Upload a recording (for example MP3, M4A or MP4)."
        ) from exc
    format_names = set(container.format.name.split(","))
    if format_names & _MANIFEST_FORMATS:
        container.close()
        raise UnsupportedInput("This is a playlist or stream manifest, not a recording. Upload the file itself.")
    if format_names & _TEXT_FORMATS:
        container.close()
        raise NotMedia("This is a text or subtitle file, not audio or video. Upload the recording itself.")
    return container


class MediaReader:
    """Decodes one input's audio track into pieces, with limits, as the bytes arrive.

    Attributes:
        duration: Seconds, from the container metadata when it says (None for many streams).
        declared_duration: What the file's header claims, when that is more (a truncated WAV).
        format_name: The demuxer's name, e.g. ``"mp3"`` or ``"mov,mp4,m4a,3gp,3g2,mj2"``.
        codec_name: The audio decoder's name.
        decoded_s: Seconds of audio decoded so far.
        bad_packets: Packets that failed to decode and were skipped.
        warnings: What was lost (from a damaged input, or past the plan's limit), for the user, once
            ``pieces`` has ended.
        stopped: Whether decoding stopped at the plan's limit, with more audio to come.
    """

    def __init__(
        self,
        container: av.container.InputContainer,
        *,
        max_duration_s: float,
        plan: PlanLimit | None = None,
        file: BinaryIO | None = None,
        header_duration: float | None = None,
        file_size: int | None = None,
        unterminated: bool = False,
    ) -> None:
        self._container = container
        self._file = file
        self.max_duration_s = max_duration_s
        self.max_samples = int((max_duration_s + _DURATION_GRACE_S) * SAMPLE_RATE)
        self.plan = plan
        self.stopped = False
        self._stop_samples: int | None = None
        self.format_name = container.format.name
        self.decoded_s = 0.0
        self.bad_packets = 0
        self.warnings: list[str] = []
        self._warned_short = False
        self._unterminated = unterminated
        try:
            self._stream = self._pick_stream()
            self.codec_name = self._stream.codec_context.name
            self.duration = self._metadata_duration()
            # FFmpeg trusts the file size over a WAV header's claim; the claim shows a truncated file.
            claimed = None if self._estimated_from_size(file_size) else self.duration
            self.declared_duration = max(header_duration or 0.0, claimed or 0.0) or None
            refusal = duration_refusal(self.duration, max_duration_s=max_duration_s, plan=plan)
            if refusal is not None:
                raise refusal
            if plan is not None:  # a duration the metadata vouched for may use the slack it was given
                slack_s = PLAN_SLACK_S if self.duration is not None else 0.0
                self._stop_samples = int((plan.max_s + slack_s) * SAMPLE_RATE)
        except BaseException:
            self.close()
            raise

    def _pick_stream(self) -> av.audio.stream.AudioStream:
        streams = self._container.streams
        if not streams.audio:
            if self._is_image():
                raise NotMedia(
                    "This is a picture, not audio or video. Upload a recording (for example MP3, M4A or MP4)."
                )
            if streams.video:
                raise NoAudioStream(
                    "This video has no sound track, so there is nothing to transcribe. Send a file with audio."
                )
            raise NotMedia("This file contains no audio. Upload a recording (for example MP3, M4A or MP4).")
        stream = cast(av.audio.stream.AudioStream, streams.best("audio") or streams.audio[0])
        if stream.codec_context is None:
            raise UnsupportedInput(
                "The audio in this file cannot be decoded: its codec is not supported, or the file is damaged. "
                "Convert it to MP3, M4A or WAV, or export it again."
            )
        return stream

    def _is_image(self) -> bool:
        """A still image (PNG, JPEG, GIF...): FFmpeg opens those as one-stream "videos"."""
        name = self.format_name
        if name == "image2" or name.endswith("_pipe") or name in ("gif", "apng", "webp"):
            return True
        codecs = {stream.codec_context.name for stream in self._container.streams.video if stream.codec_context}
        return bool(codecs) and codecs <= _IMAGE_CODECS

    def _estimated_from_size(self, file_size: int | None) -> bool:
        """Whether the metadata duration is only the file's size over its bit rate (MP3 without a
        frame count, files joined end to end): such an estimate cannot show that a file is cut short."""
        bit_rate = self._stream.bit_rate
        if self.duration is None or not file_size or not bit_rate:
            return False
        return abs(file_size * 8 / bit_rate - self.duration) <= 0.05 * self.duration

    def _metadata_duration(self) -> float | None:
        if self._container.duration is not None and self._container.duration > 0:
            return self._container.duration / av.time_base
        stream = self._stream
        if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
            return float(stream.duration * stream.time_base)
        return None

    def __enter__(self) -> MediaReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the demuxer and any file the reader owns."""
        self._container.close()
        if self._file is not None:
            self._file.close()

    def pieces(self, *, min_s: float, max_s: float, silence_dbfs: float, first_max_s: float) -> Iterator[Piece]:
        """Decode and yield pieces as soon as each one is cut (blocking; run it in a thread).

        :meth:`samples` cut by :func:`streamer.chunker.cut`; see both for the arguments and what is raised.
        """
        yield from cut(self.samples(), min_s=min_s, max_s=max_s, silence_dbfs=silence_dbfs, first_max_s=first_max_s)

    def samples(self) -> Iterator[np.ndarray]:
        """Decode and yield the audio as 16 kHz mono float32 blocks, in order (blocking; run it in a thread).

        Damage policy: what is sound is kept. A packet that fails to decode is skipped, as ffmpeg
        does; a change of sample rate or channels mid-stream (two files joined) is followed. When
        the data breaks off (a demuxer error, or mostly undecodable packets) or the audio ends well
        short of what the header declares (a truncated file, a lying header), every piece decoded
        so far is still yielded, the decoding ends normally, and ``warnings`` says what was lost.
        Only input with no decodable audio at all raises ``CorruptMedia``.

        Plan policy: decoding stops at the plan's limit (the piece that crosses it is cut there, and
        nothing after it is read), then ends normally with a warning that says so.

        Yields:
            The audio from 0 s, in blocks of the decoder's frame sizes.

        Raises:
            TooLong: Decoded time passed ``max_duration_s`` (the blocks before that were yielded).
            CorruptMedia: Nothing could be decoded.
            TooLarge, UnreachableURL: From an ``HttpStream`` source during the download.
        """
        resampler = Resampler()
        decoded = 0
        for frame in self._frames():
            try:
                resampled = list(resampler.resample(frame))
            except (av.error.FFmpegError, ValueError) as exc:  # a damaged frame the resampler cannot take
                logger.info("skipped unresamplable frame", extra={"error": str(exc)[:200]})
                self.bad_packets += 1
                resampler = Resampler()
                continue
            for samples in resampled:
                samples, decoded = self._take(samples, decoded)
                yield samples
            if self.stopped:
                logger.info("decoding stopped at the plan's limit", extra={"decoded_s": self.decoded_s})
                break
        if not self.stopped:
            try:
                tail = list(resampler.flush())
            except (av.error.FFmpegError, ValueError) as exc:
                logger.info("resampler flush failed", extra={"error": str(exc)[:200]})
                tail = []
            for samples in tail:
                samples, decoded = self._take(samples, decoded)
                yield samples
        self._check_complete(decoded)

    def _frames(self) -> Iterator[av.AudioFrame]:
        """The decoded frames, skipping bad packets; stops early (with a warning) where the data breaks off."""
        packets = self._container.demux(self._stream)
        good = 0
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except InputError:
                raise
            except (av.error.FFmpegError, OSError, ValueError) as exc:
                if isinstance(exc.__context__, InputError):
                    raise exc.__context__ from exc
                logger.warning("demux failed", extra={"decoded_s": self.decoded_s, "error": str(exc)[:200]})
                self._broke_off()
                return
            try:
                frames = packet.decode()
            except (av.error.FFmpegError, ValueError) as exc:
                self.bad_packets += 1
                logger.info("skipped undecodable packet", extra={"bad_packets": self.bad_packets, "error": str(exc)})
                if self.bad_packets > MAX_BAD_PACKETS and self.bad_packets > good:  # mostly garbage from here
                    self._broke_off()
                    return
                continue
            good += 1
            yield from cast(list[av.AudioFrame], frames)

    def _take(self, samples: np.ndarray, decoded: int) -> tuple[np.ndarray, int]:
        """The part of a decoded block to keep (none past the plan's limit), and the samples decoded so far."""
        if self._stop_samples is not None and decoded + len(samples) > self._stop_samples:
            samples = samples[: max(0, self._stop_samples - decoded)]  # what is past the plan's limit is dropped
            self.stopped = True
        decoded += len(samples)
        self.decoded_s = decoded / SAMPLE_RATE
        if decoded > self.max_samples:
            raise TooLong.over_limit(self.decoded_s, self.max_duration_s, while_decoding=True)
        return samples, decoded

    def _broke_off(self) -> None:
        if self.decoded_s > 0:
            self.warnings.append(
                f"The file is damaged after {human_duration(self.decoded_s)}: only the part before that was "
                "transcribed. Export or download it again for the rest."
            )
            self._warned_short = True

    def _check_complete(self, decoded: int) -> None:
        decoded_s = decoded / SAMPLE_RATE
        if decoded == 0 and not self.stopped:
            raise CorruptMedia(
                "The file is damaged: no audio could be decoded from it. Export or download it again and retry.",
                decoded_s=0.0,
            )
        if self.bad_packets:
            logger.info("decoded with skipped packets", extra={"bad_packets": self.bad_packets})
            self.warnings.append(
                f"Parts of the file are damaged: the audio skips over {_stretches(self.bad_packets)} that could "
                "not be decoded."
            )
        if self.stopped and self.plan is not None:  # the rest was never read: it may be whole or not
            self.warnings.append(self.plan.stop_warning())
            return
        if self._unterminated and not self._warned_short:
            self.warnings.append(
                f"The file breaks off after {human_duration(decoded_s)} without its proper end: it is probably "
                "truncated (an incomplete upload or download). What it holds was transcribed; send the complete "
                "file for the rest."
            )
            return
        declared = self.declared_duration
        if declared is not None and not self._warned_short:
            shortfall = declared - decoded_s
            if shortfall > max(_EARLY_END_MIN_S, _EARLY_END_FRACTION * declared):
                self.warnings.append(
                    f"The file says it lasts {human_duration(declared)} but stops after {human_duration(decoded_s)}: "
                    "it is probably truncated (an incomplete upload or download). What it holds was transcribed; "
                    "send the complete file for the rest."
                )


def _stretches(count: int) -> str:
    return "1 short stretch" if count == 1 else f"{count} short stretches"


class Resampler:
    """Resamples any decoded audio to 16 kHz mono float32, following format changes mid-stream.

    PyAV's ``AudioResampler`` is set up by the first frame it sees and refuses frames of
    another rate or layout; joined or damaged files change both. A new resampler is made
    (after draining the old one) whenever the input format changes.
    """

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None
        self._input: tuple[str, str, int] | None = None

    def resample(self, frame: av.AudioFrame) -> Iterator[np.ndarray]:
        """Mono 16 kHz samples of ``frame`` (possibly none yet: the resampler buffers)."""
        if not frame.sample_rate or not frame.samples:
            return
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._input:
            if self._input is not None:
                logger.info("audio format changed", extra={"before": self._input, "after": key})
            yield from self.flush()
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            self._input = key
        assert self._resampler is not None
        for out in self._resampler.resample(frame):
            yield _finite(out.to_ndarray().reshape(-1))

    def flush(self) -> Iterator[np.ndarray]:
        """What the current resampler still holds."""
        if self._resampler is not None:
            for out in self._resampler.resample(None):
                yield _finite(out.to_ndarray().reshape(-1))
            self._resampler = None


def _finite(samples: np.ndarray) -> np.ndarray:
    """Damaged float streams can decode to NaN, infinity or huge values: keep them in [-1, 1]."""
    if not np.isfinite(samples).all():
        samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(samples, -1.0, 1.0, out=samples)

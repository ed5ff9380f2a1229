"""The chunk cache's key: the chunk's audio and everything that changes the answer to it.

A chunk is keyed by the SHA-256 of its encoded audio without its container (the Ogg muxer
gives each file a random stream serial, so the same audio encoded twice differs in its bytes,
not in its packets), with the backend's name and :meth:`~transcriber.asr.AsrBackend.answer_options`
for the job's prompt: the model, the prompt as sent, the language and the decoding options.
With the cache off (``SCRIBE_CHUNK_CACHE=false``) the key also names the job, so only a
redelivery of the same chunk of the same job is answered from it: a retried call is never
paid twice, and nothing is shared between jobs.
"""

from __future__ import annotations

import hashlib
import io

import av
import msgspec

from transcriber.asr import AsrBackend

# Bump when what a stored answer is made of changes (how a backend's answer is turned into segments).
VERSION = 1

_sorted = msgspec.json.Encoder(order="sorted")


def audio_digest(codec: str, audio: bytes) -> bytes:
    """SHA-256 of a chunk's encoded audio: its codec, codec header and packets (blocking: a few ms a minute).

    Audio that cannot be demuxed is hashed as it is (its call will fail anyway).
    """
    digest = hashlib.sha256(f"{codec}\0".encode())
    try:
        with av.open(io.BytesIO(audio), "r") as container:
            stream = container.streams.audio[0]
            digest.update(bytes(stream.codec_context.extradata or b""))
            for packet in container.demux(stream):
                if packet.size:
                    digest.update(f"{packet.pts},{packet.duration},{packet.size}\0".encode())
                    digest.update(bytes(packet))
    except (av.FFmpegError, IndexError, ValueError):
        return hashlib.sha256(b"bytes\0" + audio).digest()
    return digest.digest()


def chunk_key(digest: bytes, backend: AsrBackend, prompt: str | None, *, job_id: str | None = None) -> bytes:
    """The key of a chunk (``digest``: :func:`audio_digest`) for ``backend``, for a job with ``prompt``.

    Args:
        digest: The chunk's audio digest.
        backend: The backend that would answer.
        prompt: The job's own prompt.
        job_id: Only this job's calls share the key (the cache is off), or None: every job's do.
    """
    answer = {"version": VERSION, "backend": backend.name, "job_id": job_id, **backend.answer_options(prompt)}
    return hashlib.sha256(digest + _sorted.encode(answer)).digest()

"""Decode cost of live audio (streamer.live.LiveDecoder): CPU seconds per second of audio, per encoding.

The first ``--seconds`` of the 4'38" meeting recording are made into what ``WS /v1/live`` clients
send (tests.live_media): WebM/Opus and Ogg/Opus as MediaRecorder streams them, cut into 250 ms
slices, and raw linear16 PCM in 250 ms frames at 16 kHz mono, 48 kHz mono and 44.1 kHz stereo.
Each stream is fed to a fresh decoder as fast as it decodes. Printed per encoding: the process CPU
time (the reader thread included) and the wall time per second of audio, the slowest frame, and
how many real-time sessions one core would carry at that cost.

Run from the repository root (a few seconds)::

    .venv/bin/python -m bench.live_decode [--seconds 120]
"""

from __future__ import annotations

import argparse
import time

from streamer.live import LiveDecoder, LiveFormat
from tests.live_media import RATE, ogg_pages, pcm, recorded, slices
from tests.media import MEETING, load_samples


def _frames(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="seconds of the meeting recording to use")
    args = parser.parse_args()
    samples = load_samples(MEETING, seconds=args.seconds)
    seconds = len(samples) / RATE
    webm, ogg = recorded(samples, "webm"), recorded(samples, "ogg")
    cases = [
        ("webm (Opus, 250 ms slices)", LiveFormat("webm"), list(slices(webm, seconds))),
        ("ogg (Opus, 250 ms pages)", LiveFormat("ogg"), ogg_pages(ogg)),
        ("linear16 16 kHz mono", LiveFormat("linear16", sample_rate=16000), _frames(pcm(samples, 16000, 1), 8000)),
        ("linear16 48 kHz mono", LiveFormat("linear16", sample_rate=48000), _frames(pcm(samples, 48000, 1), 24000)),
        (
            "linear16 44.1 kHz stereo",
            LiveFormat("linear16", sample_rate=44100, channels=2),
            _frames(pcm(samples, 44100, 2), 44100),
        ),
    ]
    print(f"{seconds:.1f} s of {MEETING.name}")
    print(
        f"{'encoding':28} {'frames':>7} {'kB':>7} {'CPU ms/audio s':>15} {'wall ms/audio s':>16} {'max frame ms':>13}"
    )
    for name, fmt, frames in cases:
        decoder = LiveDecoder(fmt)
        decoded = 0
        slowest = 0.0
        cpu, wall = time.process_time(), time.perf_counter()
        for frame in frames:
            start = time.perf_counter()
            decoded += len(decoder.feed(frame))
            slowest = max(slowest, time.perf_counter() - start)
        decoded += len(decoder.close())
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        size = sum(len(frame) for frame in frames) / 1000
        print(
            f"{name:28} {len(frames):>7} {size:>7.0f} {1000 * cpu / seconds:>15.2f} {1000 * wall / seconds:>16.2f} "
            f"{1000 * slowest:>13.2f}  decoded {decoded / RATE:.2f} s, ~{seconds / cpu:.0f} sessions per core"
        )


if __name__ == "__main__":
    main()

"""The live policy (LocalAgreement-2, transcriber.live) on the reference clips, against file mode.

Each clip with a reference in ``manifest.tsv`` is fed to :class:`transcriber.live.LocalAgreement`
one second at a time, as fast as the embedded model decodes (not paced at real time), and then
transcribed whole by the local backend (file mode). Printed:

- CER of the committed lines and of file mode, scored as bench/asr_eval.py scores;
- commit delay: for each committed line, the audio heard when it was committed minus the end
  of its audio (what the policy adds, in audio seconds), median and p90; and the same plus the
  decode time of the step that committed it (what real-time pacing adds at least: a step whose
  decode takes longer than a second also delays the steps after it);
- decode time per step (median, p90, max) and decodes per second of audio.

Targets (issue 19): live CER at most 0.03 above file mode; delay median <= 3 s, p90 <= 5 s.

Run from the repository root (about 3 minutes on 2 cores)::

    .venv/bin/python -m bench.live_policy [--data DIR] [--threads N] [--clips NAME,...] [--settled-s S]

``--settled-s inf`` is the policy before stable text was committed without a break (the baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from faster_whisper import decode_audio

from bench.asr_eval import edit_distance, normalise, read_clips
from core.settings import Settings
from tests.paths import AUDIO
from transcriber.live import SAMPLE_RATE, SETTLED_S, LocalAgreement, local_decoder
from transcriber.local import LocalBackend
from transcriber.model import load_model


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


async def main_async(args: argparse.Namespace) -> int:
    settings = Settings(asr_threads=args.threads, asr_workers=1)
    backend = LocalBackend(load_model(settings), settings)
    clips = read_clips(args.data)
    if args.clips:
        clips = [clip for clip in clips if clip.name in args.clips.split(",")]
    errors_live = errors_file = ref_chars = 0
    delays: list[float] = []
    paced: list[float] = []
    decode_s: list[float] = []
    audio_s = 0.0
    for clip in clips:
        samples = decode_audio(str(clip.path))
        policy = LocalAgreement(local_decoder(backend), settled_s=args.settled_s)
        texts: list[str] = []
        for at in range(0, len(samples), SAMPLE_RATE):
            policy.feed(samples[at : at + SAMPLE_RATE])
            if not policy.ready:
                continue
            started = time.perf_counter()
            update = await policy.step()
            took = time.perf_counter() - started
            decode_s.append(took)
            for line in update.lines:
                texts.append(line.segment.text)
                delays.append(policy.heard_until - line.segment.end)
                paced.append(policy.heard_until - line.segment.end + took)
        started = time.perf_counter()
        final = await policy.finish()
        took = time.perf_counter() - started
        for line in final.lines:  # at the session's end: the delay is the last decode's
            texts.append(line.segment.text)
            delays.append(policy.heard_until - line.segment.end)
            paced.append(policy.heard_until - line.segment.end + took)
        audio_s += len(samples) / SAMPLE_RATE
        whole = await backend.transcribe(clip.path.read_bytes(), duration=clip.duration)
        reference = normalise(clip.reference)
        live_errors = edit_distance(reference, normalise("".join(texts)))
        file_errors = edit_distance(reference, normalise("".join(s.text for s in whole.segments)))
        errors_live += live_errors
        errors_file += file_errors
        ref_chars += len(reference)
        if args.verbose:
            print(
                f"  {clip.name:36s} live={live_errors / max(1, len(reference)):.3f} "
                f"file={file_errors / max(1, len(reference)):.3f} lines={len(texts)} {'|'.join(texts)}",
                file=sys.stderr,
            )
    live_cer, file_cer = errors_live / max(1, ref_chars), errors_file / max(1, ref_chars)
    print(f"clips: {len(clips)}, audio {audio_s:.1f} s, threads {args.threads}")
    print(f"CER live {live_cer:.3f}  file {file_cer:.3f}  difference {live_cer - file_cer:+.3f} (target <= +0.03)")
    print(
        f"commit delay (audio s): median {statistics.median(delays):.2f}  p90 {percentile(delays, 0.9):.2f} "
        f"(targets 3 / 5) over {len(delays)} lines"
    )
    print(f"commit delay + committing decode: median {statistics.median(paced):.2f}  p90 {percentile(paced, 0.9):.2f}")
    print(
        f"decode per step: median {statistics.median(decode_s):.2f} s  p90 {percentile(decode_s, 0.9):.2f} s  "
        f"max {max(decode_s):.2f} s; {len(decode_s) / audio_s:.2f} decodes per audio second"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=AUDIO)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clips", default="", help="comma-separated file names (default: every clip with a reference)")
    parser.add_argument(
        "--settled-s", type=float, default=SETTLED_S, help="commit stable text this old without a break (inf: never)"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())

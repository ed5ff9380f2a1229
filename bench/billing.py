"""What the paid API would bill for an input, as the streamer cuts it: billed minutes per input minute.

Prints figures; it is not a test. The input (by default the meeting
``ktdc_meeting_2025-01-06_other_matters.mp3`` looped to 10 minutes, as ``bench.pipeline`` builds it)
goes through the streamer's own decoding path (``streamer.service._decode``: the reader, the
chunker, Silero VAD, the speech cutter for an API backend, the encoder) without NATS, and each
chunk it would publish is billed as OpenAI bills a call (its audio rounded to the nearest second,
at least 1 s: ``transcriber.openai_api._billed_seconds``). Nothing is sent anywhere.

It compares the chunks cut for the local backend (40-60 s whole pieces, the only chunking there was
before an API backend had its own) with the ones cut for the openai backend (10-20 s at pauses,
speech only), with the settings of the environment otherwise. Run from the repository root (about
20 s for 10 minutes on 2 cores)::

    .venv/bin/python -m bench.billing
    .venv/bin/python -m bench.billing --minutes 4.63
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from bench.contenders import build_input
from core.settings import Settings
from streamer.service import _decode
from tests.paths import AUDIO
from transcriber.asr import sent_seconds
from transcriber.openai_api import _billed_seconds

MEETING = "ktdc_meeting_2025-01-06_other_matters.mp3"


@dataclass(frozen=True)
class Billing:
    """What one input costs in API calls.

    Attributes:
        input_s: Seconds of audio decoded.
        billed_s: Seconds billed, over every call.
        calls: Calls (chunks published).
        sent_s: Seconds of audio sent, before each call's rounding.
        spans: Seconds of the timeline the chunks span, pauses inside them included.
    """

    input_s: float
    billed_s: float
    calls: int
    sent_s: float
    spans: tuple[float, ...]


def billing_for(path: Path, settings: Settings) -> Billing:
    """Decode ``path`` as the streamer does under ``settings`` and bill each chunk it would publish (blocking).

    Args:
        path: A local audio or video file.
        settings: Chunk lengths, VAD and backend (``asr_backend`` decides how chunks are cut).
    """
    input_s, billed_s, sent_s, spans = 0.0, 0.0, 0.0, []
    with tempfile.TemporaryDirectory(prefix="scribe-billing-") as folder:
        decoded = _decode(str(path), True, None, Path(folder) / "audio.ogg", settings, threading.Event())
        for report in decoded:
            input_s = max(input_s, report.seconds)
            if report.piece is not None:
                sent = sent_seconds(report.piece.duration, report.piece.speech)
                billed_s += _billed_seconds(sent)
                sent_s += sent
                spans.append(report.piece.duration)
    return Billing(input_s, billed_s, len(spans), sent_s, tuple(spans))


def billed_seconds_for(path: Path, settings: Settings) -> tuple[float, float, int]:
    """``(input seconds, billed seconds, calls)`` for ``path`` under ``settings`` (see :func:`billing_for`)."""
    billing = billing_for(path, settings)
    return billing.input_s, billing.billed_s, billing.calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the looped input (default 10)")
    parser.add_argument("--data", type=Path, default=AUDIO, help=f"the audio data folder (default {AUDIO})")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "cantonesescribe-bench",
        help="where the looped input is kept between runs",
    )
    args = parser.parse_args()
    audio, _ = build_input(args.data / MEETING, args.minutes, args.cache)
    settings = Settings.from_env()
    print(f"input: {audio}")
    for backend in ("local", "openai"):
        cut = settings.with_(asr_backend=backend)
        b = billing_for(audio, cut)
        low, high = cut.chunk_lengths
        print(
            f"{backend:>6} chunks ({low:g}-{high:g} s): {b.calls} calls, each spanning {min(b.spans):.1f} to "
            f"{max(b.spans):.1f} s; {b.sent_s:.1f} s sent, {b.billed_s:.0f} s billed of {b.input_s:.1f} s input: "
            f"billed / input = {b.billed_s / b.input_s:.3f}"
        )


if __name__ == "__main__":
    main()

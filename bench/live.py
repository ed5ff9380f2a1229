"""Live sessions end to end (issue 19): shared clips paced at real time over ``WS /v1/live``.

The stack is the product's: embedded NATS and PostgreSQL, a gateway and the romanizer in this
process, the transcriber as its own process (``python -m transcriber``, the embedded model), as a
deployment runs them. Each clip with a reference is sent as linear16 in 250 ms frames at real time,
one session at a time. Printed:

- commit delay: for each committed line, its arrival minus the moment the end of its audio was
  sent (wall seconds), median and p90 (targets 3 / 5 s); and from speech onset (the first timed
  character of the first interim) to that interim's arrival;
- CER of the live transcript (the committed lines) against the references, beside file mode (the
  same clips transcribed whole by the same model in this run; target: at most 0.03 worse);
- sessions at once: k sessions of one clip started together, for k = 1, 2, 3 ...: the worst p90
  commit delay, ``lagging`` events (the transcript more than 5 s behind the audio), and how long after
  the audio's end the last ``final`` came: the sessions kept up when no ``lagging`` came and every
  final within 5 s;
- with ``--openai``: the same clips through the openai backend against the FAKE OpenAI server of
  the tests (the embedded Whisper behind the paid API's HTTP): billed seconds per session second
  (target at most 1.0).

Run from the repository root (about 10 minutes on 2 cores)::

    .venv/bin/python -m bench.live [--clips NAME,...] [--max-clip-s 16] [--sessions 1,2,3] [--openai]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import websockets
from faster_whisper import decode_audio

from bench.asr_eval import Clip, edit_distance, normalise, read_clips
from bench.live_policy import percentile
from bench.measure import run_in_folder
from core.settings import Settings
from gateway import server as gateway_server
from gateway.app import create_app
from scribe.runtime import runtime, services
from tests.paths import AUDIO
from transcriber.local import LocalBackend
from transcriber.model import load_model

FRAME_S = 0.25
RATE = 16000
CONCURRENCY_CLIP = "sherpa_yue-6.wav"  # 30.6 s


@dataclass
class Timed:
    """One session as its client saw it: messages with their arrival (seconds after the first frame was sent)."""

    clip: str
    audio_s: float
    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def of(self, kind: str) -> list[tuple[float, dict[str, Any]]]:
        return [(at, m) for at, m in self.messages if m["type"] == kind]

    @property
    def text(self) -> str:
        return "".join(line["text"] for _, m in self.of("segments") for line in m["segments"])

    @property
    def commit_delays(self) -> list[float]:
        """Arrival of each committed line minus when the end of its audio was sent (real-time pacing)."""
        return [at - line["end"] for at, m in self.of("segments") for line in m["segments"]]

    @property
    def first_interim_delay(self) -> float | None:
        for at, m in self.of("interim"):
            times = [c["start"] for c in m["chars"] if c.get("start") is not None]
            if m["stable"] + m["tentative"] and times:
                return at - min(times)
        return None


async def _session(host: str, samples: np.ndarray, clip: str) -> Timed:
    """Send ``samples`` at real time as linear16 frames; every message until the server closes."""
    timed = Timed(clip, len(samples) / RATE)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    step = int(RATE * FRAME_S) * 2
    async with websockets.connect(f"ws://{host}/v1/live?encoding=linear16&sample_rate={RATE}") as ws:
        first = json.loads(await ws.recv())
        if first["type"] != "session":
            raise RuntimeError(f"refused: {first}")
        began = time.monotonic()

        async def listen() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for text in ws:
                    timed.messages.append((time.monotonic() - began, json.loads(text)))

        listening = asyncio.create_task(listen())
        for index, at in enumerate(range(0, len(pcm), step)):
            await ws.send(pcm[at : at + step])
            # Paced against the clock, not by sleeping a frame's length: sends that take time do not drift.
            await asyncio.sleep(max(0.0, began + (index + 1) * FRAME_S - time.monotonic()))
        await ws.send(json.dumps({"type": "close_stream"}))
        await listening
    return timed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def _stack(settings: Settings, folder: Path, name: str) -> AsyncIterator[str]:
    """Embedded servers, the romanizer and a gateway here, the transcriber as its own process; yields host:port."""
    settings = settings.with_(data_dir=folder / name, log_level="WARNING")
    async with runtime(settings, name=f"bench-{name}", names=["romanizer"]) as rt:
        await rt.start(services("romanizer"))
        env = {
            **os.environ,
            "SCRIBE_NATS_URL": rt.settings.nats_url,
            "SCRIBE_DATABASE_URL": rt.settings.database_url,
            "SCRIBE_DATA_DIR": str(rt.settings.data_dir),
            "SCRIBE_LOG_LEVEL": "WARNING",
            "SCRIBE_LIVE_SESSIONS": str(settings.live_sessions),
            "SCRIBE_ASR_BACKEND": settings.asr_backend,
            "SCRIBE_OPENAI_BASE_URL": settings.openai_base_url,
            "SCRIBE_OPENAI_API_KEY": settings.openai_api_key,
        }
        transcriber = await asyncio.create_subprocess_exec(sys.executable, "-m", "transcriber", env=env)
        port = _free_port()
        cfg = rt.settings
        server = gateway_server.Server(gateway_server.config(create_app(cfg), cfg, host="127.0.0.1", port=port))
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
                await asyncio.sleep(0.05)
            await _wait_for_transcriber(rt)
            yield f"127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await serving
            transcriber.terminate()
            await transcriber.wait()


async def _wait_for_transcriber(rt: Any) -> None:
    """Until the transcriber process asks the live consumer for sessions (its model is loaded)."""
    consumer = rt.topology.live
    for _ in range(1200):
        with contextlib.suppress(Exception):
            info = await rt.js.consumer_info(consumer.stream.name, consumer.durable)
            if info.num_waiting:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError("the transcriber never asked for a live session")


def _cer(clips: list[Clip], texts: dict[str, str]) -> float:
    errors = chars = 0
    for clip in clips:
        reference = normalise(clip.reference)
        errors += edit_distance(reference, normalise(texts[clip.name]))
        chars += len(reference)
    return errors / max(1, chars)


async def _latency_and_accuracy(host: str, clips: list[Clip], verbose: bool) -> tuple[dict[str, str], list[Timed]]:
    sessions = []
    for clip in clips:
        timed = await _session(host, decode_audio(str(clip.path)), clip.name)
        sessions.append(timed)
        if verbose:
            print(
                f"  {clip.name:32s} {timed.audio_s:5.1f} s  lines {len(timed.commit_delays)}  {timed.text}",
                file=sys.stderr,
            )
    return {t.clip: t.text for t in sessions}, sessions


async def run(args: argparse.Namespace, folder: Path) -> int:
    clips = [clip for clip in read_clips(args.data) if clip.duration <= args.max_clip_s]
    if args.clips:
        clips = [clip for clip in clips if clip.name in args.clips.split(",")]
    audio_s = sum(clip.duration for clip in clips)
    print(f"clips: {len(clips)}, {audio_s:.0f} s of audio paced at real time; 2 shared cores; embedded whisper-base")
    base = Settings(live_sessions=max(args.sessions))
    async with _stack(base, folder, "local") as host:
        live_texts, sessions = await _latency_and_accuracy(host, clips, args.verbose)
        delays = [d for t in sessions for d in t.commit_delays]
        onsets = [d for t in sessions if (d := t.first_interim_delay) is not None]
        print(
            f"commit delay (wall s after the line's audio was sent): median {statistics.median(delays):.2f}  "
            f"p90 {percentile(delays, 0.9):.2f} over {len(delays)} lines (targets 3 / 5)"
        )
        onset_median, onset_p90 = statistics.median(onsets), percentile(onsets, 0.9)
        print(f"speech onset to first interim: median {onset_median:.2f} s  p90 {onset_p90:.2f} s")
        lagging = sum(len(t.of("lagging")) for t in sessions)
        print(f"lagging events: {lagging}")
        print("sessions at once (same 30.6 s clip, started together):")
        concurrency = next(c for c in read_clips(args.data) if c.name == CONCURRENCY_CLIP)
        samples = decode_audio(str(concurrency.path))
        for k in args.sessions:
            together = await asyncio.gather(*(_session(host, samples, CONCURRENCY_CLIP) for _ in range(k)))
            worst = max(percentile(t.commit_delays, 0.9) for t in together if t.commit_delays)
            told = sum(len(t.of("lagging")) for t in together)
            last = max(at for t in together for at, _ in t.of("final")) - concurrency.duration
            kept_up = not told and last <= 5.0  # the transcriber kept pace with the audio (the delay is the policy's)
            print(
                f"  {k} session(s): worst p90 commit delay {worst:.2f} s, lagging events {told}, "
                f"final {last:.1f} s after the audio's end: {'keeps up' if kept_up else 'FALLS BEHIND'}"
            )
    file_texts = await _file_texts(clips)
    live_cer, file_cer = _cer(clips, live_texts), _cer(clips, file_texts)
    print(f"CER live {live_cer:.3f}  file {file_cer:.3f}  difference {live_cer - file_cer:+.3f} (target <= +0.03)")
    if args.openai:
        await _openai(clips, folder)
    return 0


async def _file_texts(clips: list[Clip]) -> dict[str, str]:
    """The same clips transcribed whole by the same model (file mode), for the CER beside live."""
    settings = Settings(asr_threads=2, asr_workers=1)
    backend = LocalBackend(await asyncio.to_thread(load_model, settings), settings)
    out = {}
    for clip in clips:
        result = await backend.transcribe(clip.path.read_bytes(), duration=clip.duration)
        out[clip.name] = "".join(segment.text for segment in result.segments)
    return out


async def _openai(clips: list[Clip], folder: Path) -> None:
    from tests.fake_openai import FakeOpenAITranscriptionServer

    with FakeOpenAITranscriptionServer(load_model(Settings(asr_threads=2, asr_workers=1))) as fake:
        settings = fake.settings_for(Settings(), openai_model="whisper-1")
        async with _stack(settings, folder, "openai") as host:
            billed = sent = 0.0
            calls = 0
            for clip in clips:
                timed = await _session(host, decode_audio(str(clip.path)), clip.name)
                finals = timed.of("final")
                if finals:
                    billed += finals[0][1]["usage"]["billed_seconds"]
                sent += timed.audio_s
            calls = len([r for r in fake.requests if r.path.endswith("/audio/transcriptions")])
        print(
            f"openai backend (FAKE API): {calls} calls, billed {billed:.0f} s for {sent:.0f} s of sessions: "
            f"{billed / max(1.0, sent):.2f} billed seconds per session second (target <= 1.0)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=AUDIO)
    parser.add_argument("--clips", default="", help="comma-separated file names (default: every clip with a reference)")
    parser.add_argument("--max-clip-s", type=float, default=16.0, help="skip longer clips (the meeting)")
    parser.add_argument("--sessions", default="1,2,3", help="numbers of sessions at once to try")
    parser.add_argument("--openai", action="store_true", help="also the openai backend against the fake API")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.sessions = [int(k) for k in args.sessions.split(",")]
    return run_in_folder("scribe-bench-live-", run, args)


if __name__ == "__main__":
    raise SystemExit(main())

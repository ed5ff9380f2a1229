"""``scribe live`` as a user runs it, against a real gateway and services (``--server``): a file sent
faster than real time, and raw PCM piped in on stdin, drawn line by line and written in a format."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from faster_whisper import decode_audio

from tests.integration.test_live_session import CLIP, Stack, stack  # noqa: F401 (the module's stack fixture)
from tests.live_media import pcm

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def _scribe_live(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scribe",
        "live",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SCRIBE_SERVER_URL": ""},
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=90)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_scribe_live_sends_a_file_and_writes_its_transcript(stack: Stack, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "live.srt"
    code, _, err = await _scribe_live(
        str(CLIP), "--server", f"http://{stack.host}", "--speed", "3", "-f", "srt", "-o", str(out)
    )
    assert code == 0, err
    assert "scribe: live session" in err and "/jobs/" in err  # the session's page on that gateway
    lines = [line for line in err.splitlines() if line.startswith("[00:")]
    assert lines, err  # committed lines drawn as they came, with their readings under them
    srt = out.read_text(encoding="utf-8")
    assert srt.startswith("1\n00:00:") and "-->" in srt
    assert lines[0].split("] ", 1)[1] in srt
    assert "jyun4" in srt or any(c.isdigit() for c in srt.splitlines()[3])  # Jyutping under the characters


async def test_scribe_live_reads_raw_pcm_from_stdin(stack: Stack) -> None:  # noqa: F811
    data = pcm(decode_audio(str(CLIP)), 16000, 1)  # as ffmpeg -f s16le - sends it
    code, out, err = await _scribe_live("--server", f"http://{stack.host}", "-r", "jyutping", stdin=data)
    assert code == 0, err
    assert out.strip(), err  # the transcript in txt on stdout
    assert any(line.startswith("[00:") for line in err.splitlines())


async def test_scribe_live_says_why_a_session_is_refused(stack: Stack) -> None:  # noqa: F811
    code, _, err = await _scribe_live(
        "--server", f"http://{stack.host}", "--encoding", "webm", stdin=b"RIFF" + bytes(9000)
    )
    assert code == 1
    assert "are not WebM audio: they are WAV" in err

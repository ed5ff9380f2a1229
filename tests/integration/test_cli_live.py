"""``scribe live`` as a user runs it, against a real gateway and services (``--server``): a file sent
faster than real time, and raw PCM piped in on stdin, drawn line by line and written in a format."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest
from faster_whisper import decode_audio

from store import accounts as account_store
from tests.integration.conftest import Stack
from tests.integration.test_gateway_stream import gateway
from tests.integration.test_live_session import CLIP
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


async def test_scribe_live_sends_a_file_and_writes_its_transcript(stack: Stack, tmp_path: Path) -> None:
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


async def test_scribe_live_reads_raw_pcm_from_stdin(stack: Stack) -> None:
    data = pcm(decode_audio(str(CLIP)), 16000, 1)  # as ffmpeg -f s16le - sends it
    code, out, err = await _scribe_live("--server", f"http://{stack.host}", "-r", "jyutping", stdin=data)
    assert code == 0, err
    assert out.strip(), err  # the transcript in txt on stdout
    drawn = [line for line in err.splitlines() if line.startswith("[00:")]
    assert drawn, err
    # Off a terminal only committed lines are drawn (no line in progress): each is the transcript's own.
    assert set(drawn) <= set(out.splitlines()), (drawn, out)


async def test_scribe_live_says_why_a_session_is_refused(stack: Stack) -> None:
    code, _, err = await _scribe_live(
        "--server", f"http://{stack.host}", "--encoding", "webm", stdin=b"RIFF" + bytes(9000)
    )
    assert code == 1
    assert "are not WebM audio: they are WAV" in err


async def _speaking(*args: str) -> tuple[asyncio.subprocess.Process, list[str], asyncio.Task[None]]:
    """``scribe live`` with a microphone on stdin that never stops: the clip, then silence, at real time.

    Returns the process, the stderr lines as they come (a list that grows) and the task feeding stdin.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scribe",
        "live",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SCRIBE_SERVER_URL": ""},
    )
    assert proc.stdin is not None and proc.stderr is not None
    data = pcm(decode_audio(str(CLIP)), 16000, 1)
    step = 8000  # 250 ms

    async def feed() -> None:
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            at = 0
            while proc.returncode is None:
                proc.stdin.write(data[at : at + step] or bytes(step))
                await proc.stdin.drain()
                await asyncio.sleep(0.25)
                at += step

    err: list[str] = []

    async def read() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            err.append(line.decode())

    feeding = asyncio.create_task(feed())
    asyncio.get_running_loop().create_task(read())
    return proc, err, feeding


async def _first_line(err: list[str]) -> None:
    async with asyncio.timeout(30):
        while not any(line.startswith("[00:") for line in err):  # noqa: ASYNC110 (a pipe read by another task)
            await asyncio.sleep(0.1)


async def test_ctrl_c_ends_a_session_and_writes_what_was_heard(stack: Stack) -> None:
    proc, err, feeding = await _speaking("--server", f"http://{stack.host}", "-f", "csv")
    await _first_line(err)
    proc.send_signal(signal.SIGINT)
    began = time.monotonic()
    assert proc.stdout is not None
    out = await asyncio.wait_for(proc.stdout.read(), timeout=30)
    code = await asyncio.wait_for(proc.wait(), timeout=10)
    feeding.cancel()
    # The audio never ended: only Ctrl-C's close_stream can have ended the session, sooner than the idle
    # timeout (10 s after the last frame) would have, and the transcript came as if the input had ended.
    assert code == 0, "".join(err)
    assert time.monotonic() - began < 10
    assert any("ending the session" in line for line in err), err
    rows = out.decode().splitlines()
    assert rows[0] == "id,start,end,chinese,jyutping,yale" and len(rows) >= 2, rows


async def test_a_second_ctrl_c_leaves_at_once(stack: Stack) -> None:
    proc, err, feeding = await _speaking("--server", f"http://{stack.host}")
    async with asyncio.timeout(30):
        while not any("live session" in line for line in err):  # noqa: ASYNC110 (a pipe read by another task)
            await asyncio.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    await asyncio.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    code = await asyncio.wait_for(proc.wait(), timeout=10)
    feeding.cancel()
    assert code == 130, "".join(err)


async def test_under_keys_scribe_live_says_to_set_a_key_and_sends_one(stack: Stack, pool) -> None:
    key, _, _ = await account_store.create_key(pool, f"cli-live-{uuid.uuid4().hex[:8]}", plan=None, admin=False)
    silence = bytes(16000 * 2)  # one second
    async with gateway(stack.settings.with_(auth="keys")) as host:
        env = ("--server", f"http://{host}")
        code, _, err = await _scribe_live(*env, stdin=silence)
        assert code == 1
        assert "Live audio needs an API key" in err and "SCRIBE_API_KEY" in err, err
        code, _, err = await _scribe_live(*env, "--api-key", "sk_not_a_key", stdin=silence)
        assert code == 1 and "This API key is not valid" in err, err
        _, _, err = await _scribe_live(*env, "--api-key", key, stdin=silence)
        assert "scribe: live session" in err, err  # let in (a second of silence then ends it without words)


async def test_scribe_live_says_why_it_cannot_start() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    code, _, err = await _scribe_live("--server", f"http://127.0.0.1:{closed}", stdin=b"")
    assert code == 1 and f"could not open a live session at http://127.0.0.1:{closed}" in err, err
    code, _, err = await _scribe_live("--sample-rate", "100", stdin=b"")
    assert code == 1 and "sample_rate=100 is out of range" in err, err

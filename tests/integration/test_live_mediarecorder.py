"""Real MediaRecorder output through streamer.live: headless Chromium records a shared clip as WebM/Opus.

Chromium's fake microphone plays the clip (``--use-file-for-fake-audio-capture``, looped) into
``getUserMedia``; ``MediaRecorder.start(250)`` slices it as the viewer's Record button will. The slices
go to ``LiveDecoder`` one by one, exactly as received. Recorded at run time, so no audio ships in the
repository (the clips' licences are the shared data's).
"""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from streamer.live import LiveDecoder, LiveFormat
from tests.integration.test_viewer import FLAGS
from tests.media import load_samples
from tests.paths import AUDIO

pytestmark = pytest.mark.integration

CLIP = AUDIO / "sherpa_yue-0.wav"  # 3.07 s, 16 kHz mono PCM WAV
RECORD_S = 2.5

_RECORD = """
const [seconds, done] = arguments;
(async () => {
  const stream = await navigator.mediaDevices.getUserMedia(
    {audio: {echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
  const recorder = new MediaRecorder(stream, {mimeType: "audio/webm;codecs=opus"});
  const slices = [];
  recorder.ondataavailable = async (event) => {
    const bytes = new Uint8Array(await event.data.arrayBuffer());
    let text = "";
    for (const byte of bytes) text += String.fromCharCode(byte);
    slices.push(btoa(text));
  };
  recorder.onstop = () => setTimeout(() => done({mime: recorder.mimeType, slices}), 200);
  recorder.start(250);
  setTimeout(() => { recorder.stop(); stream.getTracks().forEach((t) => t.stop()); }, seconds * 1000);
})().catch((error) => done({error: String(error)}));
"""


@pytest.fixture
def origin() -> Iterator[str]:
    """A secure context for getUserMedia: an empty page on loopback."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        thread.join()


def _record(tmp_path: Path, origin: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[bytes]]:
    monkeypatch.setenv("SE_OFFLINE", "true")
    monkeypatch.chdir(tmp_path)  # the page server lists this empty folder
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument("--use-fake-ui-for-media-stream")
    options.add_argument("--use-fake-device-for-media-stream")
    options.add_argument(f"--use-file-for-fake-audio-capture={CLIP}")
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        driver.set_script_timeout(30)
        driver.get(origin)
        result = driver.execute_async_script(_RECORD, RECORD_S)
    finally:
        driver.quit()
    assert "error" not in result, result
    return result["mime"], [base64.b64decode(s) for s in result["slices"]]


def test_chromium_mediarecorder_webm(tmp_path: Path, origin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    mime, slices = _record(tmp_path, origin, monkeypatch)
    assert mime.startswith("audio/webm") and len(slices) >= 6, (mime, [len(s) for s in slices])
    decoder = LiveDecoder(LiveFormat("webm"))
    parts = [decoder.feed(s) for s in slices]
    parts.append(decoder.close())
    decoded = np.concatenate(parts)

    assert sum(len(part) for part in parts[1:4]) > 0  # audio arrives slice by slice, not at the end
    assert RECORD_S - 0.6 < len(decoded) / 16000 < RECORD_S + 0.6
    # The fake microphone plays the clip from a point we do not know: find a second of it in the clip.
    clip = load_samples(CLIP)
    excerpt = decoded[8000:24000]
    scores = np.correlate(np.concatenate([clip, clip]), excerpt, mode="valid")
    norms = np.sqrt(np.convolve(np.concatenate([clip, clip]) ** 2, np.ones(len(excerpt)), mode="valid"))
    best = float(np.max(scores / np.maximum(norms, 1e-9)) / np.linalg.norm(excerpt))
    assert best > 0.8, best

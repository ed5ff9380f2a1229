"""Follow one job's live transcript over the gateway's websocket, resuming after a disconnect.

    python examples/ws_follow.py http://127.0.0.1:8000 JOB_ID TOKEN

The token travels as the subprotocol ``token.<TOKEN>`` (what a browser can do). When the
connection drops, or the server says ``lagged``, it reconnects with ``after=<last line>``:
every line is printed exactly once. Only the ``websockets`` package is needed.
"""

from __future__ import annotations

import asyncio
import json
import sys

import websockets


async def follow(server: str, job_id: str, token: str) -> int:
    base = server.rstrip("/").replace("http", "ws", 1)
    last_line = -1
    while True:
        url = f"{base}/v1/jobs/{job_id}/stream?after={last_line}"
        try:
            async with websockets.connect(url, subprotocols=[websockets.Subprotocol(f"token.{token}")]) as ws:
                async for message in ws:
                    envelope = json.loads(message)
                    for line in envelope.get("segments", []):
                        print(
                            f"{line['seq']:>4} [{line['start']:7.2f}] {line['text']}  ({line['jyutping']})", flush=True
                        )
                        last_line = line["seq"]
                    if envelope["type"] == "final":
                        print(f"-- done: {envelope['segment_count']} lines", flush=True)
                        return 0
                    if envelope["type"] in ("failed", "error"):
                        print(f"-- {envelope['type']}: {envelope.get('reason') or envelope.get('message')}", flush=True)
                        return 1
                    if envelope["type"] == "lagged":
                        break  # reconnect after the last line printed
        except (websockets.ConnectionClosed, OSError) as exc:
            print(f"-- connection lost ({exc}); resuming after line {last_line}", file=sys.stderr, flush=True)
            await asyncio.sleep(1)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(asyncio.run(follow(*sys.argv[1:])))

"""Follow one job's live transcript over the gateway's websocket, resuming after a disconnect.

    .venv/bin/python examples/ws_follow.py http://127.0.0.1:8000 JOB_ID TOKEN

The token travels as the subprotocol ``token.<TOKEN>`` (what a browser can do). Every line is
printed exactly once: after a dropped connection, a ``lagged`` message or a retryable ``error``
it reconnects with ``after=<last line>``, waiting a little longer each time (with jitter, so many
clients do not come back at once). It stops at the job's end (``final``: status 0; ``failed``,
``cancelled``: status 1, printing the reason) or when the server refuses it for good (no or wrong
token, no such job, purged: status 1). Only the ``websockets`` package is needed.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

import websockets

REFUSED = {4400, 4401, 4404, 4410}  # the same request would be refused again
MAX_FAILURES = 8  # connections in a row that brought nothing


async def follow(server: str, job_id: str, token: str) -> int:
    base = server.rstrip("/").replace("http", "ws", 1)
    last_line, failures = -1, 0
    while failures < MAX_FAILURES:
        url = f"{base}/v1/jobs/{job_id}/stream?after={last_line}"
        try:
            # No size limit: a long backlog comes in pages, but a line can be long.
            async with websockets.connect(
                url, subprotocols=[websockets.Subprotocol(f"token.{token}")], max_size=None
            ) as ws:
                async for message in ws:
                    envelope = json.loads(message)
                    kind = envelope["type"]
                    if kind == "snapshot":
                        failures = 0
                    for line in envelope.get("segments", []):
                        print(
                            f"{line['seq']:>4} [{line['start']:7.2f}] {line['text']}  ({line['jyutping']})", flush=True
                        )
                        last_line = line["seq"]
                    if kind == "final":
                        print(f"-- done: {envelope['segment_count']} lines", flush=True)
                        return 0
                    if kind in ("failed", "cancelled"):
                        print(f"-- {kind}: {envelope['reason']}", flush=True)
                        return 1
                    if kind == "error" and not envelope["retryable"]:
                        print(f"-- refused: {envelope['message']}", flush=True)
                        return 1
            if ws.close_code in REFUSED:
                print(f"-- refused: {ws.close_reason or ws.close_code}", flush=True)
                return 1
            reason = f"closed ({ws.close_code} {ws.close_reason})".strip()
        except (websockets.ConnectionClosed, OSError) as exc:
            reason = f"connection lost ({exc})"
        failures += 1
        delay = min(10.0, 0.5 * 2 ** (failures - 1)) * random.uniform(0.8, 1.2)
        print(f"-- {reason}; resuming after line {last_line} in {delay:.1f} s", file=sys.stderr, flush=True)
        await asyncio.sleep(delay)
    print(f"-- gave up after {MAX_FAILURES} failed connections in a row", flush=True)
    return 1


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(asyncio.run(follow(*sys.argv[1:])))

"""Follow one job's live transcript over the gateway's websocket, resuming after a disconnect.

    .venv/bin/python examples/ws_follow.py http://127.0.0.1:8000 JOB_ID TOKEN

The token travels as the subprotocol ``token.<TOKEN>`` (what a browser can do). Every line is
printed exactly once (and as ``line N corrected: …`` when the job's owner corrects it): after a
dropped connection, a ``lagged`` message, a retryable ``error`` or a 429 it reconnects with
``after=<last line>``, waiting a little longer each time (with jitter, so many clients do not
come back at once), and gives up after 8 failures in a row. It stops at
the job's end (``final``: status 0; ``failed``, ``cancelled``: status 1, printing the reason)
or when the server refuses it for good (no or wrong token, no such job, purged: status 1).
Only the ``websockets`` package is needed.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

import websockets

REFUSED = {4400, 4401, 4404, 4410}  # close codes: the same request would be refused again
MAX_FAILURES = 8  # connections in a row that brought nothing


def show(line: dict) -> None:
    print(f"{line['seq']:>4} [{line['start']:7.2f}] {line['text']}  ({line['jyutping']})", flush=True)


async def follow(server: str, job_id: str, token: str) -> int:
    base = server.rstrip("/").replace("http", "ws", 1)
    last_line, failures = -1, 0
    while failures < MAX_FAILURES:
        url = f"{base}/v1/jobs/{job_id}/stream?after={last_line}"
        protocols = [websockets.Subprotocol(f"token.{token}")]
        try:
            # No size limit: a long backlog comes in pages, but one line can be long.
            async with websockets.connect(url, subprotocols=protocols, max_size=None) as ws:
                try:
                    async for message in ws:
                        envelope = json.loads(message)
                        kind = envelope["type"]
                        if kind == "snapshot":
                            failures = 0  # the server is serving us: the next drop starts the backoff afresh
                        for line in envelope.get("segments", []):  # snapshot and segments (pages or live)
                            show(line)
                            last_line = line["seq"]
                        if kind == "revised":  # a line already printed, corrected
                            line = envelope["segment"]
                            print(f"line {line['seq']} corrected: {line['text']}  ({line['jyutping']})", flush=True)
                        if kind == "final":
                            print(f"-- done: {envelope['segment_count']} lines", flush=True)
                            return 0
                        if kind in ("failed", "cancelled"):
                            print(f"-- {kind}: {envelope['reason']}", flush=True)
                            return 1
                        if kind == "error" and not envelope["retryable"]:
                            print(f"-- refused: {envelope['message']}", flush=True)
                            return 1
                except websockets.ConnectionClosed:
                    pass  # lagged (4408), try again later (1013, 4429), a restart, a lost network: ws.close_code says
            if ws.close_code in REFUSED:
                print(f"-- refused: {ws.close_reason or ws.close_code}", flush=True)
                return 1
            reason = f"closed ({ws.close_code} {ws.close_reason})"
        except websockets.InvalidStatus as exc:  # answered over HTTP instead of a websocket
            status = exc.response.status_code
            if status != 429 and status < 500:
                print(f"-- refused: HTTP {status} {exc.response.body.decode(errors='replace')}", flush=True)
                return 1
            reason = f"HTTP {status}"
        except (OSError, websockets.InvalidHandshake) as exc:  # OSError includes the opening timeout
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

"""Print one job's live transcript straight from NATS, as an integrator would.

    python examples/nats_follow.py nats://127.0.0.1:4222 JOB_ID

Replays the job from its first event (``scribe.events.<job_id>`` is kept a week), prints each
line with its Jyutping as it is committed, and stops at the job's end. Only nats-py is needed;
the messages are plain JSON (see the README's integration contract).
"""

from __future__ import annotations

import asyncio
import json
import sys

import nats
from nats.js import api


async def follow(server: str, job_id: str) -> int:
    nc = await nats.connect(server)
    try:
        js = nc.jetstream()
        sub = await js.subscribe(f"scribe.events.{job_id}", ordered_consumer=True, deliver_policy=api.DeliverPolicy.ALL)
        while True:
            event = json.loads((await sub.next_msg(timeout=3600)).data)
            if event["type"] == "partial":
                for line in event["segments"]:
                    print(f"{line['seq']:>4} [{line['start']:7.2f}] {line['text']}  ({line['jyutping']})", flush=True)
            elif event["type"] == "final":
                print(f"-- done: {event['segment_count']} lines, {event['duration']:.1f} s", flush=True)
                return 0
            elif event["type"] == "failed":
                print(f"-- failed: {event['reason']}", flush=True)
                return 1
    finally:
        await nc.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(asyncio.run(follow(sys.argv[1], sys.argv[2])))

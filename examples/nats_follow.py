"""Print one job's live transcript straight from NATS, as an integrator would.

    .venv/bin/python examples/nats_follow.py nats://127.0.0.1:4222 JOB_ID

Replays the job from its first event (``scribe.events.<job_id>`` is kept a week), prints each
line with its Jyutping as it is committed and ``line N corrected: …`` when the job's owner
corrects one (a ``revised`` event, the one way a line changes), and stops at the job's end:
``final`` (status 0), ``failed`` or ``cancelled`` (status 1, with the reason), once it has shown
every event the stream held when it started (corrections made after the end included). A job the stream holds nothing of
(unknown, not started yet, older than a week, or purged) ends at once with status 1, and a job
that stays silent for an hour is given up on. Only nats-py is needed; the messages are plain
JSON (see the README's integration contract).
"""

from __future__ import annotations

import asyncio
import json
import sys

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js import api

IDLE_S = 3600.0  # a running job sends progress and lines far more often than this


async def follow(server: str, job_id: str) -> int:
    subject = f"scribe.events.{job_id}"
    nc = await nats.connect(server)
    try:
        js = nc.jetstream()
        held = (await js.stream_info("SCRIBE_EVENTS", subjects_filter=subject)).state.subjects or {}
        if not held.get(subject):
            why = "it does not exist, has not started yet, is older than a week, or was purged"
            print(f"-- no events for job {job_id}: {why}", flush=True)
            return 1
        sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=api.DeliverPolicy.ALL)
        seen, status, ending = 0, None, ""
        while status is None or seen < held[subject]:  # past the end: the corrections already made
            try:
                event = json.loads((await sub.next_msg(timeout=IDLE_S)).data)
            except NatsTimeout:
                print(f"-- nothing from job {job_id} for {IDLE_S:.0f} s; giving up", flush=True)
                return 1
            seen += 1
            if event["type"] == "partial":
                for line in event["segments"]:
                    print(f"{line['seq']:>4} [{line['start']:7.2f}] {line['text']}  ({line['jyutping']})", flush=True)
            elif event["type"] == "revised":
                line = event["segment"]
                print(f"line {line['seq']} corrected: {line['text']}  ({line['jyutping']})", flush=True)
            elif event["type"] == "final" and status is None:
                status, ending = 0, f"-- done: {event['segment_count']} lines, {event['duration']:.1f} s"
            elif event["type"] in ("failed", "cancelled") and status is None:
                status, ending = 1, f"-- {event['type']}: {event['reason']}"
        print(ending, flush=True)
        return status
    finally:
        await nc.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(asyncio.run(follow(sys.argv[1], sys.argv[2])))

"""``scribe transcribe --server URL``: the command line as a client of a running gateway.

The file is uploaded (multipart) or the link submitted over REST; the live lines come over the
websocket (the token as a subprotocol), resuming after the last line seen if the connection
drops; the transcript is then downloaded in the format asked for. The websocket's envelopes are
turned back into the bus's events, so the terminal draws exactly what the embedded run draws.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import websockets
from websockets.exceptions import ConnectionClosed

from core.messages import Cancelled, Failed, Final, JobEvent, Partial, Progress, Revised, Segment, Usage

RECONNECTS = 5


class RemoteError(Exception):
    """The gateway refused the job or the stream; ``str()`` is its message."""


class RemoteJob:
    """One job on a gateway: submitted, followed, and downloaded."""

    def __init__(self, http: httpx.AsyncClient, job_id: str, token: str) -> None:
        self.http = http
        self.job_id = job_id
        self.token = token

    @classmethod
    async def submit(
        cls, http: httpx.AsyncClient, source: str, *, local: bool, romanization: str, fresh: bool = False
    ) -> RemoteJob:
        """Upload a file or submit a link (``fresh``: transcribe again, not from the source cache)."""
        if local:
            file = await asyncio.to_thread(Path(source).open, "rb")
            try:
                files = {"file": (Path(source).name, file, "application/octet-stream")}
                form = {"romanization": romanization, "fresh": "true" if fresh else "false"}
                response = await http.post("/v1/jobs", files=files, data=form)
            finally:
                file.close()
        else:
            response = await http.post("/v1/jobs", json={"url": source, "romanization": romanization, "fresh": fresh})
        body = _checked(response)
        return cls(http, body["job_id"], body["token"])

    async def events(self) -> AsyncIterator[JobEvent]:
        """The job's events as the bus has them, from the first to ``Final`` or ``Failed``."""
        after, done = -1, 0
        base = str(self.http.base_url).rstrip("/").replace("http", "ws", 1)
        for _ in range(RECONNECTS):
            url = f"{base}/v1/jobs/{self.job_id}/stream?after={after}"
            try:
                subprotocols = [websockets.Subprotocol(f"token.{self.token}")]
                async with websockets.connect(url, subprotocols=subprotocols, max_size=None) as ws:
                    async for message in ws:
                        envelope = json.loads(message)
                        kind = envelope["type"]
                        if kind == "error":
                            raise RemoteError(envelope["message"])
                        if kind == "lagged":
                            break
                        for event in _events(self.job_id, envelope):
                            if isinstance(event, Partial) and event.segments:
                                after = event.segments[-1].seq
                                done += 1  # the gateway sends a chunk's new lines at once
                                event = msgspec.structs.replace(event, chunks_done=done)
                            yield event
                            if isinstance(event, Final | Failed | Cancelled):
                                return
            except (ConnectionClosed, OSError):
                continue  # resume after the last line seen
        raise RemoteError("The connection to the server kept dropping; the job goes on there: try again.")

    async def warnings(self) -> list[str]:
        status = _checked(await self.http.get(f"/v1/jobs/{self.job_id}", params={"token": self.token}))
        return list(status.get("warnings") or [])

    async def transcript(self, fmt: str, romanization: str) -> str:
        response = await self.http.get(
            f"/v1/jobs/{self.job_id}/transcript",
            params={"token": self.token, "format": fmt, "romanization": romanization},
        )
        if response.status_code != 200:
            _checked(response)
        return response.text


def _checked(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 400:
        message = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
        if response.status_code == 401 and not response.request.headers.get("authorization"):
            message = f"{message or 'The server needs an API key.'} Set SCRIBE_API_KEY to your key (sk_…)."
        raise RemoteError(message or f"The server answered {response.status_code}.")
    return dict(body)


def _lines(envelope: dict[str, Any]) -> list[Segment]:
    return msgspec.convert(envelope["segments"], list[Segment])


def _events(job_id: str, envelope: dict[str, Any]) -> list[JobEvent]:
    """The bus events an envelope stands for (the terminal draws those)."""
    match envelope["type"]:
        case "snapshot":
            progress = envelope["progress"]
            return [
                Progress(
                    job_id=job_id,
                    chunks_published=0,
                    seconds_decoded=progress["seconds_decoded"] or 0.0,
                    duration=progress["duration"],
                ),
                Partial(job_id=job_id, chunk_seq=0, segments=_lines(envelope), chunks_done=0),
            ]
        case "progress":
            return [
                Progress(
                    job_id=job_id,
                    chunks_published=envelope["chunks_published"],
                    seconds_decoded=envelope["seconds_decoded"],
                    duration=envelope["duration"],
                    input_ended=envelope["input_ended"],
                )
            ]
        case "segments":
            return [Partial(job_id=job_id, chunk_seq=0, segments=_lines(envelope), chunks_done=0)]
        case "revised":
            return [Revised(job_id=job_id, segment=msgspec.convert(envelope["segment"], Segment))]
        case "final":
            usage = msgspec.convert(envelope["usage"], Usage)
            return [
                Final(
                    job_id=job_id,
                    duration=envelope["duration"],
                    segment_count=envelope["segment_count"],
                    usage=usage,
                    warnings=envelope["warnings"],
                )
            ]
        case "failed":
            return [Failed(job_id=job_id, reason=envelope["reason"])]
        case "cancelled":
            return [Cancelled(job_id=job_id, reason=envelope["reason"])]
    return []

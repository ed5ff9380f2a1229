"""The integrator examples end on every terminal event, follow a long backlog, and never spin.

They run as an integrator runs them (``python examples/…``) against a real gateway and NATS.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

import pytest

from core.messages import Cancelled, Failed
from tests.integration.test_gateway_stream import _final, _job, _partial, _publish, gateway

pytestmark = pytest.mark.integration


async def _run(*args: str, limit_s: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("ending", ["cancelled", "failed"])
async def test_both_examples_stop_at_a_cancelled_or_failed_job_with_its_reason(
    ending, settings, nats_url, database_url, rt
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    job_id, token = await _job(rt)
    end = Cancelled(job_id=job_id) if ending == "cancelled" else Failed(job_id=job_id, reason="The file is damaged.")
    await _publish(rt, _partial(job_id, 0, 0, 1), end)
    async with gateway(cfg) as host:
        ws_code, ws_out, ws_err = await _run("examples/ws_follow.py", f"http://{host}", job_id, token)
    nats_code, nats_out, _ = await _run("examples/nats_follow.py", nats_url, job_id)
    reason = end.reason
    for code, out in ((ws_code, ws_out), (nats_code, nats_out)):
        assert code == 1 and [line.split()[0] for line in out.splitlines()] == ["0", "1", "--"], out
        assert f"-- {ending}: {reason}" in out
    assert "resuming" not in ws_err  # one connection: it did not reconnect to an ended job


async def test_the_websocket_example_follows_a_backlog_longer_than_one_message(
    settings, nats_url, database_url, rt
) -> None:
    cfg = settings.with_(nats_url=nats_url, database_url=database_url)
    job_id, token = await _job(rt)
    count = 900  # 900 lines of 1,000 characters: about 3 MB, three times websockets' default message limit
    for start in range(0, count, 100):
        await _publish(rt, _partial(job_id, start // 100, *range(start, start + 100), text="長" * 1000))
    await _publish(rt, _final(job_id, count))
    async with gateway(cfg) as host:
        code, out, err = await _run("examples/ws_follow.py", f"http://{host}", job_id, token)
    lines = out.splitlines()
    assert code == 0, err
    assert [int(line.split()[0]) for line in lines[:-1]] == list(range(count)) and lines[-1].startswith("-- done")
    assert "resuming" not in err


async def test_the_nats_example_says_so_when_the_bus_holds_nothing_of_the_job(nats_url, rt) -> None:
    code, out, _ = await _run("examples/nats_follow.py", nats_url, uuid.uuid4().hex, limit_s=30)
    assert code == 1 and "no events for job" in out

